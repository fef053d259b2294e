"""Every Redis key and channel flowq uses, in one place, all under one prefix.

The prefix (default ``flowq:``) lets several apps or test runs share a Redis database;
``redis-cli --scan --pattern 'flowq:*'`` lists everything flowq wrote.

On a Redis Cluster (:class:`ClusterKeys`) the keys that one script or transaction touches
together carry the same hash tag, the part of a key between ``{`` and ``}`` that alone
picks its slot: a task's result with its chord-part intent (tagged by task id), the delay
index with its payloads and the tracked workflows' index, summaries and progress (one tag
per prefix each: one slot for the deployment). Every other key
is used alone and hashes whole, so keys spread over the masters.
"""

from __future__ import annotations

import attrs

DEFAULT_PREFIX = "flowq:"


@attrs.frozen(slots=True)
class Keys:
    """The key names of one prefix."""

    prefix: str = DEFAULT_PREFIX

    def result(self, task_id: str) -> str:
        # string "<state>\n<writer token>\n<payload>", one per task, expiring with result_expires
        return f"{self.prefix}r:{task_id}"

    def channel(self, task_id: str) -> str:
        # pub/sub channel: a message on it wakes wait() when task_id's record turns terminal
        return f"{self.prefix}w:{task_id}"

    def chord(self, join_id: str) -> str:
        # hash: size, n (parts recorded), fired, failed, and "<index>" -> part per member
        return f"{self.prefix}c:{join_id}"

    def flag(self, key: str) -> str:
        # string: a once-only marker (SET NX) holding the token of the call that set it
        return f"{self.prefix}f:{key}"

    def counter(self, key: str) -> str:
        # integer: how many times something happened (deliveries of one message)
        return f"{self.prefix}n:{key}"

    def blob(self, key: str) -> str:
        # string: a stored workflow, saved group or beat state
        return f"{self.prefix}b:{key}"

    def lease(self, key: str) -> str:
        # string holding the owner's id, with the lease's TTL (single beat)
        return f"{self.prefix}l:{key}"

    def workflow_summary(self, root_id: str) -> str:
        # string: what the recent-workflows list shows of a workflow (JSON), with result_expires
        return f"{self.prefix}wf:s:{root_id}"

    def workflow_detail(self, root_id: str) -> str:
        # string: what only the workflow's own page needs (its node paths, compressed)
        return f"{self.prefix}wf:d:{root_id}"

    def workflow_progress(self, root_id: str) -> str:
        # hash: terminal state -> nodes recorded in it, "at" -> ms time of the last one
        return f"{self.prefix}wf:p:{root_id}"

    @property
    def workflows(self) -> str:
        # sorted set: root id of a workflow sent from outside a task -> unix time it was sent
        return f"{self.prefix}wf:recent"

    @property
    def revoked(self) -> str:
        # sorted set: revoked id -> unix time it expires at (+inf: never)
        return f"{self.prefix}revoked"

    @property
    def delay_due(self) -> str:
        # sorted set: delayed message key -> unix time it is due (or its claim ends)
        return f"{self.prefix}delay:due"

    @property
    def delay_payloads(self) -> str:
        # hash: delayed message key -> the message to publish when due
        return f"{self.prefix}delay:msg"


@attrs.frozen(slots=True)
class ClusterKeys(Keys):
    """The key names of one prefix on a Redis Cluster (see the module docstring).

    Differs from :class:`Keys` only where keys must share a slot, so a key used alone has
    the same name on a single server and on a cluster.
    """

    def result(self, task_id: str) -> str:
        return f"{self.prefix}r:{{{task_id}}}"

    def part_intent(self, task_id: str) -> str:
        # string: the chord part ("v<value>" or "x") of the first terminal record of
        # task_id, kept next to the record so the part, recorded in the chord's own slot
        # by a second script, always agrees with the record, whoever records it
        return f"{self.prefix}rp:{{{task_id}}}"

    # A deployment's tracked workflows share one tag: track_workflow is one transaction.
    def workflow_summary(self, root_id: str) -> str:
        return f"{self.prefix}wf:{{{self.prefix}wf}}:s:{root_id}"

    def workflow_detail(self, root_id: str) -> str:
        return f"{self.prefix}wf:{{{self.prefix}wf}}:d:{root_id}"

    def workflow_progress(self, root_id: str) -> str:
        return f"{self.prefix}wf:{{{self.prefix}wf}}:p:{root_id}"

    @property
    def workflows(self) -> str:
        return f"{self.prefix}wf:{{{self.prefix}wf}}:recent"

    @property
    def delay_due(self) -> str:
        return f"{self.prefix}delay:{{{self.prefix}delay}}:due"

    @property
    def delay_payloads(self) -> str:
        return f"{self.prefix}delay:{{{self.prefix}delay}}:msg"


#: What separates a kombu list transport's queue name from its priority step.
KOMBU_PRIORITY_SEP = "\x06\x16"
#: Priority levels of a Redis queue: 0-9, 9 first (RabbitMQ's meaning).
PRIORITY_LEVELS = 10


@attrs.frozen(slots=True)
class BrokerKeys:
    """The key names of flowq's Redis transport under one prefix.

    Every key of one queue carries the queue's name as a hash tag (``{name}``), so they
    all live in one slot of a Redis Cluster and a script may touch them together; no
    script touches the keys of two queues.
    """

    prefix: str = DEFAULT_PREFIX

    def stream(self, queue: str, priority: int) -> str:
        # stream: the queue's messages of one priority; field "m" holds kombu's message
        # JSON, optional "d" the deliveries it had before this stream (an upgrade)
        return f"{self.prefix}{{{queue}}}:p{priority}"

    def streams(self, queue: str) -> list[str]:
        """The queue's streams, highest priority first (the order consumers read them)."""
        return [self.stream(queue, priority) for priority in reversed(range(PRIORITY_LEVELS))]

    def meta(self, queue: str) -> str:
        # hash: the queue's declared options (max_length, expires); exists iff the queue does
        return f"{self.prefix}{{{queue}}}:meta"

    def wake(self, queue: str) -> str:
        # string, expiring after a second: a wake-up entry was added to the queue (at most
        # one a second: a burst of given-back messages needs one look)
        return f"{self.prefix}{{{queue}}}:wake"

    def queue_bindings(self, queue: str) -> str:
        # set: "<exchange>\x06\x16<binding member>" for every binding of the queue
        return f"{self.prefix}{{{queue}}}:bound"

    def bindings(self, exchange: str) -> str:
        # set: "<routing key>\x06\x16<pattern>\x06\x16<queue>" per binding (kombu's format)
        return f"{self.prefix}binding:{exchange}"

    @property
    def exchanges(self) -> str:
        # hash: exchange name -> type, for producers that did not declare it themselves
        return f"{self.prefix}exchanges"

    def fanout(self, db: int, exchange: str) -> str:
        # pub/sub channel of a fanout exchange (channels span databases: the db is named)
        return f"{self.prefix}{db}:fanout:{exchange}"


@attrs.frozen(slots=True)
class KombuListKeys:
    """The keys kombu's Redis list transport (flowq before its own transport) used, read
    only to move what it left behind into the streams."""

    def queue(self, queue: str, step: int) -> str:
        # list per priority step; step 0 was consumed first (flowq priority 9)
        return queue if step == 0 else f"{queue}{KOMBU_PRIORITY_SEP}{step}"

    def queues(self, queue: str) -> list[str]:
        return [self.queue(queue, step) for step in range(PRIORITY_LEVELS)]

    #: hash: delivery tag -> JSON [message, exchange, routing key] of unacked messages
    unacked: str = "unacked"
    #: sorted set: delivery tag -> unix time it was delivered
    unacked_index: str = "unacked_index"
