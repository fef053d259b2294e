"""Tests for flowq.schedules: crontab syntax, errors, is_due semantics, search and DST."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from flowq.exceptions import ConfigurationError
from flowq.schedules import crontab, maybe_schedule, schedule

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args).replace(tzinfo=BERLIN, fold=fold)  # type: ignore[arg-type]


def new_york(*args: int, fold: int = 0) -> datetime:
    return datetime(*args).replace(tzinfo=NEW_YORK, fold=fold)  # type: ignore[arg-type]


# -- syntax -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field", "expected"), [
    ({}, "minute", set(range(60))),
    ({"minute": "*/15"}, "minute", {0, 15, 30, 45}),
    ({"minute": "*/90"}, "minute", {0}),
    ({"minute": "1-5"}, "minute", {1, 2, 3, 4, 5}),
    ({"minute": "1-10/2"}, "minute", {1, 3, 5, 7, 9}),
    ({"minute": "1,15,30"}, "minute", {1, 15, 30}),
    ({"minute": " 1, 15 ,30 "}, "minute", {1, 15, 30}),
    ({"minute": "0-9/5,30"}, "minute", {0, 5, 30}),
    ({"minute": 5}, "minute", {5}),
    ({"minute": [0, 30]}, "minute", {0, 30}),
    ({"minute": range(0, 60, 20)}, "minute", {0, 20, 40}),
    ({"minute": (m for m in (10, 50))}, "minute", {10, 50}),
    ({"minute": ["*/30", 7]}, "minute", {0, 7, 30}),
    ({"hour": "22-2"}, "hour", {22, 23, 0, 1, 2}),
    ({"hour": "*/6"}, "hour", {0, 6, 12, 18}),
    ({"day_of_week": "mon-fri"}, "day_of_week", {1, 2, 3, 4, 5}),
    ({"day_of_week": "sunday"}, "day_of_week", {0}),
    ({"day_of_week": "SUN,Sat"}, "day_of_week", {0, 6}),
    ({"day_of_week": "7"}, "day_of_week", {0}),
    ({"day_of_week": "5-7"}, "day_of_week", {5, 6, 0}),
    ({"day_of_week": "7-2"}, "day_of_week", {0, 1, 2}),
    ({"day_of_week": "fri-mon"}, "day_of_week", {5, 6, 0, 1}),
    ({"day_of_week": "mon-sun"}, "day_of_week", set(range(7))),
    ({"day_of_week": "fri-tue/2"}, "day_of_week", {5, 0, 2}),
    ({"day_of_week": "*/2"}, "day_of_week", {0, 2, 4, 6}),
    ({"day_of_week": ["mon", "wednesday", 7]}, "day_of_week", {0, 1, 3}),
    ({"day_of_month": "*/10"}, "day_of_month", {1, 11, 21, 31}),
    ({"day_of_month": "30-2"}, "day_of_month", {30, 31, 1, 2}),
    ({"month_of_year": "jan"}, "month_of_year", {1}),
    ({"month_of_year": "Jan-Mar,December"}, "month_of_year", {1, 2, 3, 12}),
    ({"month_of_year": "nov-feb"}, "month_of_year", {11, 12, 1, 2}),
    ({"month_of_year": "*/3"}, "month_of_year", {1, 4, 7, 10}),
])
def test_field_syntax(kwargs: dict[str, Any], field: str, expected: set[int]) -> None:
    assert getattr(crontab(**kwargs), field) == expected


_SYNTAX_HELP = "use '*', '*/n', 'a', 'a-b', 'a-b/n' or a comma-separated list of those"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"minute": 61}, "crontab minute '61' is out of range 0-59"),
    ({"minute": "61"}, "crontab minute '61' is out of range 0-59"),
    ({"minute": -1}, "crontab minute '-1' is out of range 0-59"),
    ({"minute": "0,61"}, "crontab minute '61' is out of range 0-59 (in '0,61')"),
    ({"minute": [0, 61]}, "crontab minute '61' is out of range 0-59 (in (0, 61))"),
    ({"hour": "24"}, "crontab hour '24' is out of range 0-23"),
    ({"hour": "20-25"}, "crontab hour '25' is out of range 0-23 (in '20-25')"),
    ({"day_of_week": 8},
     "crontab day_of_week '8' is out of range 0-7 (0 and 7 are Sunday)"),
    ({"day_of_month": "0"}, "crontab day_of_month '0' is out of range 1-31"),
    ({"day_of_month": 32}, "crontab day_of_month '32' is out of range 1-31"),
    ({"month_of_year": "13"}, "crontab month_of_year '13' is out of range 1-12"),
    ({"month_of_year": 0}, "crontab month_of_year '0' is out of range 1-12"),
    ({"day_of_week": "mun"},
     ("crontab day_of_week 'mun' is not a number or weekday name "
      "(sun, mon, tue, wed, thu, fri, sat)")),
    ({"month_of_year": "jun-foo"},
     ("crontab month_of_year 'foo' is not a number or month name "
      "(jan, feb, mar, apr, may, jun, jul, aug, sep, oct, nov, dec)")),
    ({"minute": "mon"}, "crontab minute 'mon' is not a number"),
    ({"minute": "*/0"},
     "crontab minute '*/0' has step '0'; the step must be a whole number of at least 1"),
    ({"minute": "*/x"},
     "crontab minute '*/x' has step 'x'; the step must be a whole number of at least 1"),
    ({"minute": "5/15"},
     ("crontab minute '5/15' is not valid cron syntax: a step needs '*' or a range "
      "before it, e.g. '5-59/15'")),
    ({"minute": "1-2-3"}, f"crontab minute '1-2-3' is not valid cron syntax; {_SYNTAX_HELP}"),
    ({"minute": "-5"}, f"crontab minute '-5' is not valid cron syntax; {_SYNTAX_HELP}"),
    ({"minute": "1,,2"}, f"crontab minute '' is not valid cron syntax; {_SYNTAX_HELP}"),
    ({"minute": "*/5/5"}, f"crontab minute '*/5/5' is not valid cron syntax; {_SYNTAX_HELP}"),
    ({"minute": ""}, f"crontab minute '' is empty; {_SYNTAX_HELP}"),
    ({"minute": []}, f"crontab minute () is empty; {_SYNTAX_HELP}"),
    ({"minute": 1.5},
     "crontab minute must be a string, an int or an iterable of ints, not float (1.5)"),
    ({"hour": True},
     "crontab hour must be a string, an int or an iterable of ints, not bool (True)"),
    ({"minute": [1.5]},
     "crontab minute items must be ints or strings, not float (1.5) in (1.5,)"),
    ({"day_of_month": 30, "month_of_year": 2},
     ("crontab day_of_month '30' never occurs in month_of_year '2': "
      "those months have at most 29 days")),
    ({"day_of_month": "31", "month_of_year": "apr,jun,sep,nov"},
     ("crontab day_of_month '31' never occurs in month_of_year 'apr,jun,sep,nov': "
      "those months have at most 30 days")),
    ({"tz": "Mars/Olympus_Mons"},
     ("crontab tz 'Mars/Olympus_Mons' is not a known time zone "
      "(expected a key like 'Europe/Berlin')")),
    ({"tz": 5}, "crontab tz must be a zoneinfo key or a tzinfo, not int (5)"),
])
def test_crontab_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        crontab(**kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize(("run_every", "message"), [
    (0, "schedule run_every must be a positive, finite duration, got 0"),
    (-5.0, "schedule run_every must be a positive, finite duration, got -5.0"),
    (timedelta(0), ("schedule run_every must be a positive, finite duration, "
                    "got datetime.timedelta(0)")),
    (float("inf"), "schedule run_every must be a positive, finite duration, got inf"),
    ("5", "schedule run_every must be a number of seconds or a timedelta, not str ('5')"),
    (True, "schedule run_every must be a number of seconds or a timedelta, not bool (True)"),
])
def test_schedule_errors(run_every: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        schedule(run_every)
    assert str(caught.value) == message


# -- maybe_schedule, repr, equality --------------------------------------------------------


def test_maybe_schedule_turns_durations_into_interval_schedules() -> None:
    assert maybe_schedule(30) == schedule(30)
    assert maybe_schedule(1.5) == schedule(1.5)
    assert maybe_schedule(timedelta(minutes=1)) == schedule(60)


def test_maybe_schedule_passes_schedules_through() -> None:
    cron = crontab("*/5")
    interval = schedule(10)

    class Custom:
        def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]:
            return True, 1.0

        def next_run_after(self, moment: datetime) -> datetime:
            return moment

    custom = Custom()
    assert maybe_schedule(cron) is cron
    assert maybe_schedule(interval) is interval
    assert maybe_schedule(custom) is custom


@pytest.mark.parametrize(("value", "shown"), [
    ("*/5 * * * *", "str ('*/5 * * * *')"),
    (None, "NoneType (None)"),
    (True, "bool (True)"),
])
def test_maybe_schedule_rejects_other_values(value: Any, shown: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        maybe_schedule(value)
    assert str(caught.value) == (
        "a schedule must be a number of seconds, a timedelta or an object with is_due() "
        f"(such as crontab), not {shown}")


def test_repr() -> None:
    assert repr(crontab("*/15")) == "<crontab: */15 * * * * (m/h/dom/mon/dow) UTC>"
    assert repr(crontab(0, [9, 17], "mon-fri", tz="Europe/Berlin")) == (
        "<crontab: 0 9,17 * * mon-fri (m/h/dom/mon/dow) Europe/Berlin>")
    assert repr(schedule(30)) == "<freq: 30.00s>"
    assert repr(schedule(timedelta(milliseconds=1500))) == "<freq: 1.50s>"


def test_equality_is_by_value() -> None:
    assert crontab(day_of_week="mon-fri") == crontab(day_of_week="1-5")
    assert hash(crontab(day_of_week="mon-fri")) == hash(crontab(day_of_week="1-5"))
    assert crontab("0,30") == crontab([30, 0])
    assert crontab(day_of_week=7) == crontab(day_of_week="sun")
    assert crontab(tz="Europe/Berlin") == crontab(tz=ZoneInfo("Europe/Berlin"))
    assert crontab(tz=None) == crontab(tz="UTC") == crontab(tz=UTC)
    assert crontab(tz="Europe/Berlin") != crontab()
    assert crontab("*/15") != crontab("*/20")
    assert schedule(30) == schedule(timedelta(seconds=30))
    assert hash(schedule(30)) == hash(schedule(30.0))
    assert schedule(30) != schedule(31)
    assert schedule(60) != crontab()


def test_schedules_survive_pickling() -> None:
    cron = crontab(0, 9, "mon-fri", tz="Europe/Berlin")
    assert pickle.loads(pickle.dumps(cron)) == cron
    assert pickle.loads(pickle.dumps(schedule(5))) == schedule(5)


# -- is_due ---------------------------------------------------------------------------------


def test_interval_never_run_is_due_at_once() -> None:
    assert schedule(30).is_due(None, utc(2026, 1, 1)) == (True, 30.0)


def test_interval_is_due_after_run_every() -> None:
    every = schedule(30)
    last = utc(2026, 1, 1, 12, 0, 0)
    assert every.is_due(last, last + timedelta(seconds=10)) == (False, 20.0)
    assert every.is_due(last, last + timedelta(seconds=30)) == (True, 30.0)


def test_interval_missed_runs_run_once() -> None:
    every = schedule(30)
    last = utc(2026, 1, 1, 12, 0, 0)
    back = last + timedelta(hours=5)
    assert every.is_due(last, back) == (True, 30.0)
    assert every.is_due(back, back + timedelta(seconds=1)) == (False, 29.0)


def test_interval_counts_real_time_across_dst() -> None:
    every = schedule(timedelta(hours=1))
    before = berlin(2026, 3, 29, 1, 30)  # 00:30 UTC, half an hour before the jump
    assert every.is_due(before, berlin(2026, 3, 29, 3, 10)) == (False, 20 * 60.0)
    assert every.next_run_after(before).astimezone(UTC) == utc(2026, 3, 29, 1, 30)


def test_interval_reads_naive_datetimes_as_utc() -> None:
    every = schedule(60)
    assert every.is_due(datetime(2026, 1, 1, 12), utc(2026, 1, 1, 12, 0, 40)) == (False, 20.0)
    assert every.next_run_after(datetime(2026, 1, 1, 12)) == utc(2026, 1, 1, 12, 1)


def test_crontab_is_due_when_a_fire_time_passed_since_last_run() -> None:
    cron = crontab("*/15")
    last = utc(2026, 1, 1, 10, 0)
    assert cron.is_due(last, utc(2026, 1, 1, 10, 10)) == (False, 300.0)
    assert cron.is_due(last, utc(2026, 1, 1, 10, 15)) == (True, 900.0)
    assert cron.is_due(last, utc(2026, 1, 1, 10, 20)) == (True, 600.0)


def test_crontab_missed_runs_run_once() -> None:
    cron = crontab("*/15")
    # Given beat was down from 10:00 to 14:07 (16 slots missed)
    last, back = utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 14, 7)
    # When it comes back, the entry is due once
    assert cron.is_due(last, back) == (True, 480.0)
    # Then, having run at 14:07, it waits for 14:15
    assert cron.is_due(back, back + timedelta(seconds=1)) == (False, 479.0)


def test_crontab_never_run_waits_for_its_first_fire_time() -> None:
    cron = crontab(0, 9)  # daily at 09:00
    assert cron.is_due(None, utc(2026, 1, 1, 8, 59)) == (False, 60.0)
    assert cron.is_due(None, utc(2026, 1, 1, 9, 0)) == (True, 86400.0)
    assert cron.is_due(None, utc(2026, 1, 1, 9, 0, 59)) == (True, 86341.0)
    # Beat started after today's slot: no catch-up for a run that never was.
    assert cron.is_due(None, utc(2026, 1, 1, 9, 1)) == (False, 86340.0)


def test_crontab_is_due_seconds_are_positive_on_a_fire_time() -> None:
    cron = crontab()
    due, seconds = cron.is_due(utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 10, 1))
    assert due and seconds == 60.0
    due, seconds = cron.is_due(utc(2026, 1, 1, 10, 1), utc(2026, 1, 1, 10, 1, 59, 999999))
    assert not due and 0 < seconds < 0.001


def test_crontab_is_due_reads_naive_datetimes_as_utc() -> None:
    cron = crontab(0, 9, tz="Europe/Berlin")  # 08:00 UTC in winter
    assert cron.is_due(datetime(2026, 1, 1, 7), datetime(2026, 1, 1, 8, 0, 30)) == (
        True, 86370.0)


def test_crontab_fall_back_repeated_slot_is_not_due_twice() -> None:
    cron = crontab(30, 2, tz="Europe/Berlin")
    first = berlin(2026, 10, 25, 2, 30, fold=0)
    second = berlin(2026, 10, 25, 2, 30, fold=1)
    assert cron.is_due(first - timedelta(minutes=1), first)[0]
    assert not cron.is_due(first, second)[0]


def test_crontab_spring_forward_skipped_slots_run_once() -> None:
    cron = crontab("*/15", tz="Europe/Berlin")
    last = berlin(2026, 3, 29, 1, 45)
    at_gap_end = berlin(2026, 3, 29, 3, 0)
    assert cron.is_due(last, at_gap_end) == (True, 900.0)
    assert cron.is_due(at_gap_end, at_gap_end + timedelta(minutes=5)) == (False, 600.0)


# -- next_run_after ---------------------------------------------------------------------------


@pytest.mark.parametrize(("moment", "expected"), [
    (utc(2026, 1, 1, 10, 7, 30), utc(2026, 1, 1, 10, 15)),
    (utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 10, 30)),  # strictly after
    (utc(2026, 1, 1, 10, 14, 59, 999999), utc(2026, 1, 1, 10, 15)),
    (utc(2026, 12, 31, 23, 50), utc(2027, 1, 1, 0, 0)),
])
def test_every_15_minutes(moment: datetime, expected: datetime) -> None:
    assert crontab("*/15").next_run_after(moment) == expected


@pytest.mark.parametrize(("moment", "expected"), [
    (utc(2026, 1, 1, 12), utc(2026, 1, 2, 9)),  # Thursday afternoon -> Friday
    (utc(2026, 1, 2, 9), utc(2026, 1, 5, 9)),  # Friday 09:00 -> Monday
    (utc(2026, 1, 3, 8), utc(2026, 1, 5, 9)),  # Saturday -> Monday
    (utc(2026, 1, 5, 8, 59), utc(2026, 1, 5, 9)),
])
def test_weekdays_at_nine(moment: datetime, expected: datetime) -> None:
    assert crontab(0, 9, day_of_week="mon-fri").next_run_after(moment) == expected


@pytest.mark.parametrize(("moment", "expected"), [
    (utc(2026, 1, 31, 12), utc(2026, 2, 1)),
    (utc(2026, 2, 1), utc(2026, 3, 1)),
    (utc(2026, 12, 15), utc(2027, 1, 1)),
])
def test_first_of_the_month(moment: datetime, expected: datetime) -> None:
    assert crontab(0, 0, day_of_month=1).next_run_after(moment) == expected


@pytest.mark.parametrize(("moment", "expected"), [
    (utc(2025, 3, 1), utc(2028, 2, 29)),
    (utc(2028, 2, 28, 23, 59), utc(2028, 2, 29)),
    (utc(2097, 1, 1), utc(2104, 2, 29)),  # 2100 is not a leap year
])
def test_february_29(moment: datetime, expected: datetime) -> None:
    assert crontab(0, 0, day_of_month=29, month_of_year="feb").next_run_after(moment) == expected


def test_rare_dates_are_found_without_scanning_minutes() -> None:
    # Feb 29 on a Monday: 2016, then 2044 and 2072.
    cron = crontab(0, 0, "mon", 29, 2)
    assert cron.next_run_after(utc(2016, 3, 1)) == utc(2044, 2, 29)
    assert cron.next_run_after(utc(2044, 2, 29)) == utc(2072, 2, 29)


def test_search_stops_at_the_end_of_the_calendar() -> None:
    cron = crontab(0, 0, day_of_month=29, month_of_year=2)
    with pytest.raises(ConfigurationError) as caught:
        cron.next_run_after(utc(9996, 3, 1))  # the next Feb 29 would be in year 10000
    assert str(caught.value) == (
        "<crontab: 0 0 29 2 * (m/h/dom/mon/dow) UTC> has no fire time "
        "from 9996-03-01 00:01 to the end of 9999")


def test_friday_the_13th_needs_both_day_fields() -> None:
    cron = crontab(0, 0, day_of_week="fri", day_of_month=13)
    assert cron.next_run_after(utc(2026, 1, 1)) == utc(2026, 2, 13)
    assert cron.next_run_after(utc(2026, 2, 14)) == utc(2026, 3, 13)


def test_month_names() -> None:
    cron = crontab(0, 12, day_of_month=15, month_of_year="jan,jul")
    assert cron.next_run_after(utc(2026, 2, 1)) == utc(2026, 7, 15, 12)
    assert cron.next_run_after(utc(2026, 7, 15, 12)) == utc(2027, 1, 15, 12)


def test_result_is_in_the_crontab_time_zone() -> None:
    fire = crontab(0, 9, tz="Europe/Berlin").next_run_after(utc(2026, 1, 1))
    assert fire == berlin(2026, 1, 1, 9)
    assert fire.tzinfo is BERLIN
    assert fire.utcoffset() == timedelta(hours=1)


def test_with_default_tz_fills_in_a_missing_tz_only() -> None:
    plain = crontab(0, 9)
    localized = plain.with_default_tz("Europe/Berlin")
    assert localized == crontab(0, 9, tz="Europe/Berlin")
    assert localized.next_run_after(utc(2026, 1, 1)) == berlin(2026, 1, 1, 9)
    assert plain == crontab(0, 9) and plain.tz is UTC  # the original is unchanged
    explicit = crontab(0, 9, tz="UTC")
    assert explicit.with_default_tz("Europe/Berlin") is explicit
    assert crontab(0, 9, tz=BERLIN).with_default_tz(NEW_YORK).tz is BERLIN


def test_with_default_tz_rejects_an_unknown_zone() -> None:
    with pytest.raises(ConfigurationError, match="'Mars/Base' is not a known time zone"):
        crontab(0, 9).with_default_tz("Mars/Base")


def test_moments_in_other_zones_and_naive_moments() -> None:
    cron = crontab(0, 9, tz="Europe/Berlin")
    assert cron.next_run_after(new_york(2026, 1, 1, 2, 59)) == berlin(2026, 1, 1, 9)
    assert cron.next_run_after(datetime(2026, 1, 1, 8, 0)) == berlin(2026, 1, 2, 9)


# -- daylight saving time (2026) --------------------------------------------------------------
# Berlin: Mar 29 02:00 CET -> 03:00 CEST; Oct 25 03:00 CEST -> 02:00 CET.
# New York: Mar 8 02:00 EST -> 03:00 EDT; Nov 1 02:00 EDT -> 01:00 EST.


def test_berlin_spring_forward_runs_at_the_end_of_the_gap() -> None:
    cron = crontab(30, 2, tz="Europe/Berlin")
    fire = cron.next_run_after(berlin(2026, 3, 28, 12))
    assert fire == berlin(2026, 3, 29, 3, 0)
    assert fire.utcoffset() == timedelta(hours=2)
    assert cron.next_run_after(fire) == berlin(2026, 3, 30, 2, 30)


def test_berlin_spring_forward_collapses_skipped_slots_into_one_run() -> None:
    cron = crontab("*/15", tz="Europe/Berlin")
    assert cron.next_run_after(berlin(2026, 3, 29, 1, 45)) == berlin(2026, 3, 29, 3, 0)
    assert cron.next_run_after(berlin(2026, 3, 29, 3, 0)) == berlin(2026, 3, 29, 3, 15)


def test_berlin_fall_back_runs_at_the_first_occurrence_only() -> None:
    cron = crontab(30, 2, tz="Europe/Berlin")
    fire = cron.next_run_after(berlin(2026, 10, 24, 12))
    # An ambiguous wall time never == a datetime in another zone (PEP 495): compare in UTC.
    assert fire.astimezone(UTC) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert fire.fold == 0 and fire.utcoffset() == timedelta(hours=2)
    assert cron.next_run_after(fire) == berlin(2026, 10, 26, 2, 30)


def test_berlin_fall_back_skips_the_repeated_hour() -> None:
    cron = crontab("*/15", tz="Europe/Berlin")
    fire = cron.next_run_after(berlin(2026, 10, 25, 2, 30))
    assert fire.astimezone(UTC) == utc(2026, 10, 25, 0, 45)  # 02:45 CEST
    # 02:45 CEST is followed by 03:00 CET, an hour and a quarter later.
    assert cron.next_run_after(fire) == utc(2026, 10, 25, 2, 0)
    # During the second 02:xx, the next run is 03:00 CET.
    second_pass = berlin(2026, 10, 25, 2, 10, fold=1)
    assert cron.next_run_after(second_pass) == berlin(2026, 10, 25, 3, 0)


def test_new_york_spring_forward_runs_at_the_end_of_the_gap() -> None:
    cron = crontab(30, 2, tz="America/New_York")
    fire = cron.next_run_after(new_york(2026, 3, 7, 12))
    assert fire == new_york(2026, 3, 8, 3, 0)
    assert fire == utc(2026, 3, 8, 7, 0)
    assert cron.next_run_after(fire) == new_york(2026, 3, 9, 2, 30)


def test_new_york_fall_back_runs_at_the_first_occurrence_only() -> None:
    cron = crontab(30, 1, tz="America/New_York")
    fire = cron.next_run_after(new_york(2026, 10, 31, 12))
    assert fire.astimezone(UTC) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert cron.next_run_after(fire) == new_york(2026, 11, 2, 1, 30)
    assert cron.next_run_after(new_york(2026, 11, 1, 1, 0, fold=1)) == new_york(2026, 11, 2, 1, 30)


def test_midnight_in_a_gap_runs_at_the_start_of_the_day() -> None:
    # Sao Paulo skipped 00:00-01:00 on 2018-11-04.
    cron = crontab(0, 0, tz="America/Sao_Paulo")
    fire = cron.next_run_after(utc(2018, 11, 3, 12))
    assert fire == utc(2018, 11, 4, 3, 0)
    assert (fire.hour, fire.minute) == (1, 0)


# -- property: next_run_after against brute force -----------------------------------------------

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
         "Pacific/Chatham", "Asia/Kolkata", "America/Sao_Paulo")
BRUTE_FORCE_WINDOW = timedelta(days=3)


def field_specs(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[Any]:
    """Random valid specs for one field, in every syntax form."""
    value = st.integers(low, high)
    token = value.map(str) | st.sampled_from(names) if names else value.map(str)
    steps = st.integers(1, high - low + 1).map(str)
    part = st.one_of(
        token,
        steps.map(lambda step: f"*/{step}"),
        st.tuples(token, token).map("-".join),
        st.tuples(token, token, steps).map(lambda t: f"{t[0]}-{t[1]}/{t[2]}"),
    )
    return st.one_of(
        st.just("*"),
        part,
        st.lists(part, min_size=1, max_size=4).map(",".join),
        value,
        st.lists(value, min_size=1, max_size=4),
    )


WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sunday", "Friday")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
               "dec", "March")


@cache
def offset_changes(zone: str) -> tuple[datetime, ...]:
    """Instants (to the hour) where ``zone`` changed its UTC offset in 2017-2026."""
    tz = ZoneInfo(zone)
    changes, hour = [], utc(2017, 1, 1)
    previous = hour.astimezone(tz).utcoffset()
    while hour.year < 2027:
        hour += timedelta(hours=1)
        offset = hour.astimezone(tz).utcoffset()
        if offset != previous:
            changes.append(hour)
        previous = offset
    return tuple(changes)


def build_crontab(**fields: Any) -> crontab:
    """A crontab from drawn fields; rejects the example if no date can match (Feb 30)."""
    try:
        return crontab(**fields)
    except ConfigurationError:
        reject()


def shown_in_any_zone(draw: st.DrawFn, instant: datetime) -> datetime:
    """``instant`` as the caller might pass it: in some zone, whatever the crontab's."""
    return instant.astimezone(ZoneInfo(draw(st.sampled_from(ZONES))))


@st.composite
def crontab_and_moment(draw: st.DrawFn) -> tuple[crontab, datetime]:
    """Any crontab (date fields mostly '*', so results often fall in the brute-force
    window) and any instant, half the time within days of one of its zone's DST changes."""
    zone = draw(st.sampled_from(ZONES))
    star = st.just("*")
    cron = build_crontab(
        minute=draw(field_specs(0, 59)),
        hour=draw(star | field_specs(0, 23)),
        day_of_week=draw(star | field_specs(0, 7, WEEKDAY_NAMES)),
        day_of_month=draw(star | star | field_specs(1, 31)),
        month_of_year=draw(star | star | field_specs(1, 12, MONTH_NAMES)),
        tz=zone,
    )
    changes = offset_changes(zone)
    near_change = draw(st.booleans())
    if changes and near_change:
        change = draw(st.sampled_from(changes))
        instant = change + draw(st.timedeltas(-BRUTE_FORCE_WINDOW, timedelta(hours=3)))
    else:
        naive = draw(st.datetimes(datetime(1990, 1, 1), datetime(2060, 1, 1)))
        instant = naive.replace(tzinfo=UTC)
    return cron, shown_in_any_zone(draw, instant)


@st.composite
def crontab_and_moment_at_dst_change(draw: st.DrawFn) -> tuple[crontab, datetime]:
    """A daily crontab and an instant up to two hours before or one after a DST change,
    so the next fire time often falls in a gap or an overlap."""
    zone = draw(st.sampled_from([zone for zone in ZONES if offset_changes(zone)]))
    cron = build_crontab(minute=draw(field_specs(0, 59)),
                         hour=draw(st.just("*") | field_specs(0, 23)), tz=zone)
    change = draw(st.sampled_from(offset_changes(zone)))
    instant = change + draw(st.timedeltas(-timedelta(hours=2), timedelta(hours=1)))
    return cron, shown_in_any_zone(draw, instant)


def wall_matches(cron: crontab, wall: datetime) -> bool:
    return (wall.minute in cron.minute and wall.hour in cron.hour
            and wall.day in cron.day_of_month and wall.month in cron.month_of_year
            and wall.isoweekday() % 7 in cron.day_of_week)


def fires_at(cron: crontab, instant: datetime) -> bool:
    """Brute-force oracle: does ``cron`` fire at this whole-minute UTC instant?

    It fires at a wall time that matches, unless this is that wall time's second
    occurrence; and at the end of a spring-forward gap holding a matching wall time.
    """
    local = instant.astimezone(cron.tz)
    if local.fold == 1:
        return False
    if wall_matches(cron, local):
        return True
    before = (instant - timedelta(minutes=1)).astimezone(cron.tz).replace(tzinfo=None)
    wall, skipped_to = before + timedelta(minutes=1), local.replace(tzinfo=None)
    while wall < skipped_to:
        if wall_matches(cron, wall):
            return True
        wall += timedelta(minutes=1)
    return False


def check_first_fire_after(cron: crontab, moment: datetime) -> None:
    """next_run_after(moment) is after moment, fires, and nothing fires in between."""
    fire = cron.next_run_after(moment)
    # Same-tzinfo datetimes compare by wall time; compare instants in UTC.
    fire_utc, moment_utc = fire.astimezone(UTC), moment.astimezone(UTC)

    assert fire_utc > moment_utc
    assert fire.tzinfo is cron.tz
    assert (fire.second, fire.microsecond) == (0, 0)
    assert fires_at(cron, fire_utc)
    if fire_utc - moment_utc <= BRUTE_FORCE_WINDOW:
        minute = moment_utc.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while minute < fire_utc:
            assert not fires_at(cron, minute), f"missed {minute.astimezone(cron.tz)}"
            minute += timedelta(minutes=1)


@settings(max_examples=100, deadline=None)
@given(crontab_and_moment())
def test_next_run_after_is_the_first_fire_time_after(case: tuple[crontab, datetime]) -> None:
    check_first_fire_after(*case)


@settings(max_examples=300, deadline=None)
@given(crontab_and_moment_at_dst_change())
def test_next_run_after_around_dst_changes(case: tuple[crontab, datetime]) -> None:
    check_first_fire_after(*case)


@settings(max_examples=100, deadline=None)
@given(crontab_and_moment(), st.timedeltas(timedelta(0), timedelta(days=40)))
def test_is_due_iff_a_fire_time_passed(case: tuple[crontab, datetime],
                                       elapsed: timedelta) -> None:
    cron, last = case
    now = (last.astimezone(UTC) + elapsed).astimezone(last.tzinfo)
    due, seconds = cron.is_due(last, now)
    assert due == (cron.next_run_after(last).astimezone(UTC) <= now.astimezone(UTC))
    assert seconds > 0
    expected = cron.next_run_after(now).astimezone(UTC) - now.astimezone(UTC)
    assert abs(seconds - expected.total_seconds()) < 1e-3
