"""Report periods: what a manager types, the previous period, and where a local day starts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.kpi import Period, PeriodError, local_calendar, local_today, parse_period

MSK = ZoneInfo("Europe/Moscow")
TODAY = date(2026, 3, 15)  # a Sunday


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("today", date(2026, 3, 15), date(2026, 3, 15)),
        ("yesterday", date(2026, 3, 14), date(2026, 3, 14)),
        ("7d", date(2026, 3, 9), date(2026, 3, 15)),
        ("30d", date(2026, 2, 14), date(2026, 3, 15)),
        ("month", date(2026, 3, 1), date(2026, 3, 15)),
        ("last_month", date(2026, 2, 1), date(2026, 2, 28)),
        ("2026-01-10..2026-01-20", date(2026, 1, 10), date(2026, 1, 20)),
        ("2026-01-10 .. 2026-01-10", date(2026, 1, 10), date(2026, 1, 10)),
        ("2026-01-10", date(2026, 1, 10), date(2026, 1, 10)),
        ("  Today ", date(2026, 3, 15), date(2026, 3, 15)),
    ],
)
def test_parse_period_forms(text: str, start: date, end: date) -> None:
    assert parse_period(text, TODAY) == Period(start, end)


@pytest.mark.parametrize(
    ("text", "english"),
    [("сегодня", "today"), ("вчера", "yesterday"), ("неделя", "7d"), ("месяц", "month"), ("Прошлый месяц", "last_month")],
)
def test_russian_words_mean_the_same_periods(text: str, english: str) -> None:
    assert parse_period(text, TODAY) == parse_period(english, TODAY)


def test_month_on_the_first_is_that_one_day() -> None:
    assert parse_period("month", date(2026, 3, 1)) == Period(date(2026, 3, 1), date(2026, 3, 1))


def test_last_month_in_january_is_december() -> None:
    assert parse_period("last_month", date(2026, 1, 20)) == Period(date(2025, 12, 1), date(2025, 12, 31))


def test_a_leap_february_has_29_days() -> None:
    assert parse_period("last_month", date(2028, 3, 5)).days == 29


@pytest.mark.parametrize(
    "text",
    ["", "week2", "2026-02-30..2026-03-01", "2026-13-01", "2026-03-10..2026-03-01", "2025-01-01..2026-01-02", "0d", "400d", "1..2"],
)
def test_nonsense_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_period(text, TODAY)


def test_the_error_says_which_forms_work() -> None:
    with pytest.raises(PeriodError) as error:
        parse_period("fortnight", TODAY)
    assert "7d" in str(error.value) and "YYYY-MM-DD..YYYY-MM-DD" in str(error.value)


def test_a_year_of_366_days_is_allowed() -> None:
    assert parse_period("2024-01-01..2024-12-31", TODAY).days == 366


def test_previous_period_has_the_same_length_just_before() -> None:
    assert Period(date(2026, 3, 9), date(2026, 3, 15)).previous() == Period(date(2026, 3, 2), date(2026, 3, 8))


def test_previous_of_a_month_is_as_long_not_the_calendar_month() -> None:
    assert Period(date(2026, 3, 1), date(2026, 3, 31)).previous() == Period(date(2026, 1, 29), date(2026, 2, 28))


def test_period_lists_every_day_inclusive() -> None:
    assert list(Period(date(2026, 2, 27), date(2026, 3, 1)).dates()) == [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]


def test_label_in_each_language() -> None:
    week = Period(date(2026, 3, 9), date(2026, 3, 15))
    assert (week.label("ru"), week.label("en"), Period(TODAY, TODAY).label("ru")) == (
        "09.03.2026 – 15.03.2026", "2026-03-09 – 2026-03-15", "15.03.2026",
    )


def test_a_period_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError):
        Period(date(2026, 3, 2), date(2026, 3, 1))


def test_late_evening_belongs_to_that_local_day() -> None:
    # 23:30 in Moscow on the 1st is 20:30 UTC on the 1st
    assert local_calendar(datetime(2026, 3, 1, 20, 30, tzinfo=UTC), MSK) == (date(2026, 3, 1), 23)


def test_just_after_local_midnight_is_the_next_day_though_utc_is_not() -> None:
    # 00:30 in Moscow on the 2nd is 21:30 UTC on the 1st
    assert local_calendar(datetime(2026, 3, 1, 21, 30, tzinfo=UTC), MSK) == (date(2026, 3, 2), 0)


def test_today_is_the_office_day() -> None:
    assert local_today(datetime(2026, 3, 1, 21, 30, tzinfo=UTC), MSK) == date(2026, 3, 2)


def test_utc_bounds_are_local_midnights() -> None:
    assert Period(date(2026, 3, 1), date(2026, 3, 2)).utc_bounds(MSK) == (
        datetime(2026, 2, 28, 21, 0, tzinfo=UTC), datetime(2026, 3, 2, 21, 0, tzinfo=UTC),
    )


def test_period_contains_its_days_only() -> None:
    week = Period(date(2026, 3, 9), date(2026, 3, 15))
    assert (date(2026, 3, 9) in week, date(2026, 3, 15) in week, date(2026, 3, 16) in week) == (True, True, False)
