"""flowq's Redis transport, where it goes beyond the transport contract (test_contract.py):
TLS, missing queues, capped and expiring queues, large acknowledgement batches, a message
reaching a closing consumer's read, settings."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from flowq import Flowq, _state
from flowq.exceptions import ConfigurationError
from flowq.runtime import broker
from flowq.settings import Settings
from tests.integration.harness import require_server
from tests.reliability.faults import free_port, wait_for
from tests.runtime.transports.subjects import REDIS_DB, SHORT

pytestmark = pytest.mark.timeout(60)
URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


@pytest.fixture
def name() -> Iterator[str]:
    require_server("Redis", 6379)
    token = f"transport-{uuid.uuid4().hex[:8]}"
    yield token
    client = redis.Redis.from_url(URL)
    keys = list(client.scan_iter(match=f"*{token}*", count=1000))
    if keys:
        client.delete(*keys)


def connect(**options: object) -> Connection:
    return Connection(URL, transport_options={**SHORT, **options})


def drain(connection: Connection, queue: Queue, count: int) -> list[object]:
    bound = queue(connection.channel())
    got = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        message = bound.get(no_ack=False)
        if message is None:
            time.sleep(0.02)
            continue
        got.append(message)
    return got


def test_a_mandatory_message_declares_its_missing_queue_and_another_is_dropped(name):
    """Publishing to a queue that was deleted: a mandatory message (flowq's task
    messages) declares it again and is kept; any other is dropped, as on RabbitMQ."""
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)
    with connect() as connection:
        queue(connection.channel()).declare()
        queue(connection.channel()).delete()
        producer = Producer(connection.channel())
        producer.publish({"n": "dropped"}, exchange=queue.exchange, routing_key=name)
        assert not connection.default_channel._has_queue(name)
        producer.publish({"n": "kept"}, exchange="", routing_key=name, mandatory=True)
        (message,) = drain(connection, queue, 1)
        assert message.payload == {"n": "kept"}
        message.ack()
        assert queue(connection.channel()).get(no_ack=True) is None


def test_a_capped_queue_keeps_its_newest_messages(name):
    queue = Queue(name, Exchange(name, "direct"), routing_key=name, max_length=3)
    with connect() as connection:
        queue(connection.channel()).declare()
        producer = Producer(connection.channel())
        for n in range(5):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=name)
        got = drain(connection, queue, 3)
        assert [m.payload for m in got] == [{"n": 2}, {"n": 3}, {"n": 4}]
        for message in got:
            message.ack()


def test_an_expiring_queue_lives_while_consumed_and_vanishes_unused(name):
    queue = Queue(name, Exchange(name, "direct"), routing_key=name, expires=1.0)
    with connect() as connection:
        queue(connection.channel()).declare()
        with connection.Consumer([queue], callbacks=[lambda body, message: None]):
            until = time.monotonic() + 2.0
            while time.monotonic() < until:
                try:
                    connection.drain_events(timeout=0.1)
                except TimeoutError:
                    pass
            assert connection.default_channel._has_queue(name)
        wait_for(lambda: not connection.default_channel._has_queue(name), 5,
                 "the unused queue to expire")


def test_acknowledgements_beyond_one_scripts_batch_all_land(name):
    """1,200 messages taken and acknowledged in one batch (scripts send ids 500 at a
    time): none is left, none comes back after the lease."""
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)
    with connect(ack_interval=10.0) as connection:
        queue(connection.channel()).declare()
        producer = Producer(connection.channel())
        with producer.batch():
            for n in range(1200):
                producer.publish({"n": n}, exchange=queue.exchange, routing_key=name)
        got: list[object] = []
        with connection.Consumer([queue], callbacks=[lambda body, m: got.append(m)],
                                 prefetch_count=0):
            deadline = time.monotonic() + 20
            while len(got) < 1200 and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.1)
                except TimeoutError:
                    pass
            assert len(got) == 1200
            for message in got:
                message.ack()  # buffered (ack_interval 10 s): sent in one batch at close
    with connect() as other:
        time.sleep(SHORT["lease_seconds"] + 0.5)
        assert queue(other.channel()).get(no_ack=True) is None
        assert redis.Redis.from_url(URL).xlen(f"flowq:{{{name}}}:p0") == 0


@pytest.mark.parametrize("cancelled", [True, False], ids=["cancelled-first", "closed-as-is"])
def test_a_message_taken_by_a_closing_channel_goes_back_to_its_queue(name, cancelled):
    """A message reaching a consumer's blocking read while its connection closes is given
    back at once (not after the lease), and the next consumer gets it."""
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)
    conf = Settings(broker_url=URL, broker_lease_seconds=60)
    received: list[object] = []
    consuming = broker.connect(conf)
    consumer = Consumer(consuming.channel(), [queue], no_ack=False,
                        on_message=lambda message: received.append(message.payload))
    consumer.consume()
    # Given a consumer whose blocking read is still waiting after its drain timed out
    with pytest.raises(TimeoutError):
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
        (taken,) = drain(again, queue, 1)
        assert taken.payload == {"n": 1}
        taken.ack()


def test_a_lease_of_zero_is_refused_with_the_setting_named():
    previous = _state.current_app()
    app = Flowq("lease-check", broker=URL, broker_lease_seconds=0)
    try:
        with pytest.raises(ConfigurationError, match="broker_lease_seconds must be more than 0"):
            broker.connect(app.conf)
    finally:
        app.close()
        _state.set_current_app(previous)


def _certificate(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return key, cert


def test_rediss_urls_speak_tls(tmp_path, name):
    """``rediss://``: the transport connects over TLS (a private TLS-only server)."""
    key, cert = _certificate(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
         str(cert), "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        queue = Queue(name, Exchange(name, "direct"), routing_key=name)
        with Connection(url, ssl={"ssl_cert_reqs": "required", "ssl_ca_certs": str(cert)},
                        connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=20, interval_start=0.1,
                                         interval_step=0.1, interval_max=0.2)
            queue(connection.channel()).declare()
            Producer(connection.channel()).publish({"n": "tls"}, exchange=queue.exchange,
                                                   routing_key=name)
            (message,) = drain(connection, queue, 1)
            assert message.payload == {"n": "tls"}
            message.ack()
    finally:
        server.kill()
        server.wait(10)
