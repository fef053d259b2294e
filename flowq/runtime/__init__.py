"""What runs workflows for real: messages, workers, backends, transports.

Importing it registers the embedded broker with kombu under the ``sqlite`` scheme (kombu
has no transport of that name), so ``kombu.Connection("sqlite:///path.db")`` works.
"""

from kombu.transport import TRANSPORT_ALIASES

TRANSPORT_ALIASES.setdefault("sqlite", "flowq.runtime.transports.sqlite:Transport")
