"""Reasons for dissatisfaction, NPS and "reasons outside the employee's control" on a real
database (SQLite and PostgreSQL), against figures worked out by hand.

The week and the helpers are those of ``test_kpi``: Monday 2 to Sunday 8 November 2026.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, timedelta

import pytest

from bot.clock import FakeClock
from bot.kpi import KpiService, NegativeSplit, NpsKpi, Period, Scope
from bot.models import Channel, ExclusionReason, NpsAnswer, Point, Rating, RatingReason, Reason, Role, Staff
from bot.reports import ReportService
from bot.texts import Texts, make_i18n
from tests.integration.test_kpi import NOW, NSK, MON, TUE, WED, WEEK, Org, kpi, local, org, rating, seed  # noqa: F401

_uids = itertools.count(1)
PREVIOUS_MONDAY = MON - timedelta(days=7)


@dataclass
class Reasons:
    queue: Reason
    price: Reason
    stock: Reason
    rude: Reason
    slow: Reason


@pytest.fixture
async def reasons(database: str) -> Reasons:
    return Reasons(
        queue=await Reason.create(code="queue", label="Очередь", label_en="Queue", staff_related=False),
        price=await Reason.create(code="price", label="Цены", label_en="Prices", staff_related=False),
        stock=await Reason.create(code="stock", label="Нет в наличии", staff_related=False),  # no English label
        rude=await Reason.create(code="rude", label="Грубость", label_en="Rudeness", staff_related=True),
        slow=await Reason.create(code="slow", label="Долго обслуживали", label_en="Slow service", staff_related=True),
    )


async def seed_with_reasons(*pairs: tuple[Rating, list[Reason]]) -> list[int]:
    """Ratings as ingest stores them (with tallies), each linked to its reasons."""
    ids = await seed(*(r for r, _ in pairs))
    await RatingReason.bulk_create(
        [RatingReason(rating_id=rid, reason_id=reason.id)
         for rid, (_, chosen) in zip(ids, pairs, strict=True) for reason in chosen]
    )
    return ids


async def week_with_reasons(org: Org, r: Reasons) -> None:
    """Boris at W1: 4 valid negatives (rude+queue; price; price+stock; none), an excluded one
    (rude), a neutral (queue), a good one with a reason (price) and two plain good ones.
    Anna at W2: rude; queue. NSK, nobody identified: price. And last week: rude (Boris)."""
    pairs = [
        (rating(org.w1, "bad", local(MON, 10), org.boris), [r.rude, r.queue]),
        (rating(org.w1, "bad", local(MON, 11), org.boris), [r.price]),
        (rating(org.w1, "bad", local(TUE, 10), org.boris), [r.price, r.stock]),
        (rating(org.w1, "bad", local(TUE, 11), org.boris), []),
        (rating(org.w1, "bad", local(TUE, 11, 5), org.boris, ExclusionReason.REPEAT), [r.rude]),
        (rating(org.w1, "neutral", local(TUE, 12), org.boris), [r.queue]),
        (rating(org.w1, "good", local(TUE, 13), org.boris), [r.price]),
        (rating(org.w1, "good", local(TUE, 14), org.boris), []),
        (rating(org.w1, "good", local(TUE, 15), org.boris), []),
        (rating(org.w2, "bad", local(WED, 10), org.anna), [r.rude]),
        (rating(org.w2, "bad", local(WED, 11), org.anna), [r.queue]),
        (rating(org.n1, "bad", local(WED, 12, tz=NSK)), [r.price]),
        (rating(org.w1, "bad", local(PREVIOUS_MONDAY, 10), org.boris), [r.rude]),
    ]
    for item, _ in pairs:
        item.channel = Channel.KIOSK
    await seed_with_reasons(*pairs)


def counts(found) -> list[tuple[str, int, int, bool]]:  # noqa: ANN001
    return [(f.label, f.count, f.bad, f.staff_related) for f in found]


# --- reasons ------------------------------------------------------------------------------


async def test_reasons_count_valid_dissatisfied_ratings_once_per_reason(org: Org, kpi: KpiService, reasons: Reasons) -> None:
    await week_with_reasons(org, reasons)
    found = await kpi.reasons(Scope.company(), WEEK)
    # price: 2 Boris + NSK (the good one is not dissatisfaction); queue: Boris's bad and
    # neutral + Anna; rude: Boris + Anna (the excluded repeat and last week's are left out)
    assert counts(found) == [
        ("Очередь", 3, 2, False),
        ("Цены", 3, 3, False),
        ("Грубость", 2, 2, True),
        ("Нет в наличии", 1, 1, False),
    ]
    assert [f.code for f in found] == ["queue", "price", "rude", "stock"]


async def test_reasons_follow_the_scope(org: Org, kpi: KpiService, reasons: Reasons) -> None:
    await week_with_reasons(org, reasons)
    office = await kpi.reasons(Scope.offices(org.msk.id), WEEK)
    assert counts(office) == [("Очередь", 3, 2, False), ("Грубость", 2, 2, True), ("Цены", 2, 2, False),
                              ("Нет в наличии", 1, 1, False)]
    point = await kpi.reasons(Scope.point(org.w2.id), WEEK)
    assert counts(point) == [("Грубость", 1, 1, True), ("Очередь", 1, 1, False)]
    boris = await kpi.reasons(Scope.staff(org.boris.id), WEEK)
    assert counts(boris) == [("Очередь", 2, 1, False), ("Цены", 2, 2, False), ("Грубость", 1, 1, True),
                             ("Нет в наличии", 1, 1, False)]
    assert await kpi.reasons(Scope.staff(org.anna.id), Period(PREVIOUS_MONDAY, PREVIOUS_MONDAY)) == []


async def test_reason_labels_are_in_the_users_language(org: Org, kpi: KpiService, reasons: Reasons) -> None:
    await week_with_reasons(org, reasons)
    english = await kpi.reasons(Scope.company(), WEEK, locale="en")
    # equal counts sort by the label in that language; no English label: the Russian one
    assert [(f.label, f.count) for f in english] == [("Prices", 3), ("Queue", 3), ("Rudeness", 2), ("Нет в наличии", 1)]


# --- reasons outside the employee's control -----------------------------------------------


async def test_an_employees_negatives_split_by_control(org: Org, kpi: KpiService, reasons: Reasons) -> None:
    await week_with_reasons(org, reasons)
    split = await kpi.negatives_by_control(Scope.staff(org.boris.id), WEEK)
    assert split == NegativeSplit(good=3, neutral=1, negatives=4, staff_related=1, outside_only=2,
                                  outside_labels=("Цены", "Нет в наличии"))
    assert split.no_reason == 1
    assert split.like_index == pytest.approx((3 - 4) / 8 * 100)  # −12.5
    assert split.adjusted_like_index == pytest.approx((3 - 2) / (3 + 1 + 2) * 100)  # +16.7: price and stock not his
    # a report passes its summary of the same scope and period: the counts come from it, the split is the same
    summary = await kpi.summary(Scope.staff(org.boris.id), WEEK)
    assert await kpi.negatives_by_control(Scope.staff(org.boris.id), WEEK, summary=summary) == split
    anna = await kpi.negatives_by_control(Scope.staff(org.anna.id), WEEK, locale="en")
    assert (anna.negatives, anna.staff_related, anna.outside_only, anna.outside_labels) == (2, 1, 1, ("Queue",))
    assert anna.adjusted_like_index == pytest.approx(-100.0)  # only the rude one counts, and nothing good


async def test_no_reasons_no_adjustment(org: Org, kpi: KpiService) -> None:
    await seed(rating(org.w1, "bad", local(MON, 10), org.boris), rating(org.w1, "good", local(MON, 11), org.boris))
    split = await kpi.negatives_by_control(Scope.staff(org.boris.id), WEEK)
    assert (split.negatives, split.staff_related, split.outside_only, split.no_reason) == (1, 0, 0, 1)
    assert split.adjusted_like_index == split.like_index == 0.0
    assert await kpi.negatives_by_control(Scope.staff(org.anna.id), WEEK) == NegativeSplit()
    assert NegativeSplit().adjusted_like_index is None


# --- NPS ----------------------------------------------------------------------------------


async def answers(point: Point, day: date, *scores: int, staff: Staff | None = None) -> None:
    at = local(day, 12)
    await NpsAnswer.bulk_create([
        NpsAnswer(event_uid=f"nps{next(_uids)}", office_id=point.office_id, point_id=point.id,  # type: ignore[attr-defined]
                  staff_id=staff.id if staff else None, score=score, ts=at.astimezone(UTC), local_date=day,
                  received_at=at.astimezone(UTC))
        for score in scores
    ])


def test_nps_formula() -> None:
    assert NpsKpi().score is None and NpsKpi().count == 0
    assert NpsKpi(promoters=4).score == 100.0
    assert NpsKpi(detractors=2).score == -100.0
    mixed = NpsKpi(promoters=5, passives=2, detractors=3)
    assert mixed.score == pytest.approx(20.0) and mixed.count == 10
    assert (mixed.promoter_share, mixed.passive_share, mixed.detractor_share) == (0.5, 0.2, 0.3)


async def test_nps_without_answers_is_no_data(org: Org, kpi: KpiService) -> None:
    nps = await kpi.nps(Scope.company(), WEEK)
    assert nps == NpsKpi() and nps.score is None


async def test_nps_all_promoters_is_plus_100(org: Org, kpi: KpiService) -> None:
    await answers(org.w1, MON, 9, 10, 10)
    assert (await kpi.nps(Scope.company(), WEEK)).score == 100.0


async def test_nps_on_a_mixed_set_and_its_scope(org: Org, kpi: KpiService) -> None:
    # W1 (Boris): 10 9 9 8 7 6 0 3 10 10 → 5 promoters, 2 passives, 3 detractors: 50 % − 30 % = +20
    await answers(org.w1, MON, 10, 9, 9, 8, 7, staff=org.boris)
    await answers(org.w1, TUE, 6, 0, 3, 10, 10, staff=org.boris)
    await answers(org.w2, WED, 2, 8)  # W2, nobody named: a detractor and a passive
    await answers(org.n1, WED, 10)  # another office
    await answers(org.w1, PREVIOUS_MONDAY, 0, 0)  # last week
    point = await kpi.nps(Scope.point(org.w1.id), WEEK)
    assert point == NpsKpi(promoters=5, passives=2, detractors=3) and point.score == pytest.approx(20.0)
    assert await kpi.nps(Scope.staff(org.boris.id), WEEK) == point
    office = await kpi.nps(Scope.offices(org.msk.id), WEEK)
    assert office == NpsKpi(promoters=5, passives=3, detractors=4)
    assert office.score == pytest.approx((5 - 4) / 12 * 100)
    assert await kpi.nps(Scope.company(), WEEK) == NpsKpi(promoters=6, passives=3, detractors=4)
    assert await kpi.nps(Scope.offices(org.msk.id), Period(PREVIOUS_MONDAY, PREVIOUS_MONDAY)) == NpsKpi(detractors=2)


async def test_the_summary_compares_nps_with_the_previous_period(org: Org, kpi: KpiService) -> None:
    await answers(org.w1, MON, 10, 10, 7, 3)  # +25
    await answers(org.w1, PREVIOUS_MONDAY, 10, 0)  # 0
    summary = await kpi.summary(Scope.offices(org.msk.id), WEEK, compare=True)
    assert summary.nps == NpsKpi(promoters=2, passives=1, detractors=1)
    assert summary.previous is not None and summary.previous.nps == NpsKpi(promoters=1, detractors=1)
    assert summary.change("nps_score") == pytest.approx(25.0)


# --- the report's text --------------------------------------------------------------------


@pytest.fixture
def reports(kpi: KpiService) -> ReportService:
    return ReportService(FakeClock(NOW), Texts(make_i18n("ru")), kpi)


async def test_the_summary_text_gives_nps_with_its_split(org: Org, kpi: KpiService, reports: ReportService) -> None:
    await answers(org.w1, MON, 10, 10, 9, 9, 10, 8, 7, 6, 0, 3)  # 5 / 2 / 3 → +20
    await answers(org.w1, PREVIOUS_MONDAY, 10, 0)
    summary = await kpi.summary(Scope.offices(org.msk.id, label="MSK-1"), WEEK, compare=True)
    russian = reports.summary_text(summary, "ru")
    assert "NPS: +20 (промоутеры 50 %, нейтралы 20 %, критики 30 %; ответов: 10) (+20)" in russian
    english = reports.summary_text(summary, "en")
    assert "NPS: +20 (promoters 50 %, passives 20 %, detractors 30 %; 10 answers) (+20)" in english
    empty = reports.summary_text(await kpi.summary(Scope.company(), Period(date(2026, 9, 1), date(2026, 9, 30))), "ru")
    assert "NPS: нет данных" in empty


async def test_an_employees_report_says_which_negatives_were_not_theirs(
    org: Org, kpi: KpiService, reports: ReportService, reasons: Reasons
) -> None:
    await week_with_reasons(org, reasons)
    admin = await Staff.create(code="admin", name="Админ", role=Role.ADMIN)
    report = await reports.build(admin, f"s{org.boris.id}", WEEK, "ru", with_ranking=False)
    assert "из них 2 — по причинам вне зоны ответственности сотрудника (цены, нет в наличии)" in report.text
    assert "1 — по причинам, зависящим от сотрудника; 1 — без указания причины" in report.text
    assert "Лайк-индекс без негативов по причинам вне зоны ответственности: +17" in report.text
    english = await reports.build(admin, f"s{org.boris.id}", WEEK, "en", with_ranking=False)
    assert "2 of them for reasons outside the employee's control (prices, нет в наличии)" in english.text
    office = await reports.build(admin, f"o{org.msk.id}", WEEK, "ru")
    assert "вне зоны ответственности" not in office.text  # an office's report has the Pareto chart instead
    assert len(office.charts) == 6 and all(png.startswith(b"\x89PNG") for png in office.charts)


async def test_the_pareto_chart_gets_real_reasons(org: Org, kpi: KpiService, reports: ReportService, reasons: Reasons,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from charts import kpi as charts

    drawn = []
    original = charts.render_reasons_pareto

    def spy(data, title, labels):  # noqa: ANN001, ANN202
        drawn.append(list(data))
        return original(data, title, labels)

    monkeypatch.setattr(charts, "render_reasons_pareto", spy)
    await week_with_reasons(org, reasons)
    admin = await Staff.create(code="admin", name="Админ", role=Role.ADMIN)
    await reports.build(admin, "c", WEEK, "ru")
    assert drawn == [[charts.ReasonCount("Очередь", 3, outside=True), charts.ReasonCount("Цены", 3, outside=True),
                      charts.ReasonCount("Грубость", 2), charts.ReasonCount("Нет в наличии", 1, outside=True)]]
