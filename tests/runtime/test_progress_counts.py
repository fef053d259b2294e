"""What progress counts (pure: an in-memory broker and backend, records written by hand)
and how the bar shows it."""

from __future__ import annotations

import io

import pytest

from flowq import Flowq, chord, fanout, states
from flowq.canvas import ids
from flowq.progress import ProgressBar, bar_line, shown
from flowq.runtime.live import TaskProgress

app = Flowq("progress", broker="memory://progress", backend="memory://progress")


@app.task
def add(x, y):
    return x + y


@app.task
def listing(n):
    return list(range(n))


@app.task
def tsum(values):
    return sum(values)


@app.task
def notify(task_id):
    return task_id


def store(task_id: str, state: str, value: object = None) -> None:
    app.backend.store(task_id, state, app.result_codec.success(value))


def test_tasks_count_joins_do_not_and_errback_chains_do_not() -> None:
    canvas = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).on_error(notify.s() | notify.s())
    flow = canvas.delay().workflow()
    assert flow.progress() == TaskProgress(total=3)
    members = flow.dag.ids()[:2]
    store(members[0], states.SUCCESS, 2)
    store(members[1], "PROGRESS", {"current": 1})
    assert flow.progress() == TaskProgress(total=3, succeeded=1, running=1)
    assert flow.state == states.STARTED and not flow.ready()


def test_fanout_items_count_once_its_list_is_known() -> None:
    flow = (listing.s(3) | fanout(add.s(10)) | tsum.s()).delay().workflow()
    assert flow.progress().total == 3  # listing, the fanout (width unknown), tsum
    listing_id, fanout_id = flow.dag.ids()[:2]
    store(listing_id, states.SUCCESS, [0, 1, 2])
    assert flow.progress() == TaskProgress(total=5, succeeded=1)
    app.backend.store(ids.fanout_item_id(fanout_id, 1), states.FAILURE,
                      app.result_codec.failure(ValueError("x")))
    assert flow.progress() == TaskProgress(total=5, succeeded=1, failed=1)
    store(fanout_id, states.SUCCESS, [10, 11, 12])  # a finished fanout: no item is read
    assert flow.progress() == TaskProgress(total=5, succeeded=4)


def test_a_finished_workflow_is_success_or_failure() -> None:
    flow = (add.s(1, 1) | add.s(1)).delay().workflow()
    assert flow.state == states.PENDING
    first, second = flow.dag.ids()
    store(first, states.SUCCESS, 2)
    app.backend.store(second, states.FAILURE, app.result_codec.failure(ValueError("x")))
    assert flow.state == states.FAILURE and flow.ready()


@pytest.mark.parametrize(("progress", "line"), [
    (TaskProgress(total=4), "[" + "." * 30 + "] 0/4 done"),
    (TaskProgress(total=4, succeeded=1, failed=1, running=2),
     "[" + "#" * 15 + "." * 15 + "] 2/4 done, 1 failed, 2 running"),
    (TaskProgress(total=0), "[" + "#" * 30 + "] 0/0 done"),
])
def test_bar_line(progress: TaskProgress, line: str) -> None:
    assert bar_line(progress) == line


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_redraws_in_place_and_wipes_longer_lines() -> None:
    screen = FakeTerminal()
    bar = ProgressBar(screen)
    bar.draw(TaskProgress(total=2, running=1))
    bar.draw(TaskProgress(total=2, running=1))  # unchanged: not drawn again
    bar.draw(TaskProgress(total=2, succeeded=2))
    bar.close()
    first = "[" + "." * 30 + "] 0/2 done, 1 running"
    second = "[" + "#" * 30 + "] 2/2 done"
    assert screen.getvalue() == f"\r{first}\r{second}{' ' * (len(first) - len(second))}\n"


def test_shown_draws_nothing_off_a_terminal() -> None:
    quiet = io.StringIO()
    with shown(lambda: TaskProgress(total=1), stream=quiet, interval=0.01):
        pass
    assert quiet.getvalue() == ""
    loud = FakeTerminal()
    with shown(lambda: TaskProgress(total=1, succeeded=1), stream=loud, interval=0.01):
        pass
    assert loud.getvalue() == "\r[" + "#" * 30 + "] 1/1 done\n"
