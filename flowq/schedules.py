"""When periodic tasks run: interval schedules and Celery-style crontabs.

Pure values: no I/O, no clock reads. The beat service asks a schedule two questions,
always passing the times in, so every answer here is reproducible in a test.

Protocol (:class:`Schedule`) that every schedule follows::

    is_due(last_run_at, now) -> (due, seconds)
        due      -- run now? True when a fire time has passed since ``last_run_at``.
        seconds  -- how long beat may sleep before asking again (always > 0).
    next_run_after(moment) -> datetime
        the first fire time strictly after ``moment``.

All datetimes are timezone-aware; a naive datetime is read as UTC.

Missed runs: a run missed while beat was down runs ONCE when beat comes back, not once
per missed slot (as in Celery): an entry is due when its most recent fire time is after
``last_run_at``.

Never run (``last_run_at=None``): an interval schedule is due at once. A crontab is not:
it is due only when one of its fire times lies in the last minute, so a new
``crontab(hour=9, minute=0)`` first runs at 09:00, not when beat starts.

Crontabs match in the local wall time of their ``tz`` (default UTC):

- a fire time in a spring-forward gap (a wall time that does not exist) runs once, at
  the first valid instant after the gap: 02:30 on the night Berlin skips 02:00-03:00
  runs at 03:00 CEST, and ``*/15`` runs once at 03:00 for its four skipped slots;
- a fire time in a fall-back overlap (a wall time that happens twice) runs once, at the
  first occurrence (``fold=0``). This holds for ``hour='*'`` too: ``*/15`` pauses during
  the repeated hour. Use :class:`schedule`, or a crontab in UTC, for a steady pace.

``day_of_month`` and ``day_of_week`` must both match (Celery's rule; Vixie cron runs when
either matches), so ``crontab(0, 0, day_of_week='fri', day_of_month=13)`` is Friday the 13th.
"""

from __future__ import annotations

import calendar
import copy
import math
import numbers
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, NamedTuple, Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flowq.exceptions import ConfigurationError

__all__ = ["Schedule", "crontab", "maybe_schedule", "schedule"]

_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
# The Gregorian calendar repeats every 400 years (a whole number of weeks), so a date
# pattern that matches nothing in 400 years never matches.
_CALENDAR_CYCLE_YEARS = 400


class Schedule(Protocol):
    """What the beat service needs from a schedule; see the module docstring."""

    def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]: ...

    def next_run_after(self, moment: datetime) -> datetime: ...


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already.

    All arithmetic and comparison here is done in UTC because Python compares and
    subtracts two datetimes that share a tzinfo by wall time, ignoring DST offsets.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


# -- interval -------------------------------------------------------------------------------


class schedule:
    """Run every ``run_every`` (seconds, or a timedelta), counted from the last run.

    >>> schedule(30)
    <freq: 30.00s>

    Raises ConfigurationError unless ``run_every`` is a positive, finite duration.
    """

    __slots__ = ("_run_every",)

    def __init__(self, run_every: float | timedelta):
        if isinstance(run_every, timedelta):
            seconds = run_every.total_seconds()
        elif isinstance(run_every, numbers.Real) and not isinstance(run_every, bool):
            seconds = float(run_every)
        else:
            raise ConfigurationError(
                "schedule run_every must be a number of seconds or a timedelta, not "
                f"{type(run_every).__name__} ({run_every!r})")
        if not (math.isfinite(seconds) and seconds > 0):
            raise ConfigurationError(
                f"schedule run_every must be a positive, finite duration, got {run_every!r}")
        self._run_every = timedelta(seconds=seconds)

    @property
    def run_every(self) -> timedelta:
        """The interval between runs."""
        return self._run_every

    @property
    def seconds(self) -> float:
        """The interval in seconds."""
        return self._run_every.total_seconds()

    def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]:
        """Due when ``run_every`` has passed since ``last_run_at``, or if it never ran."""
        if last_run_at is None:
            return True, self.seconds
        remaining = (_utc(last_run_at) + self._run_every - _utc(now)).total_seconds()
        if remaining > 0:
            return False, remaining
        return True, self.seconds

    def next_run_after(self, moment: datetime) -> datetime:
        """The next run if the last one was at ``moment``, in ``moment``'s time zone."""
        later = _utc(moment) + self._run_every
        return later if moment.tzinfo is None else later.astimezone(moment.tzinfo)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, schedule):
            return NotImplemented
        return self._run_every == other._run_every

    def __hash__(self) -> int:
        return hash((schedule, self._run_every))

    def __repr__(self) -> str:
        return f"<freq: {self.seconds:.2f}s>"


# -- crontab field syntax -----------------------------------------------------------------


class _Field(NamedTuple):
    """How one crontab field is spelled and which values it allows."""

    name: str
    low: int
    high: int  # highest value a spec may name
    last: int  # highest distinct value: where '*' and wrapping ranges end
    names: Mapping[str, int]
    noun: str  # what a name in this field is, for error messages ('' = names not allowed)
    note: str = ""  # appended to out-of-range messages


_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")


def _name_table(full_names: tuple[str, ...], first: int) -> dict[str, int]:
    """Map full and three-letter names to numbers, e.g. 'mon' and 'monday' to 1."""
    table = {name[:3]: number for number, name in enumerate(full_names, first)}
    table.update({name: number for number, name in enumerate(full_names, first)})
    return table


_MINUTE_FIELD = _Field("minute", 0, 59, 59, {}, "")
_HOUR_FIELD = _Field("hour", 0, 23, 23, {}, "")
_DOW_FIELD = _Field("day_of_week", 0, 7, 6, _name_table(_WEEKDAYS, 0), "weekday",
                    " (0 and 7 are Sunday)")
_DOM_FIELD = _Field("day_of_month", 1, 31, 31, {}, "")
_MOY_FIELD = _Field("month_of_year", 1, 12, 12, _name_table(_MONTHS, 1), "month")

# One comma-separated part: '*', 'a', or 'a-b', each optionally followed by '/step'.
_PART = re.compile(r"(?P<base>\*|\w+|\w+-\w+)(?:/(?P<step>\w+))?", re.ASCII)
_SYNTAX_HELP = "use '*', '*/n', 'a', 'a-b', 'a-b/n' or a comma-separated list of those"


def _parse_field(field: _Field, spec: Any) -> frozenset[int]:
    """Turn one crontab field (string, int or iterable) into the set of values it matches."""
    if isinstance(spec, str):
        parts: list[int | str] = [part.strip() for part in spec.split(",")]
    elif isinstance(spec, int) and not isinstance(spec, bool):
        parts = [spec]
    elif isinstance(spec, Iterable):
        parts = list(spec)
    else:
        raise ConfigurationError(
            f"crontab {field.name} must be a string, an int or an iterable of ints, "
            f"not {type(spec).__name__} ({spec!r})")
    if not parts or parts == [""]:
        raise ConfigurationError(f"crontab {field.name} {spec!r} is empty; {_SYNTAX_HELP}")
    values: set[int] = set()
    for part in parts:
        values.update(_parse_part(field, part, spec))
    # Sunday is both 0 and 7 in day_of_week; keep one spelling.
    return frozenset(0 if field is _DOW_FIELD and v == 7 else v for v in values)


def _parse_part(field: _Field, part: object, spec: Any) -> list[int]:
    """Values of one list item: an int, or a string like '5', '1-10/2' or '*/15'."""
    if isinstance(part, int) and not isinstance(part, bool):
        return [_checked(field, part, str(part), spec)]
    if not isinstance(part, str):
        raise ConfigurationError(
            f"crontab {field.name} items must be ints or strings, not "
            f"{type(part).__name__} ({part!r}) in {spec!r}")
    match = _PART.fullmatch(part)
    if match is None:
        raise ConfigurationError(
            f"crontab {field.name} '{part}' is not valid cron syntax; {_SYNTAX_HELP}")
    base, step_text = match["base"], match["step"]
    step = _parse_step(field, part, step_text) if step_text is not None else 1
    if base == "*":
        values = list(range(field.low, field.last + 1))
    elif "-" in base:
        start, end = base.split("-")
        values = _expand_range(field, _value(field, start, spec), _value(field, end, spec))
    elif step_text is not None:
        raise ConfigurationError(
            f"crontab {field.name} '{part}' is not valid cron syntax: a step needs '*' or "
            f"a range before it, e.g. '{base}-{field.last}/{step_text}'")
    else:
        values = [_value(field, base, spec)]
    return values[::step]


def _parse_step(field: _Field, part: str, text: str) -> int:
    """The n of '/n': a whole number of at least 1."""
    if not (text.isdigit() and int(text) >= 1):
        raise ConfigurationError(
            f"crontab {field.name} '{part}' has step '{text}'; the step must be a whole "
            "number of at least 1")
    return int(text)


def _value(field: _Field, text: str, spec: Any) -> int:
    """One number or name, e.g. '5', 'mon', 'January'."""
    if text.isdigit():
        return _checked(field, int(text), text, spec)
    number = field.names.get(text.lower())
    if number is not None:
        return number
    if field.noun:
        names = ", ".join(name for name in field.names if len(name) == 3)
        raise ConfigurationError(
            f"crontab {field.name} '{text}' is not a number or {field.noun} name ({names})")
    raise ConfigurationError(f"crontab {field.name} '{text}' is not a number")


def _checked(field: _Field, number: int, text: str, spec: Any) -> int:
    """``number`` if ``field`` allows it, else a ConfigurationError naming the range."""
    if field.low <= number <= field.high:
        return number
    where = "" if str(spec) == text else f" (in {spec!r})"
    raise ConfigurationError(
        f"crontab {field.name} '{text}' is out of range {field.low}-{field.high}"
        f"{field.note}{where}")


def _expand_range(field: _Field, start: int, end: int) -> list[int]:
    """Values from ``start`` to ``end`` inclusive, wrapping past the top (22-2, fri-mon)."""
    if field is _DOW_FIELD and start == 7:
        start = 0  # '7-3' means Sunday to Wednesday
    if end >= start:
        return list(range(start, end + 1))
    return list(range(start, field.last + 1)) + list(range(field.low, end + 1))


def _materialize(spec: Any) -> Any:
    """A non-string iterable as a tuple, so it can be read twice; anything else as is."""
    if isinstance(spec, Iterable) and not isinstance(spec, str):
        return tuple(spec)
    return spec


def _spec_text(spec: Any) -> str:
    """How a field is shown in ``repr``: as written, or comma-joined for ints."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, int):
        return str(spec)
    return ",".join(str(item) for item in spec)


def _timezone(tz: str | tzinfo | None) -> tzinfo:
    """A tzinfo for a zoneinfo key or tzinfo; None and 'UTC' need no tz database."""
    if tz is None or tz == "UTC":
        return timezone.utc
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ConfigurationError(
            f"crontab tz must be a zoneinfo key or a tzinfo, not {type(tz).__name__} ({tz!r})")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"crontab tz '{tz}' is not a known time zone (expected a key like "
            "'Europe/Berlin')") from None


# -- crontab --------------------------------------------------------------------------------


class crontab:
    """Run at the wall-clock minutes whose fields all match, in the time zone ``tz``.

    Fields take Celery's syntax: ``'*'``, ``'*/15'``, ``'1-5'``, ``'1-10/2'``, lists such
    as ``'1,15,30'``, weekday names (``'mon'``, ``'sunday'``) and month names (``'jan'``);
    an int or an iterable of ints works too. ``day_of_week`` counts 0-6 from Sunday and
    also takes 7 for Sunday.

    >>> crontab(minute=0, hour=9, day_of_week='mon-fri', tz='Europe/Berlin')
    <crontab: 0 9 * * mon-fri (m/h/dom/mon/dow) Europe/Berlin>

    The parsed fields are read-only frozensets (``minute``, ``hour``, ``day_of_week``
    with Sunday as 0, ``day_of_month``, ``month_of_year``); ``tz`` is a tzinfo (UTC when
    none was given; beat then uses the app's ``timezone``, see :meth:`with_default_tz`).

    Raises ConfigurationError for an invalid field, an unknown time zone, or a
    day_of_month/month_of_year pair that no date has (such as February 30).
    """

    __slots__ = ("_days", "_hours", "_minutes", "_months", "_text", "_tz_given",
                 "day_of_month", "day_of_week", "hour", "minute", "month_of_year", "tz")

    def __init__(self, minute: Any = "*", hour: Any = "*", day_of_week: Any = "*",
                 day_of_month: Any = "*", month_of_year: Any = "*",
                 tz: str | tzinfo | None = None):
        # Read iterators once: the spec is both parsed and shown in repr.
        minute, hour, day_of_week, day_of_month, month_of_year = (
            _materialize(spec) for spec in (minute, hour, day_of_week, day_of_month,
                                            month_of_year))
        self.minute = _parse_field(_MINUTE_FIELD, minute)
        self.hour = _parse_field(_HOUR_FIELD, hour)
        self.day_of_week = _parse_field(_DOW_FIELD, day_of_week)
        self.day_of_month = _parse_field(_DOM_FIELD, day_of_month)
        self.month_of_year = _parse_field(_MOY_FIELD, month_of_year)
        self.tz = _timezone(tz)
        self._tz_given = tz is not None
        self._text = " ".join(_spec_text(spec) for spec in
                              (minute, hour, day_of_month, month_of_year, day_of_week))
        self._months = tuple(sorted(self.month_of_year))
        self._days = tuple(sorted(self.day_of_month))
        self._hours = tuple(sorted(self.hour))
        self._minutes = tuple(sorted(self.minute))
        self._check_some_date_matches(day_of_month, month_of_year)

    def with_default_tz(self, tz: str | tzinfo) -> crontab:
        """This crontab if it was made with a ``tz``, else a copy that matches in ``tz``.

        Beat calls this with the app's ``timezone`` setting, so ``crontab(hour=9)`` means
        9:00 where the app lives (Celery's rule) while an explicit ``tz`` always wins.
        """
        if self._tz_given:
            return self
        localized = copy.copy(self)
        localized.tz = _timezone(tz)
        return localized

    def _check_some_date_matches(self, day_of_month: Any, month_of_year: Any) -> None:
        """Refuse day/month pairs that never occur, so searches always end."""
        longest = max(calendar.monthrange(2000, month)[1] for month in self.month_of_year)
        if min(self.day_of_month) <= longest:
            return
        raise ConfigurationError(
            f"crontab day_of_month '{_spec_text(day_of_month)}' never occurs in month_of_year "
            f"'{_spec_text(month_of_year)}': those months have at most {longest} days")

    # -- the schedule protocol --

    def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]:
        """Due when a fire time passed after ``last_run_at``; see the module docstring.

        With ``last_run_at=None`` only a fire time in the last minute makes it due.
        The seconds returned are until the next fire time after ``now``.
        """
        now = _utc(now)
        since = now - _MINUTE if last_run_at is None else _utc(last_run_at)
        due = _utc(self.next_run_after(since)) <= now
        return due, (_utc(self.next_run_after(now)) - now).total_seconds()

    def next_run_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment``, as an aware datetime in ``tz``.

        Compare results in UTC: Python compares two datetimes sharing a tzinfo by wall
        time, and never finds an ambiguous wall time ``==`` to one in another zone.

        Jumps month by month, day by day and hour by hour over matching values only, so a
        pattern that matches once in decades (Monday Feb 29) is found quickly.
        """
        moment = _utc(moment)
        wall = moment.astimezone(self.tz).replace(tzinfo=None, second=0, microsecond=0, fold=0)
        while True:
            wall = self._next_wall(wall + _MINUTE)
            fire = _wall_to_instant(wall, self.tz)
            # Only in a fall-back overlap: after the second 01:30, the first 01:45 has passed.
            if _utc(fire) > moment:
                return fire

    # -- search over naive wall-clock times --

    def _next_wall(self, start: datetime) -> datetime:
        """The first naive wall time at or after ``start`` that matches every field."""
        # Only the end of datetime's range (year 9999) stops this search early: the
        # constructor has made sure some date matches, so one occurs in every 400 years.
        last_year = min(start.year + _CALENDAR_CYCLE_YEARS, date.max.year)
        for day in self._matching_days(start.date(), last_year):
            earliest = start.time() if day == start.date() else time(0)
            at = self._first_time_at_or_after(earliest)
            if at is not None:
                return datetime.combine(day, at)
        raise ConfigurationError(
            f"{self!r} has no fire time from {start:%Y-%m-%d %H:%M} to the end of {last_year}")

    def _matching_days(self, first: date, last_year: int) -> Iterator[date]:
        """Dates from ``first`` on that match month, day of month and weekday, in order."""
        for year in range(first.year, last_year + 1):
            for month in self._months:
                if (year, month) < (first.year, first.month):
                    continue
                days_in_month = calendar.monthrange(year, month)[1]
                for day in self._days:
                    if day > days_in_month:
                        break
                    candidate = date(year, month, day)
                    # date.weekday() is 0 for Monday; crontab counts from Sunday.
                    if candidate >= first and (candidate.weekday() + 1) % 7 in self.day_of_week:
                        yield candidate

    def _first_time_at_or_after(self, earliest: time) -> time | None:
        """The first matching hour:minute at or after ``earliest`` on one day, if any."""
        for hour in self._hours[bisect_left(self._hours, earliest.hour):]:
            floor = earliest.minute if hour == earliest.hour else 0
            index = bisect_left(self._minutes, floor)
            if index < len(self._minutes):
                return time(hour, self._minutes[index])
        return None

    # -- value behaviour --

    def _key(self) -> tuple[Any, ...]:
        zone = self.tz.key if isinstance(self.tz, ZoneInfo) else self.tz
        return (self.minute, self.hour, self.day_of_week, self.day_of_month,
                self.month_of_year, zone)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, crontab):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((crontab, self._key()))

    def __repr__(self) -> str:
        return f"<crontab: {self._text} (m/h/dom/mon/dow) {self.tz}>"


# -- wall time to instant -------------------------------------------------------------------


def _wall_to_instant(wall: datetime, tz: tzinfo) -> datetime:
    """The instant a naive wall time fires at in ``tz``: its first occurrence, or the end
    of the spring-forward gap it falls in."""
    first = wall.replace(tzinfo=tz, fold=0)
    round_trip = first.astimezone(timezone.utc).astimezone(tz)
    if round_trip.replace(tzinfo=None) == wall:
        return first
    return _gap_end(wall, tz)


def _gap_end(wall: datetime, tz: tzinfo) -> datetime:
    """The first instant after the gap that skips ``wall`` (the moment clocks jumped).

    PEP 495: inside a gap, fold=1 reads the wall time with the offset after the jump (an
    instant before it) and fold=0 with the offset before (an instant after it). The
    transition lies between the two; bisect to the second.
    """
    before = wall.replace(tzinfo=tz, fold=1).astimezone(timezone.utc)
    after = wall.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)
    offset_after = after.astimezone(tz).utcoffset()
    while after - before > _SECOND:
        middle = before + timedelta(seconds=(after - before).total_seconds() // 2)
        if middle.astimezone(tz).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return after.astimezone(tz)


# -- coercion -------------------------------------------------------------------------------


def maybe_schedule(value: object) -> Schedule:
    """A schedule from a beat entry's ``schedule`` value.

    Numbers (seconds) and timedeltas become :class:`schedule`; objects with ``is_due``
    (crontab, custom schedules) pass through. Anything else raises ConfigurationError.
    """
    if isinstance(value, timedelta):
        return schedule(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return schedule(float(value))
    if callable(getattr(value, "is_due", None)):
        return cast(Schedule, value)
    raise ConfigurationError(
        "a schedule must be a number of seconds, a timedelta or an object with is_due() "
        f"(such as crontab), not {type(value).__name__} ({value!r})")
