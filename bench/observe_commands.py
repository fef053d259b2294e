"""Redis commands behind workflow handles, progress, pictures and resume (Redis broker +
Redis backend, a real worker), counted with ``MONITOR`` as bench.redis_commands does.

Cases (one JSON line each):

* ``send``: sending a chord of n members from a client: what the handles' index adds
  (one ``SET`` per node, pipelined, 1,000 per round trip) beside tracking and messages.
* ``update_state``: a task recording k progress states: commands per ``update_state``.
* ``progress_read``: ``workflow.progress()`` of a finished chord of n (what
  ``get(progress=True)`` does at each redraw), and ``app.workflow(id)`` (finding it).
* ``chain_step``: the worker's commands per step of a chain of n, for comparison with
  the figures of a task transition in docs/performance.md.
* ``resume``: resuming a chord of n whose k members failed: the client's commands.

Run it alone: ``python -m bench observe_commands [--quick]``. MONITOR slows Redis down:
this bench counts commands, it does not time them.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from bench.harness import Stack, emit, parser, progress
from bench.redis_commands import CommandLog, split, tcp_ports, worker_pids

NAME = "observe_commands"


def counted(stack: Stack, worker: Any, action: Any) -> tuple[Any, dict[str, Counter[str]]]:
    """Run ``action()`` under MONITOR; its result and the commands by side."""
    import os

    with CommandLog(stack.options.redis_url, stack.options.redis_db) as log:
        value = action()
    sides = split(log.entries, tcp_ports([os.getpid()]), tcp_ports(worker_pids(worker)))
    return value, sides


def total(counts: Counter[str]) -> int:
    return sum(counts.values())


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--members", type=int, help="chord members (default 1,000; --quick 200)")
    options = parse.parse_args(argv)
    members = options.members or (200 if options.quick else 1_000)
    from bench.app import add, fail_on, report, tsum
    from flowq import chain, chord

    with Stack(NAME, options) as stack:
        worker = stack.start_worker()
        add.delay(1, 1).get(timeout=30)
        app = stack.app

        progress(f"send: a chord of {members}")
        sent, sides = counted(stack, worker, lambda: chord(
            [add.s(i, i) for i in range(members)], tsum.s()).delay())
        sent.get(timeout=300)
        nodes = members + 2
        producer = sides["producer"]
        emit(NAME, f"send a chord of {members}", nodes=nodes, producer_commands=total(producer),
             producer_by_command=dict(producer.most_common()),
             index_sets_per_node=round(producer["SET"] / nodes, 3))

        steps = 50
        progress(f"update_state: one task, {steps} states")
        _, sides = counted(stack, worker, lambda: report.delay(steps).get(timeout=60))
        worker_side = sides["worker"]
        emit(NAME, f"a task recording {steps} progress states", steps=steps,
             worker_commands=total(worker_side), lua_inner=total(sides["lua"]),
             worker_by_command=dict(worker_side.most_common()),
             evalsha_per_update_state=round((worker_side["EVALSHA"] - 1) / steps, 3))

        progress("progress reads of the finished chord")
        flow, sides = counted(stack, worker, lambda: app.workflow(sent.id))
        emit(NAME, "app.workflow(any node id)", producer_commands=total(sides["producer"]),
             producer_by_command=dict(sides["producer"].most_common()))
        reads = 10
        _, sides = counted(stack, worker, lambda: [flow.progress() for _ in range(reads)])
        emit(NAME, f"workflow.progress() of a chord of {members}", reads=reads,
             commands_per_read=round(total(sides["producer"]) / reads, 2),
             producer_by_command=dict(sides["producer"].most_common()))

        length = 100
        progress(f"chain_step: a chain of {length}")
        steps_canvas = chain(add.s(0, 0), *(add.s(1) for _ in range(length - 1)))
        _, sides = counted(stack, worker, lambda: steps_canvas.delay().get(timeout=120))
        emit(NAME, f"a chain of {length} (worker side)", steps=length,
             worker_commands_per_step=round(total(sides["worker"]) / length, 2),
             lua_inner_per_step=round(total(sides["lua"]) / length, 2),
             worker_by_command={k: round(v / length, 2) for k, v in sides["worker"].items()})

        broken = [7, members // 2, members - 1]
        progress(f"resume: a chord of {members} with {len(broken)} failed members")
        failing = chord([fail_on.s(i, broken) for i in range(members)], tsum.s()).delay()
        flow = app.workflow(failing.id)
        while not flow.ready():
            time.sleep(0.2)
        from flowq.runtime.resume import resume

        done, sides = counted(stack, worker, lambda: resume(app, failing.id))
        emit(NAME, f"resume a chord of {members} with {len(broken)} failed", rerun=done.rerun,
             reused=done.reused, producer_commands=total(sides["producer"]),
             lua_inner=total(sides["lua"]),
             producer_by_command=dict(sides["producer"].most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
