"""The monthly sampling plan on a real database (SQLite and PostgreSQL).

Conversations are seeded directly. The reference month is November 2026; Moscow is UTC+3 and
Novosibirsk UTC+7 all year.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.checklists import import_checklists, parse_checklists_yaml
from bot.clock import FakeClock
from bot.errors import AccessDenied
from bot.models import (
    Calibration,
    ChecklistTemplate,
    Conversation,
    ConversationKind,
    Office,
    Point,
    Role,
    SampleItem,
    SampleStatus,
    Score,
    ScoreStatus,
    Staff,
)
from bot.sampling import QueueLine, SamplingService, month_bounds

MSK = ZoneInfo("Europe/Moscow")
NSK = ZoneInfo("Asia/Novosibirsk")
NOV = date(2026, 11, 1)
DEC = date(2026, 12, 1)
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

_digests = itertools.count(1)


@dataclass
class Org:
    msk: Office
    nsk: Office
    w1: Point
    n1: Point
    anna: Staff
    boris: Staff
    nina: Staff
    gone: Staff  # inactive
    quality_all: Staff  # quality, no office: sees every office
    quality_msk: Staff
    manager_nsk: Staff


@pytest.fixture
async def org(database: str) -> Org:
    msk = await Office.create(code="MSK-1", name="Москва", timezone="Europe/Moscow")
    nsk = await Office.create(code="NSK-1", name="Новосибирск", timezone="Asia/Novosibirsk")
    return Org(
        msk=msk, nsk=nsk,
        w1=await Point.create(office=msk, code="W1", name="Окно 1"),
        n1=await Point.create(office=nsk, code="N1", name="Окно 1"),
        anna=await Staff.create(code="ivanova", name="Анна Иванова", office=msk),
        boris=await Staff.create(code="borisov", name="Борис Борисов", office=msk),
        nina=await Staff.create(code="nikolaeva", name="Нина Николаева", office=nsk),
        gone=await Staff.create(code="gone", name="Ушедший Сотрудник", office=msk, active=False),
        quality_all=await Staff.create(code="sokolova", name="Елена Соколова", role=Role.QUALITY),
        quality_msk=await Staff.create(code="qmsk", name="Ирина Качество", role=Role.QUALITY, office=msk),
        manager_nsk=await Staff.create(code="nsk-boss", name="Олег Руководитель", role=Role.MANAGER, office=nsk),
    )


async def conversation(point: Point, staff: Staff | None, at: datetime, *, audio: bool = True,
                       kind: ConversationKind = ConversationKind.CALL) -> int:
    row = await Conversation.create(
        kind=kind, office_id=point.office_id, point=point, staff=staff, started_at=at.astimezone(UTC),  # type: ignore[attr-defined]
        ended_at=at.astimezone(UTC) + timedelta(minutes=3), audio_path=f"/audio/{next(_digests)}.ogg" if audio else None,
        codec="opus", size_bytes=1000, digest=f"d{next(_digests)}", received_at=at.astimezone(UTC),
    )
    return row.id


async def month_of(point: Point, staff: Staff | None, count: int, *, start_day: int = 2, tz: ZoneInfo = MSK,
                   kind: ConversationKind = ConversationKind.CALL, audio: bool = True) -> list[int]:
    """``count`` conversations of ``staff`` in November, two hours apart from the ``start_day``'s 09:00."""
    first = datetime(2026, 11, start_day, 9, 0, tzinfo=tz)
    return [await conversation(point, staff, first + timedelta(hours=2 * n), audio=audio, kind=kind) for n in range(count)]


async def planned(month: date = NOV, staff: Staff | None = None) -> set[int]:
    query = SampleItem.filter(month=month)
    if staff is not None:
        query = query.filter(staff_id=staff.id)
    return set(await query.values_list("conversation_id", flat=True))


def service(**kwargs: object) -> SamplingService:
    return SamplingService(FakeClock(NOW), **kwargs)  # type: ignore[arg-type]


async def test_each_employee_gets_n_of_their_conversations_with_audio(org: Org) -> None:
    anna = await month_of(org.w1, org.anna, 10)
    no_audio = await month_of(org.w1, org.anna, 5, start_day=10, audio=False)
    boris = await month_of(org.w1, org.boris, 3)
    await month_of(org.w1, None, 4)  # nobody identified: nobody to score
    await month_of(org.w1, org.gone, 4)  # left the company

    report = await service(seed=1).plan(NOV)

    assert len(await planned(staff=org.anna)) == 6 and await planned(staff=org.anna) <= set(anna)
    assert not await planned(staff=org.anna) & set(no_audio)
    assert await planned(staff=org.boris) == set(boris)  # fewer than 6: all of them
    assert await planned() == await planned(staff=org.anna) | await planned(staff=org.boris)
    assert (report.added, report.total, report.employees) == (9, 9, 2)
    assert report.short == [("Борис Борисов", 3)]
    items = await SampleItem.filter(month=NOV).values_list("office_id", "status", "negative")
    assert set(items) == {(org.msk.id, SampleStatus.QUEUED, False)}


async def test_the_choice_is_random_but_reproducible_with_a_seed(org: Org) -> None:
    anna = await month_of(org.w1, org.anna, 20)
    await month_of(org.w1, org.boris, 20)

    await service(seed=42).plan(NOV)
    first = await planned(staff=org.anna)
    await SampleItem.all().delete()
    await service(seed=42, per_staff=6).plan(NOV)
    assert await planned(staff=org.anna) == first  # same seed, same draw

    assert first not in (set(anna[:6]), set(anna[-6:]))  # not simply the first or the last ones
    await SampleItem.all().delete()
    await service(seed=43).plan(NOV)
    assert await planned(staff=org.anna) != first  # another seed, another draw (fixed seeds: deterministic)


async def test_a_seeded_draw_does_not_depend_on_other_employees(org: Org) -> None:
    await month_of(org.w1, org.anna, 20)
    await service(seed=7).plan(NOV)
    alone = await planned(staff=org.anna)
    await SampleItem.all().delete()
    await month_of(org.w1, org.boris, 20, start_day=15)
    await service(seed=7).plan(NOV)
    assert await planned(staff=org.anna) == alone


async def test_negatives_come_first_when_asked(org: Org) -> None:
    negatives = await month_of(org.w1, org.anna, 3, kind=ConversationKind.NEGATIVE)
    calls = await month_of(org.w1, org.anna, 10, start_day=12)

    await service(seed=3, negatives_first=True).plan(NOV)
    picked = await planned(staff=org.anna)
    assert set(negatives) <= picked and len(picked & set(calls)) == 3
    assert set(await SampleItem.filter(conversation_id__in=negatives).values_list("negative", flat=True)) == {True}

    await SampleItem.all().delete()
    await service(seed=3).plan(NOV, per_staff=2, negatives_first=True)
    assert await planned(staff=org.anna) < set(negatives)  # two of the three negatives, no call


async def test_planning_again_tops_up_and_never_duplicates(org: Org) -> None:
    await month_of(org.w1, org.anna, 10)
    await month_of(org.w1, org.boris, 3)
    sampling = service(seed=5)
    await sampling.plan(NOV)
    before = dict(await SampleItem.all().values_list("id", "conversation_id"))

    again = await sampling.plan(NOV)
    assert again.added == 0 and dict(await SampleItem.all().values_list("id", "conversation_id")) == before

    await month_of(org.w1, org.boris, 4, start_day=20)  # Boris talked to more clients since
    topped = await sampling.plan(NOV)
    assert topped.added == 3 and len(await planned(staff=org.boris)) == 6
    assert set(before.items()) <= set(dict(await SampleItem.all().values_list("id", "conversation_id")).items())

    larger = await sampling.plan(NOV, per_staff=8)
    assert larger.added == 2 + 1  # Anna 6 → 8; Boris has 7 conversations in all
    assert len(await planned(staff=org.anna)) == 8 and len(await planned(staff=org.boris)) == 7
    conversations = await SampleItem.all().values_list("conversation_id", flat=True)
    assert len(conversations) == len(set(conversations)) == 15


async def test_two_top_ups_at_once_fill_a_quota_once(org: Org) -> None:
    await month_of(org.w1, org.anna, 12)
    await asyncio.gather(service().plan(NOV), service().plan(NOV))
    assert len(await planned(staff=org.anna)) == 6


async def test_a_month_is_the_office_s_local_month(org: Org) -> None:
    msk_start, msk_end = month_bounds(NOV, MSK)
    assert (msk_start, msk_end) == (datetime(2026, 10, 31, 21, 0, tzinfo=UTC), datetime(2026, 11, 30, 21, 0, tzinfo=UTC))
    # Moscow: 00:30 on 1 November is November (still October in UTC); 00:30 on 1 December is not
    msk_first = await conversation(org.w1, org.anna, datetime(2026, 11, 1, 0, 30, tzinfo=MSK))
    msk_december = await conversation(org.w1, org.anna, datetime(2026, 12, 1, 0, 30, tzinfo=MSK))
    msk_last = await conversation(org.w1, org.anna, datetime(2026, 11, 30, 23, 30, tzinfo=MSK))
    msk_october = await conversation(org.w1, org.anna, datetime(2026, 10, 31, 23, 30, tzinfo=MSK))
    # Novosibirsk: 30 Nov 17:30 UTC is already 1 December there (00:30), though November in Moscow
    nsk_december = await conversation(org.n1, org.nina, datetime(2026, 11, 30, 17, 30, tzinfo=UTC))
    nsk_last = await conversation(org.n1, org.nina, datetime(2026, 11, 30, 16, 30, tzinfo=UTC))  # 23:30 there

    await service().plan(NOV)
    assert await planned(NOV) == {msk_first, msk_last, nsk_last}
    await service().plan(DEC)
    assert await planned(DEC) == {msk_december, nsk_december}
    assert msk_october not in await planned(NOV) | await planned(DEC)


async def test_the_queue_counts_left_and_done_per_employee_in_the_specialist_s_offices(org: Org) -> None:
    anna = await month_of(org.w1, org.anna, 6)
    await month_of(org.w1, org.boris, 2)
    await month_of(org.n1, org.nina, 4, tz=NSK)
    sampling = service()
    await sampling.plan(NOV)
    # two of Anna's are done, one is being scored, one was scored without the item being marked
    await SampleItem.filter(conversation_id__in=anna[:2]).update(status=SampleStatus.DONE)
    await SampleItem.filter(conversation_id=anna[2]).update(status=SampleStatus.TAKEN, taken_by_id=org.quality_all.id)
    template = await checklist_template()
    common = dict(template_id=template.id, specialist_id=org.quality_all.id, staff_id=org.anna.id, office_id=org.msk.id,
                  month=NOV, created_at=NOW, updated_at=NOW)
    await Score.create(conversation_id=anna[3], status=ScoreStatus.SUBMITTED, result=90.0, submitted_at=NOW, **common)
    await Score.create(conversation_id=anna[2], status=ScoreStatus.DRAFT, **common)  # taken: still left
    await Score.create(conversation_id=anna[4], status=ScoreStatus.SUBMITTED, result=50.0, submitted_at=NOW,
                       calibration_id=await calibration_of(anna[4], template, org), **common)

    everyone = [
        QueueLine(org.anna.id, "Анна Иванова", "MSK-1", 3, 3),  # a calibration's score is not the sample's
        QueueLine(org.boris.id, "Борис Борисов", "MSK-1", 2, 0),
        QueueLine(org.nina.id, "Нина Николаева", "NSK-1", 4, 0),
    ]
    assert await sampling.queue(org.quality_all, NOV) == everyone
    assert await sampling.queue(org.quality_msk, NOV) == everyone[:2]
    assert await sampling.queue(org.manager_nsk, NOV) == everyone[2:]
    assert await sampling.queue(org.quality_all, DEC) == []
    with pytest.raises(AccessDenied):
        await sampling.queue(org.anna, NOV)


async def test_a_specialist_bound_to_an_office_plans_only_that_office(org: Org) -> None:
    await month_of(org.w1, org.anna, 8)
    await month_of(org.n1, org.nina, 8, tz=NSK)
    sampling = service()
    report = await sampling.plan(NOV, office_ids=sampling.office_ids(org.quality_msk))
    assert (report.added, report.total) == (6, 6)
    assert await planned(staff=org.nina) == set()
    assert not await sampling.has_plan(NOV, [org.nsk.id]) and await sampling.has_plan(NOV, [org.msk.id])


CHECKLIST = """
checklists:
  - code: desk-sales
    name: Стандарт
    sections:
      - id: all
        name: Всё
        weight: 100
        criteria:
          - {id: hello, text: Поздоровался}
"""


async def checklist_template() -> ChecklistTemplate:
    await import_checklists(parse_checklists_yaml(CHECKLIST))
    return await ChecklistTemplate.get(code="desk-sales")


async def calibration_of(conversation_id: int, template: ChecklistTemplate, org: Org) -> int:
    row = await Calibration.create(conversation_id=conversation_id, template=template, created_by=org.quality_all,
                                   created_at=NOW)
    return row.id
