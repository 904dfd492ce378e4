"""Sales-standard compliance on a real database, against values worked out by hand, and where
it shows: /report's summary and chart, the digest, and /me's latest scores.

Scores are seeded directly (the form's arithmetic is ``checklists.score``'s, tested on its own).
November 2026 (the conversations' local month, ``Score.month``):

=========  =====  ======  =====================================
employee   point  result  note
=========  =====  ======  =====================================
Anna       W1     80
Anna       W2     90
Anna       W1     0       a critical criterion failed: counts as 0
Boris      W2     70
Nina       N1     100     Novosibirsk
Nina       N1     50
nobody     W1     60      no employee identified: office, not ranking
Anna       W1     —       a draft: not counted
Anna       W1     10      a calibration's score: not counted
Anna       W1     20      October: only in October's figures
=========  =====  ======  =====================================
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.checklists import import_checklists, parse_checklists_yaml
from bot.clock import FakeClock
from bot.digests import DigestService
from bot.directory import Directory
from bot.kpi import ComplianceKpi, KpiService, Period, Scope
from bot.models import Calibration, ChecklistTemplate, Conversation, Office, Point, Role, Score, ScoreStatus, Staff
from bot.reports import ReportService
from bot.texts import Texts, make_i18n

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
NOV = date(2026, 11, 1)
OCT = date(2026, 10, 1)
NOVEMBER = Period(date(2026, 11, 1), date(2026, 11, 30))
CHECKLIST = """
checklists:
  - code: desk-sales
    name: Стандарт продаж
    sections:
      - id: all
        name: Всё
        weight: 100
        criteria:
          - {id: hello, text: Поздоровался первым}
          - {id: terms, text: Назвал верные условия, critical: true}
          - {id: bye, text: Попрощался}
"""

_n = itertools.count(1)


@dataclass
class Org:
    msk: Office
    nsk: Office
    w1: Point
    w2: Point
    n1: Point
    anna: Staff
    boris: Staff
    nina: Staff
    quality: Staff
    template: ChecklistTemplate


async def score(org: Org, point: Point, staff: Staff | None, result: float | None, *, month: date = NOV,
                status: ScoreStatus = ScoreStatus.SUBMITTED, critical: bool = False, calibration: bool = False,
                answers: dict | None = None, comment: str | None = None, submitted_at: datetime = NOW) -> Score:
    started = datetime.combine(month + timedelta(days=next(_n) % 27), time(12), MSK).astimezone(UTC)
    conversation = await Conversation.create(
        office_id=point.office_id, point=point, staff=staff, started_at=started, ended_at=started + timedelta(minutes=3),  # type: ignore[attr-defined]
        audio_path="/audio/x.ogg", codec="opus", size_bytes=1, digest=f"d{next(_n)}", received_at=started,
    )
    calibration_row = (
        await Calibration.create(conversation=conversation, template=org.template, created_by=org.quality, created_at=NOW)
        if calibration else None
    )
    return await Score.create(
        conversation=conversation, template=org.template, specialist=org.quality, staff=staff,
        office_id=point.office_id, calibration=calibration_row, status=status, result=result,  # type: ignore[attr-defined]
        critical_failed=critical, month=month, answers=answers or {}, comment=comment,
        submitted_at=submitted_at if status == ScoreStatus.SUBMITTED else None, created_at=NOW, updated_at=NOW,
    )


@pytest.fixture
async def org(database: str) -> Org:
    msk = await Office.create(code="MSK-1", name="Москва", timezone="Europe/Moscow")
    nsk = await Office.create(code="NSK-1", name="Новосибирск", timezone="Asia/Novosibirsk")
    await import_checklists(parse_checklists_yaml(CHECKLIST))
    o = Org(
        msk=msk, nsk=nsk,
        w1=await Point.create(office=msk, code="W1", name="Окно 1"),
        w2=await Point.create(office=msk, code="W2", name="Окно 2"),
        n1=await Point.create(office=nsk, code="N1", name="Окно 1"),
        anna=await Staff.create(code="ivanova", name="Анна Иванова", office=msk, telegram_id=5001),
        boris=await Staff.create(code="borisov", name="Борис Борисов", office=msk),
        nina=await Staff.create(code="nikolaeva", name="Нина Николаева", office=nsk),
        quality=await Staff.create(code="sokolova", name="Елена Соколова", role=Role.QUALITY, telegram_id=5101),
        template=await ChecklistTemplate.get(code="desk-sales"),
    )
    await score(o, o.w1, o.anna, 80.0)
    await score(o, o.w2, o.anna, 90.0)
    await score(o, o.w1, o.anna, 0.0, critical=True)
    await score(o, o.w2, o.boris, 70.0)
    await score(o, o.n1, o.nina, 100.0)
    await score(o, o.n1, o.nina, 50.0)
    await score(o, o.w1, None, 60.0)
    await score(o, o.w1, o.anna, None, status=ScoreStatus.DRAFT)
    await score(o, o.w1, o.anna, 10.0, calibration=True)
    await score(o, o.w1, o.anna, 20.0, month=OCT)
    return o


@pytest.fixture
def kpi() -> KpiService:
    return KpiService(FakeClock(NOW))


async def test_compliance_per_employee_is_the_mean_of_their_submitted_scores(org: Org, kpi: KpiService) -> None:
    ranking = await kpi.sales_compliance(Scope.company(), NOVEMBER)
    assert ranking == [
        ComplianceKpi(org.nina.id, "Нина Николаева", 75.0, 2),  # (100 + 50) / 2
        ComplianceKpi(org.boris.id, "Борис Борисов", 70.0, 1),
        ComplianceKpi(org.anna.id, "Анна Иванова", pytest.approx(170 / 3), 3),  # (80 + 90 + 0) / 3: the critical 0 counts
    ]
    assert [k.staff_id for k in await kpi.sales_compliance(Scope.offices(org.msk.id), NOVEMBER)] == [org.boris.id, org.anna.id]


async def test_the_summary_per_company_office_point_and_employee(org: Org, kpi: KpiService) -> None:
    assert await kpi.summary_sales_compliance(Scope.company(), NOVEMBER) == (pytest.approx(450 / 7), 7)
    assert await kpi.summary_sales_compliance(Scope.offices(org.msk.id), NOVEMBER) == (60.0, 5)  # 300 / 5
    assert await kpi.summary_sales_compliance(Scope.offices(org.nsk.id), NOVEMBER) == (75.0, 2)
    assert await kpi.summary_sales_compliance(Scope.point(org.w1.id), NOVEMBER) == (pytest.approx(140 / 3), 3)  # 80, 0, 60
    assert await kpi.summary_sales_compliance(Scope.point(org.w2.id), NOVEMBER) == (80.0, 2)
    assert await kpi.summary_sales_compliance(Scope.staff(org.anna.id), NOVEMBER) == (pytest.approx(170 / 3), 3)


async def test_drafts_calibrations_and_other_months_are_left_out(org: Org, kpi: KpiService) -> None:
    assert await kpi.summary_sales_compliance(Scope.staff(org.anna.id), Period(date(2026, 10, 1), date(2026, 10, 31))) == (20.0, 1)
    # a period counts every month it touches: 25 October – 5 November is October and November
    assert await kpi.summary_sales_compliance(Scope.company(), Period(date(2026, 10, 25), date(2026, 11, 5))) == (
        pytest.approx(470 / 8), 8)
    # 7 days inside November: November so far
    assert await kpi.summary_sales_compliance(Scope.company(), Period(date(2026, 11, 18), date(2026, 11, 24))) == (
        pytest.approx(450 / 7), 7)
    assert await kpi.summary_sales_compliance(Scope.company(), Period(date(2026, 9, 1), date(2026, 9, 30))) == (None, 0)
    summary = await kpi.summary(Scope.offices(org.msk.id), NOVEMBER)
    assert (summary.sales_compliance, summary.sales_scored) == (60.0, 5)


@pytest.fixture
def reports(kpi: KpiService) -> ReportService:
    return ReportService(FakeClock(NOW), Texts(make_i18n("ru")), kpi)


async def test_the_report_has_the_line_and_the_chart(org: Org, kpi: KpiService, reports: ReportService) -> None:
    text = reports.summary_text(await kpi.summary(Scope.offices(org.msk.id, label="MSK-1"), NOVEMBER), "ru")
    assert "Соблюдение стандарта продаж: 60 % (оценено разговоров: 5)" in text
    english = reports.summary_text(await kpi.summary(Scope.company(), NOVEMBER), "en")
    assert "Sales-standard compliance: 64 % (7 scored)" in english
    week = reports.summary_text(await kpi.summary(Scope.company(), Period(date(2026, 11, 18), date(2026, 11, 24))), "en")
    assert "Sales-standard compliance: 64 % (7 scored) · 11.2026" in week  # a monthly figure: it says which month
    empty = reports.summary_text(await kpi.summary(Scope.company(), Period(date(2026, 9, 1), date(2026, 9, 30))), "en")
    assert "Sales-standard compliance: no scored conversations" in empty

    admin = await Staff.create(code="admin", name="Админ", role=Role.ADMIN)
    office = await reports.build(admin, f"o{org.msk.id}", NOVEMBER, "ru")
    assert len(office.charts) == 6 and all(png.startswith(b"\x89PNG") for png in office.charts)
    employee = await reports.build(admin, f"s{org.anna.id}", NOVEMBER, "ru", with_ranking=False)
    assert len(employee.charts) == 4  # no rankings in one's own report


async def test_the_digest_carries_the_line(org: Org, kpi: KpiService, reports: ReportService) -> None:
    directory = await Directory.load()
    digests = DigestService(FakeClock(NOW), Texts(make_i18n("ru")), kpi, lambda: directory, reports.summary_text,
                            time(9, 0), 60)
    text = await digests.text(directory.offices[org.msk.id], Period(date(2026, 11, 24), date(2026, 11, 24)), "ru")
    assert "Соблюдение стандарта продаж: 60 % (оценено разговоров: 5) · 11.2026" in text


async def test_me_shows_the_latest_scores_with_failed_criteria_and_comments(org: Org, reports: ReportService) -> None:
    await score(
        org, org.w1, org.anna, 0.0, critical=True, submitted_at=NOW + timedelta(hours=1),
        answers={"hello": {"value": "yes", "auto": "yes", "comment": "Отлично"}, "terms": {"value": "no", "auto": None,
                 "comment": "Цена была неверной"}, "bye": {"value": "no", "auto": None, "comment": None}},
        comment="Повторите условия акции",
    )
    (text,) = await reports.my_scores(org.anna, "ru")
    assert text.startswith("📋 <b>Ваши последние оценки</b>")
    first = text.split("\n\n")[1]  # the newest comes first
    assert "<b>0 %</b> · Стандарт продаж" in first and "Не выполнен критический критерий" in first
    assert "❌ Назвал верные условия ❗ — 💬 Цена была неверной" in first
    assert "❌ Попрощался" in first and "💬 Поздоровался первым: Отлично" in first
    assert "💬 Комментарий: Повторите условия акции" in first
    assert "10 %" not in text  # the calibration's score is not hers to see
    assert text.count("Разговор ") == 5  # the latest five

    await Office.filter(id=org.msk.id).update(quality_feedback=False)
    assert await reports.my_scores(org.anna, "ru") == []
    assert await reports.my_scores(org.quality, "ru") == []
