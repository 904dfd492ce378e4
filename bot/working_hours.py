"""An office's opening hours, and time measured in them.

Comment deadlines are "N working minutes" in the office's zone (DESIGN.md), so a press at
19:55 with 30 minutes left is due 25 minutes after the next opening. Interval edges are wall
times in the office's zone, converted to UTC day by day, so DST days stay right: an office
open 09:00-17:00 is open 8 real hours on the Sunday the clocks change, a 24-hour one 23 or 25.
Working minutes are real (elapsed) minutes inside those intervals.

Org file form: ``{mon-fri: "09:00-20:00", sat: "10:00-18:00"}``; a day absent is closed, an
empty or missing mapping means always open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAY_NAMES", "WorkingHours", "parse_days", "parse_hours"]

DAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_INDEX = {name: i for i, name in enumerate(DAY_NAMES)}
_MINUTES_PER_DAY = 24 * 60
_CLOSED_WORDS = frozenset({"closed", "off"})
_INTERVAL_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
# A weekly spec with any open day yields an open interval within a week; two weeks of nothing
# means every open interval fell into DST gaps, so stop instead of walking forever.
_MAX_IDLE_DAYS = 14

Minutes = tuple[int, int]  # [start, end) in minutes since local midnight; end may be 1440


def parse_days(spec: str) -> set[int]:
    """Day numbers (Monday = 0) for ``mon-fri``, ``sat``, ``mon,wed,fri``, ``fri-mon``, ``daily``.

    Shared by office hours and roster entries so both accept the same words.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty day spec {spec!r}; use mon..sun, mon-fri, mon,wed,fri or daily")
    days: set[int] = set()
    for raw in spec.split(","):
        part = raw.strip().lower()
        if part == "daily":
            days.update(range(7))
        elif "-" in part:
            first, _, last = (p.strip() for p in part.partition("-"))
            a, b = _day(first, spec), _day(last, spec)
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # fri-mon wraps the weekend
        else:
            days.add(_day(part, spec))
    return days


def _day(name: str, spec: str) -> int:
    try:
        return _DAY_INDEX[name]
    except KeyError:
        raise ValueError(
            f"unknown day {name!r} in {spec!r}; use mon tue wed thu fri sat sun, "
            "ranges like mon-fri, lists like mon,wed,fri, or daily"
        ) from None


def parse_hours(spec: str) -> list[tuple[time, time]]:
    """Sorted intervals for ``"09:00-20:00"``, ``"09:00-13:00,14:00-18:00"``, ``"00:00-24:00"``.

    An end of ``24:00`` is returned as ``time.max`` (end of day, since ``time`` has no 24:00);
    touching intervals are merged; ``"closed"``/``"off"`` give ``[]``. Overlaps, ends before
    starts and intervals over midnight are errors: a typo must not silently change a deadline.
    """
    return [(_to_time(s), _to_time(e)) for s, e in _hours_minutes(spec)]


def _hours_minutes(spec: object) -> list[Minutes]:
    if not isinstance(spec, str):
        raise ValueError(f"hours must be a string like '09:00-20:00', got {spec!r}")
    if spec.strip().lower() in _CLOSED_WORDS:
        return []
    if not spec.strip():
        raise ValueError("empty hours; write '09:00-20:00' or 'closed'")
    return _parse_minutes(spec)


def _parse_minutes(spec: str) -> list[Minutes]:
    intervals: list[Minutes] = []
    for raw in spec.split(","):
        m = _INTERVAL_RE.match(raw)
        if not m:
            raise ValueError(f"bad interval {raw.strip()!r} in {spec!r}; write HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"bad time in {raw.strip()!r}; hours 00-23 (24:00 as an end), minutes 00-59")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(
                f"interval {raw.strip()!r} ends before it starts; intervals over midnight are not "
                "supported, split them as '22:00-24:00' on one day and '00:00-02:00' on the next"
            )
        intervals.append((start, end))
    intervals.sort()
    merged: list[Minutes] = []
    for start, end in intervals:
        if merged and start < merged[-1][1]:
            raise ValueError(f"intervals overlap in {spec!r}")
        if merged and start == merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _to_time(minute: int) -> time:
    return time.max if minute == _MINUTES_PER_DAY else time(minute // 60, minute % 60)


def _aware(at: datetime, name: str = "at") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)


@dataclass(frozen=True)
class WorkingHours:
    """Weekly opening hours in one time zone; all results are UTC-aware datetimes.

    ``week[d]`` holds the open intervals of weekday ``d`` (Monday = 0) as minutes since local
    midnight, sorted, non-touching, end up to 1440. Build it with ``parse`` or ``always``.
    """

    timezone: str
    week: tuple[tuple[Minutes, ...], ...]

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"unknown time zone {self.timezone!r}; use an IANA name like Europe/Moscow") from None
        if len(self.week) != 7:
            raise ValueError("week must have 7 days, Monday first")

    @classmethod
    def parse(cls, spec: Mapping[str, str] | None, timezone: str) -> WorkingHours:
        """Read the org file's ``working_hours``; empty or None means always open."""
        if not spec:
            return cls.always(timezone)
        if not isinstance(spec, Mapping):
            raise ValueError(f"working_hours must be a mapping like {{mon-fri: '09:00-20:00'}}, got {spec!r}")
        days: list[tuple[Minutes, ...] | None] = [None] * 7
        owner: dict[int, str] = {}
        for key, value in spec.items():
            try:
                day_numbers = parse_days(key)
                intervals = tuple(_hours_minutes(value))
            except ValueError as e:
                raise ValueError(f"working_hours {key!r}: {value!r}: {e}") from None
            for d in sorted(day_numbers):
                if d in owner:
                    raise ValueError(
                        f"working_hours: {DAY_NAMES[d]} is given twice, in {owner[d]!r} and {key!r}"
                    )
                owner[d] = key
                days[d] = intervals
        return cls(timezone, tuple(d or () for d in days))

    @classmethod
    def always(cls, timezone: str) -> WorkingHours:
        """Open round the clock: deadlines are then plain elapsed minutes."""
        return cls(timezone, tuple(((0, _MINUTES_PER_DAY),) for _ in range(7)))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def always_open(self) -> bool:
        return all(day == ((0, _MINUTES_PER_DAY),) for day in self.week)

    @property
    def has_open_days(self) -> bool:
        return any(self.week)

    def covers_local(self, at: datetime) -> bool:
        """Whether the wall time of ``at`` (naive = already local) is inside the hours.

        For roster-style questions ("is 19:30 on a Saturday in the shift?") where the wall
        clock, not elapsed time, is what counts.
        """
        local = at if at.tzinfo is None else at.astimezone(self.tz)
        minute = local.hour * 60 + local.minute + (local.second * 1_000_000 + local.microsecond) / 60e6
        return any(s <= minute < e for s, e in self.week[local.weekday()])

    def is_open(self, at: datetime) -> bool:
        """Whether the office is open at the instant ``at`` (intervals are [start, end))."""
        at = _aware(at)
        if self.always_open:
            return True
        if not self.has_open_days:
            return False
        start, _ = next(self._spans(at))
        return start <= at

    def next_opening(self, at: datetime) -> datetime:
        """The earliest instant at or after ``at`` when the office is open (``at`` if open)."""
        at = _aware(at)
        if self.always_open:
            return at
        self._require_open_days()
        start, _ = next(self._spans(at))
        return max(start, at)

    def add_working_minutes(self, start: datetime, minutes: float) -> datetime:
        """The instant when ``minutes`` of open time have passed since ``start``.

        Closed time is skipped; a result that lands exactly on a closing time is that closing
        time (not the next opening), and ``minutes=0`` at a closed time gives the next opening.
        """
        start = _aware(start, "start")
        if minutes < 0:
            raise ValueError(f"minutes must be >= 0, got {minutes}")
        remaining = timedelta(minutes=minutes)
        if self.always_open:
            return start + remaining
        self._require_open_days()
        for span_start, span_end in self._spans(start):
            begin = max(span_start, start)
            if begin + remaining <= span_end:
                return begin + remaining
            remaining -= span_end - begin
        raise AssertionError("unreachable: _spans is endless")  # pragma: no cover

    def working_minutes_between(self, a: datetime, b: datetime) -> float:
        """Open minutes in [a, b); negative when ``b`` is before ``a``, like ``b - a``."""
        a, b = _aware(a, "a"), _aware(b, "b")
        if b < a:
            return -self.working_minutes_between(b, a)
        if self.always_open:
            return (b - a).total_seconds() / 60
        if not self.has_open_days or a == b:
            return 0.0
        total = timedelta()
        for span_start, span_end in self._spans(a):
            if span_start >= b:
                break
            total += min(span_end, b) - max(span_start, a)
        return total.total_seconds() / 60

    def _require_open_days(self) -> None:
        if not self.has_open_days:
            raise ValueError("working hours have no open day, so no deadline can be reached")

    def _edge(self, day: date, minute: int) -> datetime:
        """A local wall time as UTC; fold=0, so a time in a DST gap moves forward by the gap."""
        if minute == _MINUTES_PER_DAY:
            day, minute = day + timedelta(days=1), 0
        local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.tz)
        return local.astimezone(UTC)

    def _spans(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open [start, end) spans in UTC that end after ``since``, in order, never overlapping.

        Starts a day early so a span that began before local midnight is seen; each span is
        clipped to begin after the previous one, so odd zone changes cannot count time twice.
        """
        day = since.astimezone(self.tz).date() - timedelta(days=1)
        last_end: datetime | None = None
        idle = 0
        while True:
            produced = False
            for s, e in self.week[day.weekday()]:
                start, end = self._edge(day, s), self._edge(day, e)
                if last_end is not None and start < last_end:
                    start = last_end
                if end <= start:
                    continue
                produced = True
                last_end = end
                if end > since:
                    yield start, end
            idle = 0 if produced else idle + 1
            if idle > _MAX_IDLE_DAYS:
                raise ValueError("working hours have no open time that exists on the clock")
            day += timedelta(days=1)

