"""Calibration on a real database: blind forms, the result only when all have submitted,
agreement and the >10 % flags against values worked out by hand, and one report.

The checklist: section A (weight 50) has ``greet`` (1 pt) and ``name`` (2 pt, N/A allowed);
section B (weight 50) has ``terms`` (1 pt, critical) and ``bye`` (1 pt).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.checklists import import_checklists, parse_checklists_yaml
from bot.clock import FakeClock
from bot.errors import AccessDenied, DomainError
from bot.models import Calibration, Conversation, Office, OutboxMessage, Point, Role, Score, ScoreStatus, Staff
from bot.sampling import CalibrationService, CriterionAgreement
from bot.scoring import ScoreService
from bot.texts import Texts, make_i18n

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CHECKLIST = """
checklists:
  - code: desk-sales
    name: Стандарт продаж
    sections:
      - id: a
        name: Начало
        weight: 50
        criteria:
          - {id: greet, text: Поздоровался}
          - {id: name, text: Назвал клиента по имени, points: 2, na: true}
      - id: b
        name: Конец
        weight: 50
        criteria:
          - {id: terms, text: Назвал верные условия, critical: true}
          - {id: bye, text: Попрощался}
"""
# who answers what, in the order of the result (by name): Алла, Борис, Вера
ANSWERS = {
    "alla": {"greet": "yes", "name": "yes", "terms": "yes", "bye": "yes"},  # A 3/3, B 2/2 → 100 %
    "boris": {"greet": "yes", "name": "yes", "terms": "yes", "bye": "no"},  # A 3/3 → 50, B 1/2 → 25: 75 %
    "vera": {"greet": "yes", "name": "na", "terms": "no", "bye": "yes"},  # critical "no": 0 %
}


@dataclass
class World:
    calibration: CalibrationService
    scores: ScoreService
    conversation: Conversation
    people: dict[str, Staff]
    notified: list[int]


@pytest.fixture
async def world(database: str) -> World:
    msk = await Office.create(code="MSK-1", name="Москва", timezone="Europe/Moscow")
    nsk = await Office.create(code="NSK-1", name="Новосибирск", timezone="Asia/Novosibirsk")
    point = await Point.create(office=msk, code="W1", name="Окно 1")
    anna = await Staff.create(code="ivanova", name="Анна Иванова", office=msk, telegram_id=5001)
    people = {
        "alla": await Staff.create(code="alla", name="Алла Аксёнова", role=Role.QUALITY, telegram_id=6001),
        "boris": await Staff.create(code="boris", name="Борис Быков", role=Role.QUALITY, office=msk, telegram_id=6002),
        "vera": await Staff.create(code="vera", name="Вера Волкова", role=Role.QUALITY, telegram_id=6003),
        # not asked by default: another office, no Telegram account, no longer active
        "nsk": await Staff.create(code="nskq", name="Гена Новосибирский", role=Role.QUALITY, office=nsk, telegram_id=6004),
        "offline": await Staff.create(code="offline", name="Дина Без Телеграма", role=Role.QUALITY),
        "gone": await Staff.create(code="gone", name="Егор Ушедший", role=Role.QUALITY, telegram_id=6006, active=False),
        "manager": await Staff.create(code="boss", name="Олег Петров", role=Role.MANAGER, office=msk, telegram_id=5002),
        "anna": anna,
    }
    conversation = await Conversation.create(
        office=msk, point=point, staff=anna, started_at=NOW - timedelta(days=1), ended_at=NOW - timedelta(days=1, minutes=-3),
        audio_path="/audio/call.ogg", codec="opus", size_bytes=1000, digest="d1", received_at=NOW,
    )
    await import_checklists(parse_checklists_yaml(CHECKLIST))
    clock = FakeClock(NOW)
    texts = Texts(make_i18n("ru"))
    notified: list[int] = []
    scores = ScoreService(clock, texts)
    calibration = CalibrationService(clock, texts, scores, on_outbox=lambda: notified.append(1))
    return World(calibration, scores, conversation, people, notified)


async def fill(world: World, who: str, submit: bool = True) -> Score:
    """``who`` opens /score (their draft comes first), answers as in ANSWERS and submits."""
    specialist = world.people[who]
    score = await world.scores.next_form(specialist)
    for criterion, value in ANSWERS[who].items():
        score = await world.scores.answer(specialist, score.id, score.revision, criterion, value)
    if submit:
        score = await world.scores.submit(specialist, score.id, score.revision)
    return score


async def outbox(chat_id: int) -> list[str]:
    return [t or "" for t in await OutboxMessage.filter(chat_id=chat_id).order_by("id").values_list("text", flat=True)]


async def test_each_participant_gets_a_separate_draft_and_a_private_invitation(world: World) -> None:
    started = await world.calibration.start(world.people["alla"], world.conversation.id)

    assert started.participants == ["Алла Аксёнова", "Борис Быков", "Вера Волкова"]
    scores = await Score.filter(calibration_id=started.calibration_id).order_by("specialist_id")
    assert [s.specialist_id for s in scores] == [world.people[w].id for w in ("alla", "boris", "vera")]  # type: ignore[attr-defined]
    assert {s.status for s in scores} == {ScoreStatus.DRAFT} and {s.conversation_id for s in scores} == {world.conversation.id}  # type: ignore[attr-defined]
    calibration = await Calibration.get(id=started.calibration_id)
    assert {s.template_id for s in scores} == {calibration.template_id}  # type: ignore[attr-defined]
    for who in ("alla", "boris", "vera"):
        (invitation,) = await outbox(world.people[who].telegram_id)  # type: ignore[arg-type]
        assert f"Калибровка №{started.calibration_id}" in invitation and "/score" in invitation
    for who in ("nsk", "gone"):
        assert await outbox(world.people[who].telegram_id) == []  # type: ignore[arg-type]
    assert world.notified


async def test_answers_stay_blind_and_the_result_waits_for_everyone(world: World) -> None:
    started = await world.calibration.start(world.people["alla"], world.conversation.id)
    alla = await fill(world, "alla")
    assert alla.calibration_id == started.calibration_id  # type: ignore[attr-defined]
    boris_form = await world.scores.next_form(world.people["boris"])
    assert boris_form.id != alla.id and boris_form.answers == {}  # Alla's answers are in her own row only
    with pytest.raises(DomainError):
        await world.scores.check(world.people["boris"], alla.id, alla.revision)  # nor can Boris open hers

    await fill(world, "boris")
    with pytest.raises(DomainError) as refused:
        await world.calibration.result(started.calibration_id)
    assert refused.value.params == {"id": started.calibration_id, "done": 2, "total": 3}
    assert await world.calibration.maybe_report(started.calibration_id) is False
    assert (await Calibration.get(id=started.calibration_id)).reported_at is None


async def test_the_result_shows_agreement_and_flags_criteria_that_differ_by_more_than_10_percent(world: World) -> None:
    started = await world.calibration.start(world.people["alla"], world.conversation.id)
    for who in ("vera", "alla", "boris"):
        await fill(world, who)

    result = await world.calibration.result(started.calibration_id)

    assert [(p.name, p.result, p.critical_failed) for p in result.participants] == [
        ("Алла Аксёнова", 100.0, False), ("Борис Быков", 75.0, False), ("Вера Волкова", 0.0, True),
    ]
    assert result.total_spread == 100.0 and result.mean_total == pytest.approx(175 / 3)
    by_id = {c.criterion_id: c for c in result.criteria}
    greet, name, terms, bye = (by_id[k] for k in ("greet", "name", "terms", "bye"))
    # everyone "yes": full agreement, shares 1, 1, 1
    assert (greet.modal, greet.agreement, greet.spread, greet.flagged) == ("yes", 1.0, 0.0, False)
    # yes, yes, N/A: two of three agree; the shares that apply agree, but whether it applies does not
    assert (name.modal, name.agreement, name.shares, name.spread) == ("yes", pytest.approx(2 / 3), (1.0, 1.0, None), 0.0)
    assert name.applicability_differs and name.flagged
    # yes, yes, no: shares 1, 1, 0 → spread 1.0 > 0.10
    assert (terms.modal, terms.agreement, terms.shares, terms.spread, terms.flagged) == (
        "yes", pytest.approx(2 / 3), (1.0, 1.0, 0.0), 1.0, True)
    # yes, no, yes
    assert (bye.answers, bye.agreement, bye.spread, bye.flagged) == (("yes", "no", "yes"), pytest.approx(2 / 3), 1.0, True)
    assert [c.criterion_id for c in result.flagged] == ["name", "terms", "bye"]
    assert result.agreement == pytest.approx((1 + 2 / 3 + 2 / 3 + 2 / 3) / 4)


def test_exactly_10_percent_is_not_flagged_and_more_is() -> None:
    def criterion(low: float, high: float) -> CriterionAgreement:
        return CriterionAgreement("c", "c", False, ("yes", "yes"), "yes", 1.0, (low, high), high - low, False)

    assert not criterion(0.5, 0.6).flagged  # 0.6 − 0.5 = 0.0999… in floats: not "more than 10 %"
    assert not criterion(0.0, 0.1).flagged
    assert criterion(0.5, 0.6001).flagged


async def test_the_result_goes_to_every_participant_once(world: World) -> None:
    started = await world.calibration.start(world.people["boris"], world.conversation.id)
    for who in ("alla", "boris", "vera"):
        await fill(world, who)
    invitations = await OutboxMessage.all().count()

    reported = await asyncio.gather(*(world.calibration.maybe_report(started.calibration_id) for _ in range(3)))
    assert sorted(reported) == [False, False, True]
    assert await world.calibration.maybe_report(started.calibration_id) is False
    assert await OutboxMessage.all().count() == invitations + 3
    for who in ("alla", "boris", "vera"):
        report = (await outbox(world.people[who].telegram_id))[-1]  # type: ignore[arg-type]
        assert report.startswith(f"🎯 <b>Калибровка №{started.calibration_id}: результат</b>")
        assert "Вера Волкова: 0 % ❗" in report and "расходятся на 100 п. п." in report
        assert "расходятся больше чем на 10 %: 3" in report
        assert "Да: Алла Аксёнова, Вера Волкова; Нет: Борис Быков" in report  # who said what on «Попрощался»
    assert (await Calibration.get(id=started.calibration_id)).reported_at == NOW
    assert await outbox(world.people["anna"].telegram_id) == []  # type: ignore[arg-type]  # the employee hears nothing of it


async def test_who_may_calibrate_and_with_whom(world: World) -> None:
    with pytest.raises(AccessDenied):
        await world.calibration.start(world.people["manager"], world.conversation.id)
    with pytest.raises(DomainError):  # Novosibirsk's specialist does not cover Moscow's conversation
        await world.calibration.start(world.people["nsk"], world.conversation.id)
    with pytest.raises(DomainError):
        await world.calibration.start(world.people["alla"], world.conversation.id, [world.people["alla"]])
    with pytest.raises(DomainError):
        await world.calibration.start(world.people["alla"], world.conversation.id, [world.people["alla"], world.people["nsk"]])
    with pytest.raises(DomainError):
        await world.calibration.start(world.people["alla"], 999_999)
    await Conversation.filter(id=world.conversation.id).update(audio_path=None)
    with pytest.raises(DomainError):
        await world.calibration.start(world.people["alla"], world.conversation.id)
    assert await Calibration.all().count() == 0 and await Score.all().count() == 0

    await Conversation.filter(id=world.conversation.id).update(audio_path="/audio/call.ogg")
    two = await world.calibration.start(world.people["alla"], world.conversation.id, [world.people["alla"], world.people["vera"]])
    assert two.participants == ["Алла Аксёнова", "Вера Волкова"]
