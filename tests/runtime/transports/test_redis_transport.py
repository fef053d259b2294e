"""flowq's Redis transport against the real Redis (database 13, a queue of each test's own):
a message that reaches a consumer's waiting BRPOP while its channel closes stays queued."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Consumer, Exchange, Producer, Queue

from flowq.runtime import broker
from flowq.settings import Settings
from tests.integration.harness import REDIS_URL, require_server

URL = f"{REDIS_URL}/13"


@pytest.fixture
def queue() -> Iterator[Queue]:
    require_server("Redis", 6379)
    name = f"flowq-transport-{uuid.uuid4().hex[:8]}"
    yield Queue(name, Exchange(name, "direct"), routing_key=name)
    client = redis.Redis.from_url(URL)
    for key in client.scan_iter(match=f"*{name}*"):
        client.delete(key)


@pytest.mark.parametrize("cancelled", [True, False], ids=["cancelled-first", "closed-as-is"])
def test_a_message_taken_by_a_closing_channel_goes_back_to_its_queue(queue: Queue,
                                                                     cancelled: bool) -> None:
    conf = Settings(broker_url=URL)
    received: list[object] = []
    consuming = broker.connect(conf)
    consumer = Consumer(consuming.channel(), [queue], no_ack=False,
                        on_message=lambda message: received.append(message.payload))
    consumer.consume()
    # Given a consumer whose BRPOP is still waiting after its read timed out
    with pytest.raises(socket.timeout):
        consuming.drain_events(timeout=0.05)
    if cancelled:  # as a warm shutdown does before closing
        consumer.cancel()
    # When a message arrives and the connection closes
    with broker.connect(conf) as sending:
        Producer(sending.channel()).publish({"n": 1}, exchange=queue.exchange,
                                            routing_key=queue.routing_key, declare=[queue])
    consuming.release()
    # Then it was not delivered to the closing consumer, and the next consumer gets it
    assert received == []
    with broker.connect(conf) as again:
        taken = queue(again.channel()).get(no_ack=True)
        assert taken is not None and taken.payload == {"n": 1}
