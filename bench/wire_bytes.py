"""Bytes published for a chain of 1,000 add.s(i) steps and a chord of 10,000 header tasks.

Measured, per case (``--quick``: a chain of 100 and a chord of 1,000):

* ``flowq_bytes``: every message flowq published, headers as compact JSON plus body
  bytes, counted where it was sent: by the producer (this process) and by the worker
  (its publisher adds each message's sizes to a Redis hash; see :mod:`bench.app`);
* ``blob_bytes``: the workflow stored once in the backend (workflows over
  ``workflow_inline_limit`` travel as a 64-character ``wf_ref``);
* ``redis_payload_bytes_producer``: the producer's messages exactly as kombu stored them
  in the Redis streams (JSON envelope, base64 body), read back before the worker starts;
  the difference per message is kombu's envelope, the same for any protocol.

Celery's bytes for the same two workflows are measured by ``bench/celery_bytes.py``, which
runs Celery in an environment of its own.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.app import FIELDS, ByteTally
from bench.harness import Stack, emit, parser, progress
from flowq.canvas.signature import Signature

NAME = "bytes"


def list_bytes(stack: Stack) -> tuple[int, int]:
    """(messages, bytes) waiting in the stack's queue, as the transport stored them in
    Redis (kombu's message JSON in each stream entry)."""
    count = size = 0
    for key in stack.queue_streams():
        start = "-"
        while True:
            entries = stack.redis.xrange(key, start, "+", count=1000)
            count += len(entries)
            size += sum(len(fields.get(b"m", b"")) for _, fields in entries)
            if len(entries) < 1000:
                break
            start = "(" + entries[-1][0].decode()
    return count, size


def blob_bytes(stack: Stack) -> int:
    keys = list(stack.redis.scan_iter(match=f"{stack.prefix}b:wf:*", count=1000))
    return sum(stack.redis.strlen(key) for key in keys)


def run_case(options: Any, label: str, canvas: Any, signatures: list[Signature],
             expected: Any) -> None:
    with Stack(NAME, options) as stack:
        tally_key = f"{stack.prefix}bench-bytes"
        producer = ByteTally()
        stack.app.byte_tally = producer
        try:
            progress(f"{label}: sending with no worker running")
            handle = canvas.delay()
            queued, queued_bytes = list_bytes(stack)
            progress(f"{label}: {queued} message(s) queued; starting a worker")
            stack.start_worker(env={"FLOWQ_BENCH_BYTES": f"{stack.redis_db_url}#{tally_key}"},
                               ready=False)
            value = handle.get(timeout=600)
        finally:
            stack.app.byte_tally = None
        stack.stop_workers()  # its counts are final once it has exited
        worker = {field.decode(): int(count)
                  for field, count in stack.redis.hgetall(tally_key).items()}
        totals = {field: producer.totals[field] + worker.get(field, 0) for field in FIELDS}
        flowq_bytes = totals["header_bytes"] + totals["body_bytes"]
        messages = totals["messages"]
        stored = blob_bytes(stack)
        producer_bytes = producer.totals["header_bytes"] + producer.totals["body_bytes"]
        envelope = (queued_bytes - producer_bytes) / queued if queued else None
        emit(NAME, label, **stack.description, tasks=len(signatures), correct=value == expected,
             messages=messages, producer_messages=producer.totals["messages"],
             worker_messages=worker.get("messages", 0),
             flowq_bytes=flowq_bytes, header_bytes=totals["header_bytes"],
             body_bytes=totals["body_bytes"], wf_inline_bytes=totals["wf_inline_bytes"],
             wf_ref_messages=totals["wf_ref_messages"], blob_bytes=stored,
             flowq_bytes_per_task=round((flowq_bytes + stored) / len(signatures), 1),
             redis_payload_bytes_producer=queued_bytes,
             kombu_envelope_bytes_per_message=None if envelope is None else round(envelope, 1))


def main(argv: list[str]) -> int:
    options = parser(NAME, __doc__).parse_args(argv)
    from bench.app import add, tsum
    from flowq import chain, chord

    chain_steps = 100 if options.quick else 1_000
    steps = [add.s(0, 0), *(add.s(i) for i in range(1, chain_steps))]
    run_case(options, f"chain of {chain_steps} add.s(i)", chain(*steps), steps,
             sum(range(chain_steps)))
    chord_size = 1_000 if options.quick else 10_000
    header = [add.s(i, i) for i in range(chord_size)]
    body = tsum.s()
    run_case(options, f"chord of {chord_size} add.s(i, i) + tsum.s()", chord(header, body),
             [*header, body], chord_size * (chord_size - 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
