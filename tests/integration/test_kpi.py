"""KPI figures on a real database (SQLite and PostgreSQL), against values worked out by hand.

Rows are seeded directly: each rating's local day and hour come from its time in the office's
zone, as ingest stores them. The reference week is Monday 2 November to Sunday 8 November 2026.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.errors import DomainError
from bot.kpi import ComplianceDay, DayCounts, KpiService, Period, Scope
from bot.models import ExclusionReason, NegativeCase, Office, Point, PresenceEvent, Rating, ServedClients, Staff
from bot.tallies import add_tallies

MSK = ZoneInfo("Europe/Moscow")
NSK = ZoneInfo("Asia/Novosibirsk")
WEEK = Period(date(2026, 11, 2), date(2026, 11, 8))
MON, TUE, WED, THU, FRI, SAT, SUN = WEEK.dates()
NOW = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)  # Tuesday 12:00 in Moscow, after the week

_uids = itertools.count(1)


@dataclass
class Org:
    msk: Office
    nsk: Office
    w1: Point
    w2: Point
    n1: Point
    anna: Staff
    boris: Staff


@pytest.fixture
async def org(database: str) -> Org:
    msk = await Office.create(code="MSK-1", name="Москва", timezone="Europe/Moscow")
    nsk = await Office.create(code="NSK-1", name="Новосибирск", timezone="Asia/Novosibirsk")
    return Org(
        msk=msk,
        nsk=nsk,
        w1=await Point.create(office=msk, code="W1", name="Окно 1"),
        w2=await Point.create(office=msk, code="W2", name="Окно 2"),
        n1=await Point.create(office=nsk, code="N1", name="Окно 1"),
        anna=await Staff.create(code="ivanova", name="Анна Иванова", office=msk),
        boris=await Staff.create(code="borisov", name="Борис Борисов", office=msk),
    )


@pytest.fixture
def kpi() -> KpiService:
    return KpiService(FakeClock(NOW))


def local(day: date, hour: int, minute: int = 0, tz: ZoneInfo = MSK) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def rating(
    point: Point, value: str, at: datetime, staff: Staff | None = None, excluded: ExclusionReason | None = None
) -> Rating:
    """A rating as ingest stores it: UTC ``ts``, and the local day and hour in ``at``'s zone."""
    return Rating(
        event_uid=f"r{next(_uids)}", device_id=f"btn-{point.code}", office_id=point.office_id, point_id=point.id,  # type: ignore[attr-defined]
        staff_id=staff.id if staff else None, value=value, ts=at.astimezone(UTC), received_at=at.astimezone(UTC),
        excluded_reason=excluded, local_date=at.date(), local_hour=at.hour,
    )


async def seed(*ratings: Rating) -> list[int]:
    """Store ``ratings`` as ingest does (with their tallies) and return their ids in the same order."""
    await Rating.bulk_create(list(ratings))
    await add_tallies(ratings)
    ids = dict(await Rating.filter(event_uid__in=[r.event_uid for r in ratings]).values_list("event_uid", "id"))
    return [ids[r.event_uid] for r in ratings]


async def presence(point: Point, day: date, starts: int, staff: Staff | None = None) -> None:
    """``starts`` clients at ``point`` on ``day`` (Moscow), each with its matching ``end``."""
    rows = []
    for n in range(starts):
        at = local(day, 10, n % 60)
        for state in ("start", "end"):
            rows.append(PresenceEvent(
                event_uid=f"p{next(_uids)}", point_id=point.id, state=state, ts=at.astimezone(UTC),
                local_date=day, staff_code=staff.code if staff else None,
            ))
    await PresenceEvent.bulk_create(rows)


async def served_by_hand(office: Office, day: date, clients: int) -> None:
    await ServedClients.create(office=office, day=day, clients=clients, entered_at=NOW)


def monday_mix(org: Org) -> list[Rating]:
    """3 good, 1 neutral, 2 bad and 1 excluded repeat press, at W1 on Monday."""
    return [
        rating(org.w1, "good", local(MON, 10, 0), org.boris),
        rating(org.w1, "good", local(MON, 10, 5), org.boris),
        rating(org.w1, "good", local(MON, 10, 10), org.boris),
        rating(org.w1, "good", local(MON, 10, 10), org.boris, ExclusionReason.REPEAT),
        rating(org.w1, "neutral", local(MON, 11, 0), org.boris),
        rating(org.w1, "bad", local(MON, 12, 0), org.boris),
        rating(org.w1, "bad", local(MON, 12, 30), org.boris),
    ]


# --- ratings ------------------------------------------------------------------------------


async def test_satisfaction_like_and_happy_index_count_valid_ratings_only(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org))
    s = await kpi.summary(Scope.company(), WEEK)
    # N = 6: satisfaction 3/6; like-index (3 − 2)/6 × 100; happy (100·3 + 50·1)/6
    assert (s.good, s.neutral, s.bad, s.total, s.satisfaction, s.like_index, s.happy_index) == (
        3, 1, 2, 6, 0.5, pytest.approx(16.6667, abs=1e-4), pytest.approx(58.3333, abs=1e-4),
    )


async def test_excluded_ratings_are_reported_by_reason(org: Org, kpi: KpiService) -> None:
    await seed(
        rating(org.w1, "good", local(MON, 10)),
        rating(org.w1, "bad", local(MON, 11)),
        rating(org.w1, "good", local(MON, 11), excluded=ExclusionReason.REPEAT),
        rating(org.w1, "bad", local(TUE, 9), excluded=ExclusionReason.NO_CLIENT),
        rating(org.w1, "neutral", local(TUE, 9), excluded=ExclusionReason.NO_CLIENT),
        rating(org.w2, "bad", local(WED, 9), excluded=ExclusionReason.MANUAL),
    )
    s = await kpi.summary(Scope.company(), WEEK)
    assert (s.excluded, s.excluded_total, s.total) == (
        {ExclusionReason.REPEAT: 1, ExclusionReason.NO_CLIENT: 2, ExclusionReason.MANUAL: 1}, 4, 2,
    )


async def test_an_empty_period_has_no_ratios(org: Org, kpi: KpiService) -> None:
    s = await kpi.summary(Scope.company(), WEEK)
    assert (s.total, s.satisfaction, s.like_index, s.happy_index, s.response_rate, s.comment_compliance) == (
        0, None, None, None, None, None,
    )


async def test_days_are_cut_in_each_office_time_zone(org: Org, kpi: KpiService) -> None:
    await seed(
        rating(org.w1, "good", local(MON, 23, 30)),             # 20:30 UTC Monday: Monday
        rating(org.w1, "bad", local(TUE, 0, 30)),               # 21:30 UTC Monday: Tuesday in Moscow
        rating(org.n1, "neutral", local(TUE, 1, 0, tz=NSK)),    # 18:00 UTC Monday: Tuesday in Novosibirsk
    )
    s = await kpi.summary(Scope.company(), Period(MON, MON))
    assert (s.good, s.neutral, s.bad) == (1, 0, 0)


async def test_daily_lists_every_day_with_zeros(org: Org, kpi: KpiService) -> None:
    await seed(
        rating(org.w1, "good", local(MON, 10)),
        rating(org.w1, "good", local(MON, 11)),
        rating(org.w1, "bad", local(MON, 12)),
        rating(org.w1, "neutral", local(MON, 12), excluded=ExclusionReason.REPEAT),
        rating(org.w1, "neutral", local(WED, 10)),
    )
    days = await kpi.daily(Scope.company(), Period(MON, THU))
    assert days == [DayCounts(MON, 2, 0, 1, 1), DayCounts(TUE), DayCounts(WED, 0, 1, 0, 0), DayCounts(THU)]


async def test_daily_like_index_is_none_on_days_without_ratings(org: Org, kpi: KpiService) -> None:
    await seed(rating(org.w1, "good", local(MON, 10)), rating(org.w1, "good", local(MON, 11)), rating(org.w1, "bad", local(MON, 12)))
    days = await kpi.daily(Scope.company(), Period(MON, TUE))
    assert [d.like_index for d in days] == [pytest.approx(33.3333, abs=1e-4), None]


async def test_staff_ranking_orders_by_like_index_then_by_count(org: Org, kpi: KpiService) -> None:
    vera = await Staff.create(code="vera", name="Вера", office=org.msk)
    await seed(
        *(rating(org.w1, "good", local(MON, 10, n), org.anna) for n in range(2)),   # 100, 2 ratings
        *(rating(org.w2, "good", local(MON, 10, n), vera) for n in range(4)),       # 100, 4 ratings
        rating(org.w1, "good", local(TUE, 10), org.boris), rating(org.w1, "bad", local(TUE, 11), org.boris),  # 0
        rating(org.w1, "bad", local(TUE, 12), org.boris, ExclusionReason.REPEAT),
        rating(org.w1, "bad", local(TUE, 13)),                                       # nobody responsible
    )
    ranking = await kpi.staff_ranking(Scope.company(), WEEK)
    assert [(s.name, s.total, s.like_index) for s in ranking] == [
        ("Вера", 4, 100.0), ("Анна Иванова", 2, 100.0), ("Борис Борисов", 2, 0.0),
    ]


async def test_negatives_heatmap_is_weekday_by_local_hour(org: Org, kpi: KpiService) -> None:
    await seed(
        rating(org.w1, "bad", local(MON, 10, 15)),
        rating(org.w1, "bad", local(MON, 10, 45)),
        rating(org.w1, "bad", local(MON, 10, 50), excluded=ExclusionReason.REPEAT),
        rating(org.w1, "good", local(MON, 10, 55)),
        rating(org.w1, "bad", local(SUN, 23, 30)),
        rating(org.n1, "bad", local(TUE, 9, 10, tz=NSK)),  # 02:10 UTC: still 9 o'clock Tuesday in Novosibirsk
    )
    expected = [[0] * 24 for _ in range(7)]
    expected[0][10], expected[6][23], expected[1][9] = 2, 1, 1
    assert await kpi.negatives_by_weekday_hour(Scope.company(), WEEK) == expected


async def test_reasons_are_empty_until_ratings_carry_reasons(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org))
    assert await kpi.reasons(Scope.company(), WEEK) == []


# --- an employee who moved ----------------------------------------------------------------


async def moved(org: Org) -> None:
    """Anna works in Moscow Monday to Wednesday, then in Novosibirsk; Boris stays in Moscow."""
    await seed(
        rating(org.w1, "good", local(MON, 10), org.anna),
        rating(org.w1, "good", local(TUE, 10), org.anna),
        rating(org.w1, "bad", local(WED, 10), org.anna),
        rating(org.n1, "good", local(THU, 10, tz=NSK), org.anna),
        rating(org.n1, "neutral", local(FRI, 10, tz=NSK), org.anna),
        rating(org.w1, "good", local(MON, 11), org.boris),
        rating(org.w1, "bad", local(TUE, 11), org.boris),
    )
    await Staff.filter(id=org.anna.id).update(office_id=org.nsk.id)


async def test_a_moved_employee_own_figures_span_both_offices(org: Org, kpi: KpiService) -> None:
    await moved(org)
    s = await kpi.summary(Scope.staff(org.anna.id), WEEK)
    assert (s.good, s.neutral, s.bad, s.like_index) == (3, 1, 1, 40.0)  # (3 − 1)/5 × 100


async def test_office_figures_follow_the_office_of_each_rating(org: Org, kpi: KpiService) -> None:
    await moved(org)
    s = await kpi.summary(Scope.offices(org.msk.id), WEEK)
    assert (s.good, s.neutral, s.bad, s.like_index) == (3, 0, 2, 20.0)  # Anna's 2 + 1, Boris's 1 + 1


async def test_office_ranking_counts_a_moved_employee_ratings_there_only(org: Org, kpi: KpiService) -> None:
    await moved(org)
    msk = await kpi.staff_ranking(Scope.offices(org.msk.id), WEEK)
    nsk = await kpi.staff_ranking(Scope.offices(org.nsk.id), WEEK)
    assert ([(s.name, s.good, s.neutral, s.bad) for s in msk], [(s.name, s.good, s.neutral, s.bad) for s in nsk]) == (
        [("Анна Иванова", 2, 0, 1), ("Борис Борисов", 1, 0, 1)], [("Анна Иванова", 1, 1, 0)],
    )


# --- clients served -----------------------------------------------------------------------


async def test_served_from_presence_gives_response_rate_and_indices(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org))
    await presence(org.w1, MON, 8)
    await presence(org.w2, MON, 4)
    s = await kpi.summary(Scope.company(), WEEK)
    # S = 12 starts (ends do not count): 6/12, 3/12 × 100, 2/12 × 100
    assert (s.served.clients, s.served.source, s.response_rate, s.support_index, s.criticality_index) == (
        12, "presence", 0.5, 25.0, pytest.approx(16.6667, abs=1e-4),
    )


async def test_served_by_hand_where_no_presence_events(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org))
    await served_by_hand(org.msk, MON, 20)
    s = await kpi.summary(Scope.offices(org.msk.id), WEEK)
    assert (s.served.clients, s.served.source, s.response_rate, s.support_index, s.criticality_index) == (
        20, "manual", 0.3, 15.0, 10.0,
    )


async def test_presence_wins_over_a_hand_entered_figure_for_the_same_day(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org))
    await presence(org.w1, MON, 12)
    await served_by_hand(org.msk, MON, 50)
    s = await kpi.summary(Scope.company(), WEEK)
    assert (s.served.clients, s.served.source) == (12, "presence")


async def test_presence_on_some_days_and_hand_figures_on_others_are_mixed(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org), rating(org.w1, "good", local(TUE, 10)), rating(org.w1, "bad", local(TUE, 11)))
    await presence(org.w1, MON, 12)
    await served_by_hand(org.msk, TUE, 8)
    s = await kpi.summary(Scope.company(), WEEK)
    # S = 12 + 8; N = 6 + 2, N+ = 3 + 1, N- = 2 + 1
    assert (s.served.clients, s.served.source, s.served.presence_days, s.served.manual_days, s.response_rate,
            s.support_index, s.criticality_index) == (20, "mixed", 1, 1, 0.4, 20.0, 15.0)


async def test_ratings_of_days_without_a_served_figure_are_left_out_of_response_rate(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org), *(rating(org.w1, "good", local(WED, 10, n)) for n in range(4)))
    await served_by_hand(org.msk, MON, 20)  # nobody counted Wednesday's clients
    s = await kpi.summary(Scope.company(), WEEK)
    assert (s.total, s.served.ratings, s.response_rate, s.support_index) == (10, 6, 0.3, 15.0)


async def test_zero_served_clients_is_no_data_not_a_division_by_zero(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org))
    await served_by_hand(org.msk, MON, 0)
    s = await kpi.summary(Scope.company(), WEEK)
    assert (s.served.clients, s.served.source, s.response_rate, s.support_index, s.criticality_index) == (
        0, "manual", None, None, None,
    )


async def test_no_served_figure_at_all_has_no_source(org: Org, kpi: KpiService) -> None:
    await seed(*monday_mix(org))
    s = await kpi.summary(Scope.company(), WEEK)
    assert (s.served.clients, s.served.source, s.response_rate) == (None, None, None)


async def test_a_point_served_clients_come_from_its_own_presence_events(org: Org, kpi: KpiService) -> None:
    await presence(org.w1, MON, 8)
    await presence(org.w2, MON, 4)
    await served_by_hand(org.msk, TUE, 30)  # an office figure says nothing about one point
    served = await kpi.served(Scope.point(org.w1.id), WEEK)
    assert (served.clients, served.source) == (8, "presence")


async def test_an_employee_served_clients_are_presence_events_naming_them(org: Org, kpi: KpiService) -> None:
    await presence(org.w1, MON, 5, staff=org.anna)
    await presence(org.w2, MON, 3, staff=org.boris)
    await presence(org.w2, TUE, 2)
    await served_by_hand(org.msk, WED, 30)
    served = await kpi.served(Scope.staff(org.anna.id), WEEK)
    assert (served.clients, served.source) == (5, "presence")


async def test_record_served_replaces_the_day_figure(org: Org, kpi: KpiService) -> None:
    first = await kpi.record_served(org.msk.id, MON, 20, org.boris.id, NOW)
    second = await kpi.record_served(org.msk.id, MON, 25, org.anna.id, NOW)
    rows = await ServedClients.filter(office_id=org.msk.id).values_list("day", "clients", "entered_by_id")
    assert (first.previous, second.previous, rows) == (None, 20, [(MON, 25, org.anna.id)])


async def test_record_served_accepts_a_day_once_it_has_begun_in_the_office(org: Org, kpi: KpiService) -> None:
    just_after_midnight = datetime(2026, 11, 10, 21, 30, tzinfo=UTC)  # 00:30 on the 11th in Moscow
    entry = await kpi.record_served(org.msk.id, date(2026, 11, 11), 3, None, just_after_midnight)
    assert entry.clients == 3


async def test_record_served_refuses_a_day_to_come(org: Org, kpi: KpiService) -> None:
    with pytest.raises(DomainError):
        await kpi.record_served(org.msk.id, date(2026, 11, 11), 3, None, NOW)  # 12:00 on the 10th in Moscow


async def test_record_served_refuses_a_negative_count(org: Org, kpi: KpiService) -> None:
    with pytest.raises(DomainError):
        await kpi.record_served(org.msk.id, MON, -1, None, NOW)


# --- comments -----------------------------------------------------------------------------


async def commented_negatives(org: Org) -> None:
    """Monday: on time (10 min), late (50 min), overdue and open. Tuesday: on time (20 min),
    and one with no deadline, open. Sunday: open, deadline still ahead. Plus an excluded one."""
    rated = [local(MON, 10), local(MON, 11), local(MON, 12), local(TUE, 10), local(TUE, 11), local(SUN, 19), local(MON, 13)]
    ids = await seed(
        *(rating(org.w1, "bad", at) for at in rated[:-1]),
        rating(org.w1, "bad", rated[-1], excluded=ExclusionReason.MANUAL),
    )
    minutes = timedelta(minutes=1)
    cases = [  # (due_at, commented after, late)
        (rated[0] + 30 * minutes, 10 * minutes, False),
        (rated[1] + 30 * minutes, 50 * minutes, True),
        (rated[2] + 30 * minutes, None, None),
        (rated[3] + 30 * minutes, 20 * minutes, False),
        (None, None, None),
        (NOW + timedelta(hours=1), None, None),  # the office is closed until Tuesday morning
        (rated[6] + 30 * minutes, 5 * minutes, False),
    ]
    await NegativeCase.bulk_create([
        NegativeCase(
            rating_id=rating_id, office_id=org.msk.id, due_at=due,
            commented_at=at + after if after else None, comment_late=late,
            comment_seconds=after.total_seconds() if after else None,
        )
        for rating_id, at, (due, after, late) in zip(ids, rated, cases, strict=True)
    ])


async def test_comment_compliance_is_on_time_over_due(org: Org, kpi: KpiService) -> None:
    await commented_negatives(org)
    c = (await kpi.summary(Scope.company(), WEEK)).comments
    # 6 valid negatives; due: on time, late, overdue, Tuesday's on time = 4; on time 2
    assert (c.negatives, c.due, c.on_time, c.late, c.overdue_open, c.compliance) == (6, 4, 2, 1, 1, 0.5)


async def test_median_minutes_to_comment(org: Org, kpi: KpiService) -> None:
    await commented_negatives(org)
    s = await kpi.summary(Scope.company(), WEEK)
    assert s.median_comment_minutes == 20.0  # of 10, 50 and 20


async def test_summary_from_the_daily_compliance_equals_its_own_query(org: Org, kpi: KpiService) -> None:
    await commented_negatives(org)
    days = await kpi.compliance_daily(Scope.company(), WEEK)
    given = await kpi.summary(Scope.company(), WEEK, compare=True, comment_days=days)
    queried = await kpi.summary(Scope.company(), WEEK, compare=True)
    assert given.comments == queried.comments
    assert (given.comments.due, given.comments.on_time, given.comments.median_minutes) == (4, 2, 20.0)


async def test_both_periods_compliance_from_one_daily_query_equals_their_own_queries(org: Org, kpi: KpiService) -> None:
    await commented_negatives(org)
    following = Period(WEEK.end + timedelta(days=1), WEEK.end + timedelta(days=WEEK.days))  # its previous is WEEK
    days = await kpi.compliance_daily(Scope.company(), Period(WEEK.start, following.end))  # what a report asks
    given = await kpi.summary(
        Scope.company(), following, compare=True, comment_days=[d for d in days if d.day in following],
        previous_comment_days=[d for d in days if d.day in WEEK],
    )
    queried = await kpi.summary(Scope.company(), following, compare=True)
    assert given.previous is not None and queried.previous is not None
    assert (given.comments, given.previous.comments) == (queried.comments, queried.previous.comments)
    assert (given.previous.comments.due, given.previous.comments.on_time) == (4, 2)


async def test_compliance_per_day(org: Org, kpi: KpiService) -> None:
    await commented_negatives(org)
    days = await kpi.compliance_daily(Scope.company(), WEEK)
    assert days == [
        ComplianceDay(MON, negatives=3, due=3, on_time=1, commented=2),
        ComplianceDay(TUE, negatives=2, due=1, on_time=1, commented=1),
        ComplianceDay(WED), ComplianceDay(THU), ComplianceDay(FRI), ComplianceDay(SAT),
        ComplianceDay(SUN, negatives=1, due=0, on_time=0, commented=0),
    ]


async def test_compliance_per_day_is_none_where_nothing_was_due(org: Org, kpi: KpiService) -> None:
    await commented_negatives(org)
    days = await kpi.compliance_daily(Scope.company(), WEEK)
    assert [d.compliance for d in days] == [pytest.approx(1 / 3), 1.0, None, None, None, None, None]


# --- comparison and cost ------------------------------------------------------------------


async def test_summary_compares_with_the_previous_period_of_the_same_length(org: Org, kpi: KpiService) -> None:
    await seed(
        rating(org.w1, "good", local(date(2026, 10, 30), 10)),  # the previous week: like-index 0
        rating(org.w1, "bad", local(date(2026, 10, 30), 11)),
        *(rating(org.w1, "good", local(TUE, 10, n)) for n in range(3)),  # this week: (3 − 1)/4 × 100 = 50
        rating(org.w1, "bad", local(TUE, 11)),
    )
    s = await kpi.summary(Scope.company(), WEEK, compare=True)
    assert s.previous is not None
    assert (s.previous.period, s.previous.total, s.change("like_index"), s.change("total")) == (
        Period(date(2026, 10, 26), date(2026, 11, 1)), 2, 50.0, 2,
    )


async def test_summary_takes_eight_queries(org: Org, kpi: KpiService, caplog: pytest.LogCaptureFixture) -> None:
    await seed(*monday_mix(org))
    await presence(org.w1, MON, 12)
    await served_by_hand(org.msk, TUE, 5)
    await commented_negatives(org)
    caplog.set_level(logging.DEBUG, logger="tortoise.db_client")
    caplog.clear()
    await kpi.summary(Scope.company(), WEEK)
    selects = [r for r in caplog.records if r.name == "tortoise.db_client" and r.getMessage().lstrip().upper().startswith("SELECT")]
    assert len(selects) == 8  # the last two: sales-standard compliance, NPS


async def test_queries_one_after_another_give_the_same_figures_as_at_once(org: Org, kpi: KpiService) -> None:
    await commented_negatives(org)
    sequential = KpiService(FakeClock(NOW), queries_at_once=False)  # what the app uses on SQLite
    at_once = await kpi.summary(Scope.company(), WEEK, compare=True)
    assert await sequential.summary(Scope.company(), WEEK, compare=True) == at_once
    assert (at_once.comments.due, at_once.comments.on_time) == (4, 2)


async def test_together_one_after_another_stops_at_a_failure_and_closes_the_rest() -> None:
    sequential = KpiService(FakeClock(NOW), queries_at_once=False)
    ran: list[int] = []

    async def counted(n: int) -> int:
        ran.append(n)
        return n

    async def failing() -> int:
        raise RuntimeError("the database went away")

    assert await sequential.together(counted(1), counted(2)) == [1, 2]
    never = counted(3)
    with pytest.raises(RuntimeError):
        await sequential.together(counted(4), failing(), never)
    assert ran == [1, 2, 4] and never.cr_frame is None  # closed without running: no "never awaited" warning
