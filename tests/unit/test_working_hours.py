"""Working hours: the org file's form, deadlines in working minutes, DST days."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.working_hours import WorkingHours, parse_days, parse_hours

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
OFFICE_SPEC = {"mon-fri": "09:00-20:00", "sat": "10:00-18:00"}


@pytest.fixture
def office() -> WorkingHours:
    return WorkingHours.parse(OFFICE_SPEC, "Europe/Moscow")


def msk(day: int, hh: int, mm: int = 0) -> datetime:
    """May 2024: Tue 14, Wed 15, Thu 16, Fri 17, Sat 18, Sun 19, Mon 20."""
    return datetime(2024, 5, day, hh, mm, tzinfo=MSK)


def berlin(month: int, day: int, hh: int, mm: int = 0, fold: int = 0) -> datetime:
    return datetime(2024, month, day, hh, mm, tzinfo=BERLIN, fold=fold)


# --- deadlines in the office from DESIGN.md --------------------------------------------------


@pytest.mark.parametrize(
    ("start", "minutes", "due"),
    [
        (msk(15, 19, 55), 30, msk(16, 9, 25)),  # Wed evening -> Thu morning
        (msk(15, 19, 55), 15, msk(16, 9, 10)),
        (msk(17, 19, 50), 30, msk(18, 10, 20)),  # Fri evening -> Sat opens at 10
        (msk(18, 17, 50), 30, msk(20, 9, 20)),  # Sat evening -> Sunday closed -> Mon
        (msk(14, 22, 0), 30, msk(15, 9, 30)),  # press after hours: clock starts at opening
        (msk(19, 12, 0), 30, msk(20, 9, 30)),  # press on closed Sunday
        (msk(15, 12, 0), 30, msk(15, 12, 30)),  # plain open time
        (msk(17, 19, 50), 10, msk(17, 20, 0)),  # lands exactly on closing: stays there
        (msk(15, 7, 0), 0, msk(15, 9, 0)),  # zero minutes when closed: next opening
        (msk(15, 12, 0), 480 + 660 + 660 + 480 + 180, msk(20, 12, 0)),  # Wed noon to Mon noon
    ],
)
def test_deadline_counts_only_open_minutes(office: WorkingHours, start: datetime, minutes: float, due: datetime) -> None:
    assert office.add_working_minutes(start, minutes) == due


def test_deadline_is_utc_whatever_zone_the_start_is_in(office: WorkingHours) -> None:
    start_utc = msk(15, 19, 55).astimezone(UTC)
    due = office.add_working_minutes(start_utc, 30)
    assert due.tzinfo is UTC
    assert due == msk(16, 9, 25)
    assert office.add_working_minutes(msk(15, 19, 55).astimezone(ZoneInfo("Asia/Tokyo")), 30) == due


def test_naive_datetimes_are_refused(office: WorkingHours) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        office.add_working_minutes(datetime(2024, 5, 15, 12), 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        office.is_open(datetime(2024, 5, 15, 12))


def test_negative_minutes_are_refused(office: WorkingHours) -> None:
    with pytest.raises(ValueError, match="minutes"):
        office.add_working_minutes(msk(15, 12), -1)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (msk(15, 9, 0), True),  # opening minute is open
        (msk(15, 19, 59), True),
        (msk(15, 20, 0), False),  # closing minute is closed
        (msk(15, 8, 59), False),
        (msk(18, 9, 59), False),  # Saturday opens later
        (msk(18, 10, 0), True),
        (msk(19, 12, 0), False),  # Sunday absent = closed
    ],
)
def test_is_open(office: WorkingHours, at: datetime, expected: bool) -> None:
    assert office.is_open(at) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (msk(15, 12, 0), msk(15, 12, 0)),  # open now
        (msk(15, 20, 0), msk(16, 9, 0)),
        (msk(18, 18, 0), msk(20, 9, 0)),
        (msk(19, 3, 0), msk(20, 9, 0)),
    ],
)
def test_next_opening(office: WorkingHours, at: datetime, expected: datetime) -> None:
    result = office.next_opening(at)
    assert result == expected and result.tzinfo is UTC


def test_working_minutes_between(office: WorkingHours) -> None:
    assert office.working_minutes_between(msk(15, 19, 55), msk(16, 9, 25)) == 30
    assert office.working_minutes_between(msk(20, 0, 0), msk(27, 0, 0)) == 5 * 660 + 480
    assert office.working_minutes_between(msk(16, 9, 25), msk(15, 19, 55)) == -30
    assert office.working_minutes_between(msk(19, 0), msk(19, 23)) == 0


def test_several_intervals_a_day_skip_the_lunch_break() -> None:
    hours = WorkingHours.parse({"mon-fri": "09:00-13:00,14:00-18:00"}, "Europe/Moscow")
    assert hours.add_working_minutes(msk(15, 12, 50), 20) == msk(15, 14, 10)
    assert not hours.is_open(msk(15, 13, 30))
    assert hours.working_minutes_between(msk(15, 0), msk(16, 0)) == 480


def test_round_the_clock_days_run_through_midnight() -> None:
    hours = WorkingHours.parse({"mon-sat": "00:00-24:00"}, "Europe/Moscow")
    assert hours.add_working_minutes(msk(15, 23, 50), 30) == msk(16, 0, 20)
    assert hours.is_open(msk(15, 23, 59)) and hours.is_open(msk(16, 0, 0))
    assert hours.add_working_minutes(msk(18, 23, 50), 30) == msk(20, 0, 20)  # Sunday closed


# --- DST: interval edges are wall times, minutes are real minutes ----------------------------
# Europe/Berlin 2024: clocks go 02:00 -> 03:00 on Sun 31 March, 03:00 -> 02:00 on Sun 27 October.


@pytest.fixture
def berlin_24h() -> WorkingHours:
    return WorkingHours.parse({"daily": "00:00-24:00"}, "Europe/Berlin")


@pytest.fixture
def berlin_day() -> WorkingHours:
    return WorkingHours.parse({"daily": "09:00-17:00"}, "Europe/Berlin")


def test_spring_sunday_of_a_24h_office_has_23_working_hours(berlin_24h: WorkingHours) -> None:
    assert berlin_24h.working_minutes_between(berlin(3, 31, 0), berlin(4, 1, 0)) == 23 * 60


def test_autumn_sunday_of_a_24h_office_has_25_working_hours(berlin_24h: WorkingHours) -> None:
    assert berlin_24h.working_minutes_between(berlin(10, 27, 0), berlin(10, 28, 0)) == 25 * 60


def test_deadline_across_spring_forward_is_real_minutes(berlin_24h: WorkingHours) -> None:
    due = berlin_24h.add_working_minutes(berlin(3, 31, 1, 50), 30)
    assert due == berlin(3, 31, 3, 20)  # 01:50 CET + 30 real minutes = 03:20 CEST
    assert due - berlin(3, 31, 1, 50) == timedelta(minutes=30)


def test_deadline_across_fall_back_is_real_minutes(berlin_24h: WorkingHours) -> None:
    due = berlin_24h.add_working_minutes(berlin(10, 27, 2, 50), 30)  # first 02:50 (CEST)
    # the repeated hour's 02:20 (CET); fold=1 times never compare equal across zones (PEP 495)
    assert due == berlin(10, 27, 2, 20, fold=1).astimezone(UTC)
    assert due.astimezone(BERLIN).utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize("sunday", [berlin(3, 31, 0), berlin(10, 27, 0)])
def test_office_day_on_a_dst_sunday_keeps_its_wall_clock_hours(berlin_day: WorkingHours, sunday: datetime) -> None:
    assert berlin_day.working_minutes_between(sunday, sunday + timedelta(days=1)) == 480
    opening = berlin_day.next_opening(sunday)
    assert opening.astimezone(BERLIN).time() == time(9, 0)
    assert berlin_day.add_working_minutes(opening, 480).astimezone(BERLIN).time() == time(17, 0)


@pytest.mark.parametrize(("month", "saturday"), [(3, 30), (10, 26)])
def test_overnight_deadline_over_a_dst_night_opens_at_nine_local(
    berlin_day: WorkingHours, month: int, saturday: int
) -> None:
    due = berlin_day.add_working_minutes(berlin(month, saturday, 16, 50), 30)
    assert due == berlin(month, saturday + 1, 9, 20)


# --- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "days"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat", {5}),
        ("sun", {6}),
        ("mon,wed,fri", {0, 2, 4}),
        ("daily", set(range(7))),
        ("Mon - Sat", {0, 1, 2, 3, 4, 5}),
        ("fri-mon", {4, 5, 6, 0}),
        ("mon-tue, sun", {0, 1, 6}),
    ],
)
def test_parse_days(spec: str, days: set[int]) -> None:
    assert parse_days(spec) == days


@pytest.mark.parametrize("spec", ["", "funday", "mon-", "mon-fri-sat", "monday"])
def test_parse_days_rejects_unknown_words(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_days(spec)


@pytest.mark.parametrize(
    ("spec", "hours"),
    [
        ("09:00-20:00", [(time(9), time(20))]),
        ("9:30 - 18:00", [(time(9, 30), time(18))]),
        ("14:00-18:00,09:00-13:00", [(time(9), time(13)), (time(14), time(18))]),
        ("00:00-24:00", [(time(0), time.max)]),
        ("09:00-13:00,13:00-18:00", [(time(9), time(18))]),  # touching intervals merge
        ("closed", []),
    ],
)
def test_parse_hours(spec: str, hours: list[tuple[time, time]]) -> None:
    assert parse_hours(spec) == hours


@pytest.mark.parametrize(
    "spec",
    ["", "9-20", "09:00", "20:00-09:00", "09:00-09:00", "25:00-26:00", "09:60-10:00", "24:30-24:45",
     "09:00-24:01", "09:00-13:00,12:00-18:00"],
)
def test_parse_hours_rejects_bad_intervals(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_hours(spec)


def test_bad_day_key_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="funday"):
        WorkingHours.parse({"funday": "09:00-20:00"}, "Europe/Moscow")


def test_bad_hours_value_is_named_with_its_key() -> None:
    with pytest.raises(ValueError, match=r"'sat'.*'10-18'"):
        WorkingHours.parse({"mon-fri": "09:00-20:00", "sat": "10-18"}, "Europe/Moscow")


def test_day_given_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="fri"):
        WorkingHours.parse({"mon-fri": "09:00-20:00", "fri": "10:00-16:00"}, "Europe/Moscow")


@pytest.mark.parametrize("value", [None, 900, ["09:00-20:00"]])
def test_non_string_hours_are_an_error(value: object) -> None:
    with pytest.raises(ValueError, match="mon"):
        WorkingHours.parse({"mon": value}, "Europe/Moscow")  # type: ignore[dict-item]


def test_unknown_time_zone_is_an_error() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        WorkingHours.parse(OFFICE_SPEC, "Mars/Olympus")


def test_non_mapping_spec_is_an_error() -> None:
    with pytest.raises(ValueError, match="mapping"):
        WorkingHours.parse(["mon-fri"], "Europe/Moscow")  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [None, {}])
def test_empty_spec_is_always_open(spec: dict[str, str] | None) -> None:
    hours = WorkingHours.parse(spec, "Europe/Moscow")
    assert hours == WorkingHours.always("Europe/Moscow") and hours.always_open
    assert hours.is_open(msk(19, 3, 0))
    assert hours.add_working_minutes(msk(19, 23, 50), 30) == msk(20, 0, 20)
    assert hours.working_minutes_between(msk(19, 0), msk(20, 0)) == 1440


def test_spec_with_no_open_day_cannot_reach_a_deadline() -> None:
    hours = WorkingHours.parse({"mon-sun": "closed"}, "Europe/Moscow")
    assert not hours.is_open(msk(15, 12))
    assert hours.working_minutes_between(msk(15, 0), msk(22, 0)) == 0
    with pytest.raises(ValueError, match="no open day"):
        hours.add_working_minutes(msk(15, 12), 30)
    with pytest.raises(ValueError, match="no open day"):
        hours.next_opening(msk(15, 12))


def test_working_hours_are_a_frozen_value(office: WorkingHours) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        office.timezone = "UTC"  # type: ignore[misc]
    assert office == WorkingHours.parse(dict(OFFICE_SPEC), "Europe/Moscow")
    assert hash(office) == hash(WorkingHours.parse(OFFICE_SPEC, "Europe/Moscow"))


def test_covers_local_reads_the_wall_clock(office: WorkingHours) -> None:
    assert office.covers_local(datetime(2024, 5, 18, 17, 59))  # naive = local Saturday
    assert not office.covers_local(datetime(2024, 5, 18, 18, 0))
    assert office.covers_local(msk(15, 9).astimezone(UTC))  # aware: converted first


# --- properties ----------------------------------------------------------------------------

ZONES = ["Europe/Moscow", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]
SAMPLE_SPECS: list[dict[str, str]] = [
    OFFICE_SPEC,
    {"daily": "00:00-24:00"},
    {"daily": "09:00-17:00"},
    {"mon-fri": "09:00-13:00,14:00-18:00"},
    {"sun": "01:30-03:30"},  # inside DST gaps and repeats
    {"mon,wed,fri": "00:00-02:30,22:00-24:00"},
]


@st.composite
def generated_specs(draw: st.DrawFn) -> dict[str, str]:
    spec: dict[str, str] = {}
    for name in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        points = draw(st.lists(st.integers(0, 96), max_size=6, unique=True).map(sorted))
        points = points[: len(points) // 2 * 2]
        if points:
            spec[name] = ",".join(f"{_hhmm(a * 15)}-{_hhmm(b * 15)}" for a, b in zip(points[::2], points[1::2]))
    assume(spec)
    return spec


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"




def hours_in(zones: list[str]) -> st.SearchStrategy[WorkingHours]:
    return st.builds(WorkingHours.parse, st.sampled_from(SAMPLE_SPECS) | generated_specs(), st.sampled_from(zones))


hours_strategy = hours_in(ZONES)
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
minutes_strategy = st.floats(min_value=0, max_value=3000, allow_nan=False, allow_infinity=False)
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPSILON = 1e-6  # minutes; timedelta keeps microseconds


@PROPERTY_SETTINGS
@given(hours_strategy, instants, minutes_strategy)
def test_deadline_lands_in_open_time_or_on_a_closing_edge(hours: WorkingHours, start: datetime, minutes: float) -> None:
    due = hours.add_working_minutes(start, minutes)
    assert due >= start and due.tzinfo is UTC
    assert hours.is_open(due) or hours.is_open(due - timedelta(microseconds=1))


@PROPERTY_SETTINGS
@given(hours_strategy, instants, minutes_strategy)
def test_minutes_between_start_and_deadline_are_the_minutes_added(
    hours: WorkingHours, start: datetime, minutes: float
) -> None:
    due = hours.add_working_minutes(start, minutes)
    assert hours.working_minutes_between(start, due) == pytest.approx(minutes, abs=EPSILON)


@PROPERTY_SETTINGS
@given(hours_strategy, instants, st.timedeltas(timedelta(0), timedelta(days=9)), st.timedeltas(timedelta(0), timedelta(days=9)))
def test_minutes_between_add_up(hours: WorkingHours, a: datetime, ab: timedelta, bc: timedelta) -> None:
    b, c = a + ab, a + ab + bc
    total = hours.working_minutes_between(a, c)
    assert total == pytest.approx(hours.working_minutes_between(a, b) + hours.working_minutes_between(b, c), abs=EPSILON)
    assert 0 <= total <= (c - a).total_seconds() / 60 + EPSILON


@PROPERTY_SETTINGS
@given(hours_strategy, instants)
def test_next_opening_is_open_and_nothing_before_it_is(hours: WorkingHours, at: datetime) -> None:
    opening = hours.next_opening(at)
    assert opening >= at and hours.is_open(opening)
    assert hours.working_minutes_between(at, opening) == 0


@PROPERTY_SETTINGS
@given(hours_in(["Europe/Moscow", "UTC"]), instants)
def test_without_dst_the_instant_and_the_wall_clock_agree(hours: WorkingHours, at: datetime) -> None:
    assert hours.is_open(at) == hours.covers_local(at)
