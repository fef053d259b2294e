"""Unit tests of the beat service: a memory backend, a fake clock, sends recorded.

The clock and sleep are injected, so a test runs hours of schedule in milliseconds; the
lease lives in the memory backend on the real monotonic clock, which only the takeover
tests wait on (a fraction of a second).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest

from flowq import Flowq, chain
from flowq.exceptions import BackendUnavailable, BrokerUnavailable, ConfigurationError
from flowq.runtime.beat import Beat, beat_thread, lease_key, state_key
from flowq.schedules import crontab, schedule

pytestmark = pytest.mark.timeout(30)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2024, 6, 3, 12, 0, 0, tzinfo=UTC)


class Sent(NamedTuple):
    canvas: Any
    args: Any
    kwargs: Any
    options: dict[str, Any]
    at: datetime


class FakeClock:
    """``clock()`` returns ``now``; ``sleep(s)`` moves it forward."""

    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "flowq.beat")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


SCHEDULED_TASKS = ("t", "tasks.add", "tasks.fast", "tasks.fetch", "tasks.hourly", "tasks.local",
                   "tasks.new", "tasks.night", "tasks.nine", "tasks.old", "tasks.report",
                   "tasks.slow", "tasks.tick", "tasks.utc")


def _any_arguments(*args: Any, **kwargs: Any) -> None:
    """The body of every task the schedules here name (beat never runs them)."""


@pytest.fixture
def app() -> Iterator[Flowq]:
    instance = Flowq("beat-test", broker="memory://",
                     backend=f"memory://beat-{uuid.uuid4().hex[:8]}")
    for name in SCHEDULED_TASKS:  # beat refuses entries naming tasks the app lacks
        instance.task(name=name)(_any_arguments)
    yield instance
    instance.close()


@pytest.fixture
def sent(app: Flowq, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> list[Sent]:
    """Every ``app.send`` beat makes, instead of publishing."""
    calls: list[Sent] = []

    def send(canvas: Any, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        calls.append(Sent(canvas, args, kwargs, options, clock.now))

    monkeypatch.setattr(app, "send", send)
    return calls


def make_beat(app: Flowq, clock: FakeClock, **kwargs: Any) -> Beat:
    return Beat(app, clock=clock, sleep=clock.sleep, **kwargs)


def run_until(beat: Beat, clock: FakeClock, end: datetime) -> None:
    """Turn the loop as :meth:`Beat.run` would, until the fake clock reaches ``end``."""
    while clock.now < end:
        clock.sleep(beat.tick())


def to_second(moment: datetime) -> datetime:
    """``moment`` without its fraction: beat may wake a few ms after a fire time."""
    return moment.replace(microsecond=0)


def names(sent: list[Sent]) -> list[str]:
    return [call.canvas.task for call in sent]


# -- sending --------------------------------------------------------------------------------


def test_interval_runs_at_once_then_every_interval(app, clock, sent):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 1.0}}
    run_until(make_beat(app, clock), clock, T0 + timedelta(seconds=3.5))
    assert [call.at - T0 for call in sent] == [timedelta(seconds=s) for s in (0, 1, 2, 3)]


def test_entry_args_kwargs_and_options_are_passed_to_send(app, clock, sent):
    app.conf.beat_schedule = {"add": {"task": "tasks.add", "schedule": timedelta(minutes=1),
                                      "args": (1, 2), "kwargs": {"z": 3},
                                      "options": {"queue": "periodic", "expires": 30}}}
    make_beat(app, clock).tick()
    [call] = sent
    assert (call.canvas.task, call.args, dict(call.kwargs), call.options) == (
        "tasks.add", (1, 2), {"z": 3}, {"queue": "periodic", "expires": 30})


def test_a_workflow_can_be_scheduled(app, clock, sent, caplog):
    workflow = chain(app.signature("tasks.fetch"), app.signature("tasks.report"))
    app.conf.beat_schedule = {"report": {"sig": workflow, "schedule": 60, "args": ("x",)}}
    make_beat(app, clock).tick()
    assert [(call.canvas, call.args) for call in sent] == [(workflow, ("x",))]
    assert "Scheduler: sending due task report (chain of tasks.fetch, tasks.report)" in (
        caplog.messages)


def test_each_send_is_logged_on_one_line(app, clock, sent, caplog):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 1.0}}
    make_beat(app, clock).tick()
    assert "Scheduler: sending due task tick (tasks.tick)" in caplog.messages


def test_a_failed_send_is_retried_and_not_recorded(app, clock, sent, monkeypatch, caplog):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 60}}
    beat = make_beat(app, clock)
    ok_send = app.send
    monkeypatch.setattr(app, "send", lambda *a, **k: (_ for _ in ()).throw(
        BrokerUnavailable("could not publish to redis://h:6379//")))
    clock.sleep(beat.tick())
    assert "could not send tick (tasks.tick): BrokerUnavailable" in caplog.text
    monkeypatch.setattr(app, "send", ok_send)
    clock.sleep(beat.tick())  # the next turn, well before the 60 s interval
    assert len(sent) == 1 and sent[0].at - T0 < timedelta(seconds=10)


def test_celery_style_is_due_with_one_argument(app, clock, sent):
    class EveryTwoSeconds:
        """Celery's protocol: is_due(last_run_at) -> (due, next); it reads its own clock."""

        def is_due(self, last_run_at: datetime) -> tuple[bool, float]:
            remaining = (last_run_at + timedelta(seconds=2) - clock.now).total_seconds()
            return (True, 2.0) if remaining <= 0 else (False, remaining)

    app.conf.beat_schedule = {"celery": {"task": "tasks.tick", "schedule": EveryTwoSeconds()}}
    run_until(make_beat(app, clock), clock, T0 + timedelta(seconds=5))
    # Celery counts a new entry from when beat first saw it, not from "never".
    assert [call.at - T0 for call in sent] == [timedelta(seconds=2), timedelta(seconds=4)]


def test_flowq_style_custom_schedule(app, clock, sent):
    class OnlyAtTen:
        def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]:
            ten = T0 + timedelta(seconds=10)
            return (last_run_at is None and now >= ten), 1.0

    app.conf.beat_schedule = {"once": {"task": "tasks.tick", "schedule": OnlyAtTen()}}
    run_until(make_beat(app, clock), clock, T0 + timedelta(seconds=20))
    assert [call.at - T0 for call in sent] == [timedelta(seconds=10)]


def test_sleeps_until_the_next_due_entry_within_the_loop_cap(app, clock, sent):
    app.conf.beat_schedule = {"slow": {"task": "tasks.slow", "schedule": 3600},
                              "fast": {"task": "tasks.fast", "schedule": 0.5}}
    beat = make_beat(app, clock, lease_ttl=30, max_interval=5)
    assert beat.tick() == 0.5
    app.conf.beat_schedule = {"slow": {"task": "tasks.slow", "schedule": 3600}}
    assert make_beat(app, clock, lease_ttl=30, max_interval=5).tick() == 5
    assert make_beat(app, clock, lease_ttl=3, max_interval=5).tick() == 1  # renew: ttl / 3


# -- state ----------------------------------------------------------------------------------


def test_restart_neither_repeats_nor_skips_a_run(app, clock, sent):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 10}}
    first = make_beat(app, clock)
    first.tick()
    first.stop()
    first.run()  # returns at once: gives the lease back
    clock.sleep(4)
    second = make_beat(app, clock)
    run_until(second, clock, T0 + timedelta(seconds=15))
    assert [call.at - T0 for call in sent] == [timedelta(0), timedelta(seconds=10)]


def test_runs_missed_while_down_run_once(app, clock, sent):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 10},
                              "nine": {"task": "tasks.nine", "schedule": crontab(0, 9)}}
    clock.now = datetime(2024, 6, 3, 9, 0, 30, tzinfo=UTC)
    first = make_beat(app, clock)
    first.tick()
    assert sorted(names(sent)) == ["tasks.nine", "tasks.tick"]
    first.stop()
    first.run()
    clock.now += timedelta(days=2, hours=1)  # two 9:00 runs and many ticks missed
    back = clock.now
    run_until(make_beat(app, clock), clock, back + timedelta(seconds=5))
    assert sorted(names(call for call in sent if call.at == back)) == ["tasks.nine", "tasks.tick"]
    assert len(sent) == 4


def test_state_is_a_json_blob_of_utc_times(app, clock, sent):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 10}}
    make_beat(app, clock).tick()
    doc = json.loads(app.backend.get_blob(state_key(app)))
    assert doc == {"version": 1, "last_run_at": {"tick": "2024-06-03T12:00:00+00:00"}}


def test_unreadable_state_is_ignored_with_a_warning(app, clock, sent, caplog):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 10}}
    app.backend.put_blob(state_key(app), b"{not json")
    make_beat(app, clock).tick()
    assert "ignoring unreadable state" in caplog.text
    assert len(sent) == 1


def test_state_of_removed_entries_is_dropped(app, clock, sent):
    app.conf.beat_schedule = {"old": {"task": "tasks.old", "schedule": 10}}
    first = make_beat(app, clock)
    first.tick()
    first.stop()
    first.run()
    app.conf.beat_schedule = {"new": {"task": "tasks.new", "schedule": 10}}
    make_beat(app, clock).tick()
    doc = json.loads(app.backend.get_blob(state_key(app)))
    assert list(doc["last_run_at"]) == ["new"]


# -- the lease ------------------------------------------------------------------------------


def test_only_the_lease_holder_sends_and_a_standby_takes_over(app, clock, sent, caplog):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 1.0}}
    active = make_beat(app, clock, lease_ttl=0.3)
    standby = make_beat(app, clock, lease_ttl=0.3)
    active.tick()
    standby.tick()
    assert (active.active, standby.active, len(sent)) == (True, False, 1)
    # When the active beat dies (no more renewals), the lease lapses after its TTL.
    time.sleep(0.5)
    clock.sleep(1.0)
    standby.tick()
    assert standby.active and len(sent) == 2
    standby_lines = [m for m in caplog.messages if "Scheduler: standby" in m]
    assert len(standby_lines) == 1 and "another beat holds the lease" in standby_lines[0]
    assert sum("Scheduler: active" in m for m in caplog.messages) == 2


def test_the_new_holder_continues_from_the_saved_state(app, clock, sent):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 10}}
    active = make_beat(app, clock, lease_ttl=0.2)
    standby = make_beat(app, clock, lease_ttl=0.2)
    active.tick()
    standby.tick()
    time.sleep(0.3)
    clock.sleep(5)
    standby.tick()  # takes over, but the run after the one at T0 is not due yet
    assert len(sent) == 1


def test_a_beat_that_lost_its_lease_stops_sending(app, clock, sent, caplog):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 1.0}}
    beat = make_beat(app, clock, lease_ttl=0.2)
    beat.tick()
    time.sleep(0.3)  # beat was paused longer than its lease
    assert app.backend.acquire_lease(lease_key(app), "someone-else", 30)
    clock.sleep(1.0)
    beat.tick()
    assert not beat.active and len(sent) == 1
    assert "Scheduler: standby (another beat holds the lease)" in caplog.text


def test_backend_errors_put_beat_on_standby_until_it_answers(app, clock, sent, monkeypatch,
                                                             caplog):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 1.0}}
    beat = make_beat(app, clock)
    beat.tick()
    backend = app.backend
    acquire = backend.acquire_lease
    monkeypatch.setattr(backend, "acquire_lease", lambda *a: (_ for _ in ()).throw(
        BackendUnavailable("redis://h:6379/0 unreachable")))
    clock.sleep(beat.tick())
    assert not beat.active and "result backend error" in caplog.text
    monkeypatch.setattr(backend, "acquire_lease", acquire)
    clock.sleep(beat.tick())
    assert beat.active and len(sent) == 2


def test_stop_releases_the_lease(app, clock, sent, caplog):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 1.0}}
    turns = []

    def sleep(seconds: float) -> None:
        turns.append(seconds)
        if len(turns) == 3:
            beat.stop()
        clock.sleep(seconds)

    beat = Beat(app, clock=clock, sleep=sleep, lease_ttl=60)
    beat.run()
    assert len(sent) == 3
    assert app.backend.acquire_lease(lease_key(app), "next-beat", 1)
    assert caplog.messages[-1] == "Scheduler: stopped"


def test_beat_thread_runs_beside_the_body_and_stops_with_it(app, sent):
    app.conf.beat_schedule = {"tick": {"task": "tasks.tick", "schedule": 0.05}}
    beat = Beat(app, lease_ttl=30)
    with beat_thread(beat) as thread:
        deadline = time.monotonic() + 10
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(sent) >= 2 and not thread.is_alive()
    assert app.backend.acquire_lease(lease_key(app), "next-beat", 1)


def test_beat_thread_makes_fork_wait_for_the_current_turn(app, sent):
    # A pool child forked mid-turn would inherit the turn's locks and hang (worker -B).
    in_turn, finish_turn, forked = threading.Event(), threading.Event(), threading.Event()

    class SlowTurn:
        def is_due(self, last_run_at: Any, now: Any) -> tuple[bool, float]:
            if threading.current_thread().name == "flowq-beat":
                in_turn.set()
                finish_turn.wait(10)
            return False, 60.0

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        forked.set()
        os.waitpid(pid, 0)

    app.conf.beat_schedule = {"slow": {"task": "tasks.slow", "schedule": SlowTurn()}}
    with beat_thread(Beat(app, lease_ttl=30)):
        assert in_turn.wait(10)
        forker = threading.Thread(target=fork)
        forker.start()
        assert not forked.wait(0.3)  # waits while the turn runs
        finish_turn.set()
        assert forked.wait(10)
        forker.join(10)


def test_stop_interrupts_the_default_sleep(app, sent):
    app.conf.beat_schedule = {"hourly": {"task": "tasks.hourly", "schedule": 3600}}
    beat = Beat(app, lease_ttl=30, max_interval=60)
    thread = threading.Thread(target=beat.run)
    thread.start()
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    beat.stop()
    thread.join(5)
    assert not thread.is_alive()


# -- time zones -----------------------------------------------------------------------------


def test_crontab_without_tz_uses_the_app_timezone(app, clock, sent):
    app.conf.timezone = "Europe/Berlin"
    app.conf.beat_schedule = {
        "nine-local": {"task": "tasks.local", "schedule": crontab(minute=0, hour=9)},
        "nine-utc": {"task": "tasks.utc", "schedule": crontab(minute=0, hour=9, tz="UTC")},
    }
    clock.now = datetime(2024, 6, 3, 6, 0, tzinfo=UTC)  # 08:00 in Berlin (CEST, +2)
    run_until(make_beat(app, clock), clock, datetime(2024, 6, 3, 9, 30, tzinfo=UTC))
    assert [(call.canvas.task, call.at.strftime("%H:%M")) for call in sent] == [
        ("tasks.local", "07:00"), ("tasks.utc", "09:00")]


def test_crontab_runs_once_in_the_spring_forward_night(app, clock, sent):
    # Berlin skips 02:00-03:00 on 2024-03-31: 02:30 runs once, at 03:00 CEST (01:00 UTC).
    app.conf.timezone = "Europe/Berlin"
    app.conf.beat_schedule = {"night": {"task": "tasks.night", "schedule": crontab(30, 2)}}
    clock.now = datetime(2024, 3, 30, 23, 0, tzinfo=UTC)
    run_until(make_beat(app, clock), clock, datetime(2024, 3, 31, 4, 0, tzinfo=UTC))
    assert [to_second(call.at) for call in sent] == [datetime(2024, 3, 31, 1, 0, tzinfo=UTC)]


def test_crontab_runs_once_in_the_fall_back_night(app, clock, sent):
    # Berlin repeats 02:00-03:00 on 2024-10-27: 02:30 runs at its first occurrence only.
    app.conf.timezone = "Europe/Berlin"
    app.conf.beat_schedule = {"night": {"task": "tasks.night", "schedule": crontab(30, 2)}}
    clock.now = datetime(2024, 10, 26, 22, 0, tzinfo=UTC)
    run_until(make_beat(app, clock), clock, datetime(2024, 10, 27, 4, 0, tzinfo=UTC))
    assert [to_second(call.at).astimezone(BERLIN).isoformat() for call in sent] == [
        "2024-10-27T02:30:00+02:00"]


def test_interval_schedules_count_real_time_across_dst(app, clock, sent):
    app.conf.timezone = "Europe/Berlin"
    app.conf.beat_schedule = {"hourly": {"task": "tasks.hourly", "schedule": 3600}}
    clock.now = datetime(2024, 10, 26, 23, 0, tzinfo=UTC)
    run_until(make_beat(app, clock), clock, datetime(2024, 10, 27, 3, 30, tzinfo=UTC))
    assert [call.at.hour for call in sent] == [23, 0, 1, 2, 3]


# -- configuration errors -------------------------------------------------------------------


class ThreeArguments:
    def is_due(self, last_run_at: Any, now: Any, extra: Any) -> tuple[bool, float]:
        return False, 1.0


class Raises:
    def is_due(self, last_run_at: Any, now: Any) -> tuple[bool, float]:
        raise RuntimeError("boom")


class AnswersABool:
    def is_due(self, last_run_at: Any, now: Any) -> bool:
        return True


@pytest.mark.parametrize("entry, message", [
    ({"task": "t", "schedule": "every minute"}, "a schedule must be a number of seconds"),
    ({"task": "t", "schedule": -5}, "must be a positive, finite duration"),
    ({"task": "t"}, "has no 'schedule'"),
    ({"schedule": 5}, "needs exactly one of 'task'"),
    ({"task": "t", "sig": chain(), "schedule": 5}, "needs exactly one of 'task'"),
    ({"sig": "tasks.t", "schedule": 5}, "'sig' must be a signature or workflow, not str"),
    ({"task": 42, "schedule": 5}, "'task' must be a task name"),
    ({"task": "t", "schedule": 5, "args": 1}, "'args' must be a list or tuple"),
    ({"task": "t", "schedule": 5, "kwargs": [1]}, "'kwargs' must be a dict"),
    ({"task": "t", "schedule": 5, "options": {"priorty": 1}}, "unknown option 'priorty'"),
    ({"task": "t", "schedule": 5, "relative": True}, "unknown key 'relative'"),
    ({"task": "t", "schedule": ThreeArguments()}, "must take (last_run_at, now)"),
    ({"task": "t", "schedule": Raises()}, "failed when asked is_due(): RuntimeError: boom"),
    ({"task": "t", "schedule": AnswersABool()}, "must return (due, next_in_seconds)"),
    ("tasks.t every 5s", "must be a dict with 'task'"),
])
def test_bad_entries_fail_at_start_naming_the_entry(app, entry, message):
    app.conf.beat_schedule = {"good": {"task": "t", "schedule": 5}, "broken": entry}
    with pytest.raises(ConfigurationError) as caught:
        Beat(app)
    text = str(caught.value)
    assert text.startswith("beat_schedule entry 'broken': ") and message in text
    assert "\n" not in text


def test_an_entry_naming_an_unknown_task_fails_at_start(app):
    app.conf.beat_schedule = {"good": {"task": "t", "schedule": 5},
                              "typo": {"task": "tasks.tik", "schedule": 5}}
    with pytest.raises(ConfigurationError) as caught:
        Beat(app)
    assert str(caught.value) == (
        "beat_schedule entry 'typo': invalid workflow: task (tasks.tik): task 'tasks.tik' is "
        "not registered (did you mean 'tasks.tick'?)")
    app.conf.beat_schedule = {"flow": {"sig": app.signature("t") | app.signature("tasks.nop"),
                                       "schedule": 5}}
    with pytest.raises(ConfigurationError, match="entry 'flow': .*task 'tasks.nop' is not reg"):
        Beat(app)


def test_an_unknown_timezone_setting_fails_at_start(app):
    app.conf.timezone = "Mars/Olympus_Mons"
    app.conf.beat_schedule = {"nine": {"task": "t", "schedule": crontab(0, 9)}}
    with pytest.raises(ConfigurationError, match="setting 'timezone' is 'Mars/Olympus_Mons'"):
        Beat(app)


@pytest.mark.parametrize("option", ["lease_ttl", "max_interval"])
def test_loop_settings_must_be_positive(app, option):
    with pytest.raises(ConfigurationError, match=f"beat {option} must be positive"):
        Beat(app, **{option: 0})


def test_schedules_are_kept_as_given(app):
    app.conf.beat_schedule = {"every": {"task": "t", "schedule": schedule(5)}}
    assert Beat(app).entries[0].schedule == schedule(5)


def test_arguments_are_checked_against_a_registered_task(app):
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    app.conf.beat_schedule = {"add": {"task": "tasks.add", "schedule": 5, "args": (1,)}}
    with pytest.raises(ConfigurationError, match="^beat_schedule entry 'add': invalid workflow"):
        Beat(app)
