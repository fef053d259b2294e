"""What runs workflows for real: messages, workers, backends, transports.

Importing it registers flowq's transports with kombu: the embedded broker under the
``sqlite`` scheme (kombu has no transport of that name), so
``kombu.Connection("sqlite:///path.db")`` works, and flowq's Redis transport under
``redis`` and ``rediss`` in place of kombu's list transport, and its Redis Cluster variant
under ``redis-cluster`` and ``rediss-cluster``.
"""

from kombu.transport import TRANSPORT_ALIASES

TRANSPORT_ALIASES.setdefault("sqlite", "flowq.runtime.transports.sqlite:Transport")
TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = (
    "flowq.runtime.transports.redis:Transport")
TRANSPORT_ALIASES["redis-cluster"] = TRANSPORT_ALIASES["rediss-cluster"] = (
    "flowq.runtime.transports.redis_cluster:Transport")
