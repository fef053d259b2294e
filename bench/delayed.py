"""Memory of a worker while 100,000 tasks wait an hour: delayed tasks live in the backend.

Sends tasks with ``countdown=3600`` (in groups of 10,000) to a Redis stack with one idle
worker and reports the worker's resident memory (main process and pool children) before
and after, how many wait in the delay index and how many sit in the task queue. Celery
holds such tasks unacked in worker memory; flowq keeps them in the result backend's delay
index and moves each to its queue when due.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.harness import Stack, Worker, chunks, emit, parser, progress

NAME = "delayed"
GROUP_SIZE = 10_000


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (Linux /proc); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def worker_rss(worker: Worker) -> dict[str, float]:
    return {"main": rss_mib(worker.pid),
            "children": round(sum(rss_mib(pid) for pid in worker.children()), 1)}


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--tasks", type=int, help="delayed tasks (default 100,000; --quick 5,000)")
    options = parse.parse_args(argv)
    count = options.tasks or (5_000 if options.quick else 100_000)
    from flowq import group

    from bench.app import add

    with Stack(NAME, options) as stack:
        progress(f"starting a worker (-c {options.concurrency}) on {stack.queue}")
        worker = stack.start_worker()
        time.sleep(1.0)
        before = worker_rss(worker)
        started = time.perf_counter()
        for done, part in enumerate(chunks(range(count), GROUP_SIZE), start=1):
            group(add.s(i, 1) for i in part).apply_async(countdown=3600)
            progress(f"sent {min(done * GROUP_SIZE, count):,} of {count:,} delayed tasks")
        sending = time.perf_counter() - started
        time.sleep(3.0)  # a worker holding them would have fetched them by now
        after = worker_rss(worker)
        queued = stack.queued()
        emit(NAME, f"{count:,} tasks with countdown=3600, one idle worker",
             **stack.description, tasks=count, send_seconds=round(sending, 2),
             worker_main_rss_mib_before=before["main"], worker_main_rss_mib_after=after["main"],
             children_rss_mib_before=before["children"],
             children_rss_mib_after=after["children"],
             waiting_in_delay_index=stack.app.backend.delay_count(), in_task_queue=queued)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
