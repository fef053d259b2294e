"""RabbitMQ quorum queues (``broker_queue_type = "quorum"``) on the local RabbitMQ.

One named worker (``task_max_deliveries=2``) consumes a quorum queue for the module; the
test process declares and publishes with the same setting. Tasks, a chain and a chord
run; a task that kills its process on every delivery stops at the limit, counted by the
broker (``x-delivery-count``), fails with WorkerLostError and is dead-lettered; a message
the broker itself gives up on (returned past the limit with no worker to fail it) lands
in the same dead-letter queue; and a queue that exists as a classic queue is a precise
configuration error for a client and a worker. Every queue is unique and deleted afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from amqp.exceptions import PreconditionFailed

from flowq import Flowq, chain, chord, group, states
from flowq.exceptions import ConfigurationError, WorkerLostError
from flowq.runtime import broker
from tests.doc_snippets import section_snippets
from tests.integration.app import add, app, collect, tsum
from tests.integration.semantics_support import (
    NamedCluster,
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    running,
    settle,
)
from tests.integration.semantics_tasks import die_always

pytestmark = pytest.mark.timeout(120)
MAX_DELIVERIES = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedCluster]:
    # The delivery limit is part of a quorum queue's declaration: every process that
    # declares the queue (this one publishes) needs the worker's task_max_deliveries.
    app.conf.update(broker_queue_type="quorum", task_max_deliveries=MAX_DELIVERIES)
    try:
        yield from running("amqp", tmp_path_factory, queues=("backstop", "classic"),
                           env={"FLOWQ_TEST_MAX_DELIVERIES": str(MAX_DELIVERIES),
                                "FLOWQ_TEST_QUEUE_TYPE": "quorum"})
    finally:
        app.conf.update(broker_queue_type="classic", task_max_deliveries=5)


def test_task_queues_are_quorum_queues(cluster: NamedCluster) -> None:
    # RabbitMQ refuses to declare a queue again with another type: proof of the type
    with broker.connect(app.conf) as connection:
        for classic in (broker.task_queue(cluster.queue),
                        broker.dead_letter_queue(cluster.queue)):
            with pytest.raises(PreconditionFailed, match="inequivalent arg"):
                classic(connection.channel()).declare()


def test_tasks_a_chain_and_a_chord_run_on_quorum_queues(cluster: NamedCluster) -> None:
    bodies = kind()
    # a priority is accepted (quorum queues of RabbitMQ 3.x deliver in order regardless)
    assert add.apply_async((2, 2), priority=9).get(timeout=T) == 4
    assert chain(add.s(0, 1), *(add.s(1) for _ in range(19))).delay().get(timeout=T) == 20
    result = chord(group(add.s(i, i) for i in range(50)), collect.s(kind=bodies)).delay()
    assert result.get(timeout=T) == [2 * i for i in range(50)]
    assert settle(cluster, bodies, 1) == [result.id]  # the body ran exactly once
    assert chord(group(add.s(i, 1) for i in range(5)), tsum.s()).delay().get(timeout=T) == 15


def test_a_poison_message_stops_at_the_delivery_limit_counted_by_the_broker(
        cluster: NamedCluster) -> None:
    # Given a late-acked task that kills its process on every delivery
    runs = kind()
    result = die_always.delay(runs)
    # Then it fails on the delivery after task_max_deliveries, the broker's last
    with pytest.raises(WorkerLostError, match=f"delivered {MAX_DELIVERIES + 1} times"):
        result.get(timeout=T)
    assert result.state == states.FAILURE
    assert settle(cluster, runs, MAX_DELIVERIES, wait=1.0) == [result.id] * MAX_DELIVERIES
    # And the worker dead-lettered it, having counted nothing in the result backend (the
    # count is the broker's x-delivery-count)
    headers = cluster.dead_letter(result.id)
    assert "WorkerLostError" in headers["x-flowq-reason"]
    backend = redis.Redis.from_url(cluster.backend_url.split("?")[0])
    assert not list(backend.scan_iter(match=f"{cluster.prefix}n:deliveries:*"))
    # And nothing runs it again
    time.sleep(1.0)
    assert cluster.ledger_list(runs) == [result.id] * MAX_DELIVERIES


def test_the_broker_dead_letters_what_is_returned_past_the_limit(cluster: NamedCluster) -> None:
    # Given a message in a quorum queue no worker consumes
    name = f"{cluster.queue}.backstop"
    with broker.connect(app.conf) as connection:
        channel = connection.channel()
        broker.dead_letter_queue_for(app.conf, name)(channel).declare()
        queue = broker.task_queue_for(app.conf, name)(channel)
        queue.declare()
        connection.Producer(channel).publish(b"orphan", exchange=name, routing_key=name,
                                             headers={"id": "orphan"})
        # When a consumer returns it once more than the limit allows
        deliveries = 0
        while deliveries <= MAX_DELIVERIES:
            message = _get(queue)
            assert message is not None, f"gone after {deliveries} deliveries"
            message.reject(requeue=True)
            deliveries += 1
        # Then the broker moves it to the dead-letter queue, saying why
        dead = broker.dead_letter_queue_for(app.conf, name)(channel)
        message = _get(dead)
        assert message is not None and message.body == b"orphan"
        assert message.headers["x-death"][0]["reason"] == "delivery_limit"
        message.ack()
        assert _get(queue, attempts=5) is None


def test_a_queue_declared_classic_before_is_a_configuration_error(cluster: NamedCluster) -> None:
    # Given a queue a previous (classic) configuration declared
    name = f"{cluster.queue}.classic"
    with broker.connect(app.conf) as connection:
        broker.task_queue(name)(connection.channel()).declare()
    # When a quorum client sends to it, or a quorum worker starts on it
    with pytest.raises(ConfigurationError, match="broker_queue_type"):
        add.apply_async((1, 1), queue=name)
    worker = cluster.start_worker("-Q", name, wait=False,
                                  env={"FLOWQ_TEST_QUEUE_TYPE": "quorum"})
    # Then both say what is wrong; the worker exits rather than retrying forever
    assert worker.wait(60) == 1
    error = [line for line in worker.log().splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "ConfigurationError: inequivalent arg" in error[0]
    assert "broker_queue_type" in error[0] and "drain and delete the queue" in error[0]


def test_the_documented_configuration_declares_quorum_queues() -> None:
    namespace = {"Flowq": Flowq}
    for snippet in section_snippets("runtime.md", "RabbitMQ quorum queues"):
        exec(snippet, namespace)  # noqa: S102 - the docs' own example
    documented = namespace["app"]
    queue = broker.task_queue_for(documented.conf, "q")
    assert queue.queue_arguments == {"x-queue-type": "quorum", "x-delivery-limit": 5,
                                     "x-dead-letter-exchange": "q.dead",
                                     "x-dead-letter-routing-key": "q.dead"}
    assert broker.dead_letter_queue_for(documented.conf, "q").queue_arguments == {
        "x-queue-type": "quorum"}
    documented.close()


def _get(queue, attempts: int = 100):  # type: ignore[no-untyped-def]
    """The next message of ``queue`` (a quorum queue's basic.get may lag its publish)."""
    for _ in range(attempts):
        message = queue.get(no_ack=False)
        if message is not None:
            return message
        time.sleep(0.05)
    return None
