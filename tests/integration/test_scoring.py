"""The scoring form on a real database (SQLite and PostgreSQL): the math, the state, who may press what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot import checklists
from bot.checklists import import_checklists, load_checklists_file
from bot.clock import FakeClock
from bot.errors import AccessDenied, DomainError, NotFound
from bot.models import (
    Calibration,
    Conversation,
    ConversationKind,
    Office,
    OutboxMessage,
    Point,
    Role,
    SampleItem,
    SampleStatus,
    Score,
    ScoreRevision,
    ScoreStatus,
    Staff,
)
from bot.org import import_org, load_org_file
from bot.scoring import CHANGED, META, ScoreCb, ScoreService, answer_values
from bot.texts import Texts, make_i18n

FIXTURES = Path(__file__).parent.parent / "fixtures"
MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)
ANNA = 5001
KEEP_DAYS = 180

# form order of tests/fixtures/checklists.yaml (desk-sales v1)
ORDER = ["hello", "introduced", "client_name", "open_questions", "summarised", "loyalty_card",
         "benefits", "promotion", "objections", "correct_terms", "polite", "goodbye"]
# greeting 1/2 · needs 3/4 · offer 4/4 · closing 3/4 → 0.5·20 + 0.75·30 + 1·30 + 0.75·20 = 77.5 %
ANSWERS = {"hello": "yes", "introduced": "no", "client_name": "na", "open_questions": "yes", "summarised": "yes",
           "loyalty_card": "no", "benefits": "yes", "promotion": "na", "objections": "yes", "correct_terms": "yes",
           "polite": "yes", "goodbye": "no"}
HITS = {"forbidden": [], "required": {"greeting": [{"rule": "здравствуйте", "word": "Здравствуйте", "at": 0.0}]}, "missing": []}


@dataclass
class World:
    service: ScoreService
    clock: FakeClock
    elena: Staff  # quality, no office: every office
    other: Staff  # quality, no office
    ekb: Staff  # quality, EKB-1 only
    manager: Staff
    conversation: Conversation
    item: SampleItem
    pinged: list[int]


async def make_conversation(office: str = "MSK-1", point: str = "W1", staff: str | None = "ivanova",
                            at: datetime = NOW - timedelta(days=1), hits: dict | None = HITS) -> Conversation:
    p = await Point.get(office__code=office, code=point).select_related("office")
    person = await Staff.get(code=staff) if staff else None
    return await Conversation.create(
        kind=ConversationKind.CALL, office_id=p.office.id, point_id=p.id, staff=person, started_at=at,
        ended_at=at + timedelta(minutes=3), audio_path="/nonexistent.ogg", codec="opus", size_bytes=1,
        digest=f"d{at.timestamp()}{point}", received_at=at, keep_until=at + timedelta(days=30),
        transcript="Здравствуйте", transcript_segments=[[0.0, 2.0, "Здравствуйте"]], rule_hits=hits,
    )


async def queue(conversation: Conversation, created: datetime = NOW) -> SampleItem:
    return await SampleItem.create(
        month=date(2026, 11, 1), staff_id=conversation.staff_id, office_id=conversation.office_id,  # type: ignore[attr-defined]
        conversation_id=conversation.id, created_at=created,
    )


@pytest.fixture
async def world(database: str) -> World:
    await import_org(load_org_file(FIXTURES / "org.yaml"))
    await import_checklists(load_checklists_file(FIXTURES / "checklists.yaml"))
    clock = FakeClock(NOW)
    pinged: list[int] = []
    service = ScoreService(clock, Texts(make_i18n()), lambda: pinged.append(1), audio_keep_days=KEEP_DAYS)
    elena = await Staff.get(code="sokolova").select_related("office")
    other = await Staff.create(code="volkova", name="Ирина Волкова", role=Role.QUALITY, telegram_id=5102)
    ekb_office = await Office.get(code="EKB-1")
    ekb = await Staff.create(code="belova", name="Нина Белова", role=Role.QUALITY, office=ekb_office, telegram_id=5103)
    manager = await Staff.get(code="petrov")
    conversation = await make_conversation()
    item = await queue(conversation)
    return World(service, clock, elena, other, ekb, manager, conversation, item, pinged)


async def fill(service: ScoreService, who: Staff, score: Score, answers: dict[str, str] = ANSWERS) -> Score:
    for index, cid in enumerate(ORDER):
        assert score.position == index
        score = await service.answer(who, score.id, score.revision, index, answers[cid])
    return score


async def snapshot(score_id: int) -> tuple:
    s = await Score.get(id=score_id)
    outbox = await OutboxMessage.all().count()
    revisions = await ScoreRevision.filter(score_id=score_id).count()
    return (s.status, s.revision, s.position, s.answers, s.comment, s.result, s.submitted_at, outbox, revisions)


# --------------------------------------------------------------------------- the form


async def test_the_next_form_takes_the_oldest_queued_sample_with_automatic_answers_prefilled(world: World) -> None:
    older = await make_conversation(point="W2", at=NOW - timedelta(days=2))
    older_item = await queue(older, created=NOW - timedelta(hours=1))
    score = await world.service.next_form(world.elena)
    assert score.conversation_id == older.id and score.status == ScoreStatus.DRAFT  # type: ignore[attr-defined]
    item = await SampleItem.get(id=older_item.id)
    assert item.status == SampleStatus.TAKEN and item.taken_by_id == world.elena.id  # type: ignore[attr-defined]
    assert (await SampleItem.get(id=world.item.id)).status == SampleStatus.QUEUED
    assert score.answers["hello"] == {"value": "yes", "auto": "yes", "comment": None}  # the greeting was heard
    assert score.answers["polite"] == {"value": "yes", "auto": "yes", "comment": None}  # no forbidden word
    assert set(answer_values(score.answers)) == {"hello", "polite"}
    assert score.month == date(2026, 11, 1) and score.staff_id == (await Staff.get(code="ivanova")).id  # type: ignore[attr-defined]


async def test_criterion_by_criterion_the_score_is_the_weighted_formula(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    checklist = await s.checklist_of(score)
    score = await fill(s, world.elena, score)
    assert score.position == len(ORDER)  # past the last criterion: the summary
    text, keyboard = s.form_text(score, checklist, "ru")
    assert "Итог: проверьте и отправьте" in text and "Итого: 78 %" in text
    assert keyboard is not None and "Отправить" in str(keyboard)
    score = await s.submit(world.elena, score.id, score.revision)
    assert score.status == ScoreStatus.SUBMITTED and score.result == pytest.approx(77.5) and not score.critical_failed
    stored = await Score.get(id=score.id)
    assert stored.result == pytest.approx(77.5) and stored.submitted_at == NOW
    assert (await SampleItem.get(id=world.item.id)).status == SampleStatus.DONE
    conversation = await Conversation.get(id=world.conversation.id)
    assert conversation.keep_until == NOW + timedelta(days=KEEP_DAYS)  # scored audio is kept


async def test_the_running_score_counts_the_answered_criteria_only(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    checklist = await s.checklist_of(score)
    score = await s.answer(world.elena, score.id, score.revision, 0, "y")  # hello: yes (auto) → greeting 1/1
    score = await s.answer(world.elena, score.id, score.revision, 1, "n")  # introduced: no → greeting 1/2
    text, _keyboard = s.form_text(score, checklist, "ru")
    # greeting 50 % and closing (polite, auto yes) 100 %, weights 20/20 → 75 %
    assert "Текущий балл: 75 % · отвечено 3 из 12" in text
    assert "Критерий 3 из 12 · раздел «Приветствие»" in text and "Обратился к клиенту по имени" in text


async def test_a_critical_no_makes_the_score_zero(world: World) -> None:
    s = world.service
    score = await fill(s, world.elena, await s.next_form(world.elena), {**ANSWERS, "correct_terms": "no"})
    score = await s.submit(world.elena, score.id, score.revision)
    assert score.result == 0.0 and score.critical_failed


async def test_an_override_of_an_automatic_answer_is_recorded(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    checklist = await s.checklist_of(score)
    score = await s.go_to(world.elena, score.id, score.revision, ORDER.index("polite"))
    score = await s.answer(world.elena, score.id, score.revision, "polite", "no")
    stored = await Score.get(id=score.id)
    assert stored.answers["polite"]["value"] == "no" and stored.answers["polite"]["auto"] == "yes"
    score = await s.back(world.elena, score.id, score.revision)
    text, _keyboard = s.form_text(score, checklist, "ru")
    assert "Ответ: Нет (изменён вручную; автоматически: Да)" in text


async def test_na_is_refused_where_the_checklist_does_not_allow_it(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    with pytest.raises(DomainError):
        await s.answer(world.elena, score.id, score.revision, ORDER.index("introduced"), "a")
    checklist = await s.checklist_of(score)
    score = await s.go_to(world.elena, score.id, score.revision, ORDER.index("introduced"))
    _text, keyboard = s.form_text(score, checklist, "ru")
    assert "Н/П" not in str(keyboard)


async def test_skip_to_section_and_back_move_the_form(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    score = await s.skip_to_section(world.elena, score.id, score.revision, 2)  # «Предложение»
    assert score.position == ORDER.index("benefits")
    score = await s.back(world.elena, score.id, score.revision)
    assert score.position == ORDER.index("benefits") - 1
    assert (await Score.get(id=score.id)).position == score.position


async def test_submit_is_refused_while_a_criterion_has_no_answer(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    score = await s.go_to(world.elena, score.id, score.revision, len(ORDER))
    before = await snapshot(score.id)
    with pytest.raises(DomainError) as refused:
        await s.submit(world.elena, score.id, score.revision)
    assert refused.value.params == {"count": 10, "number": 2}
    assert await snapshot(score.id) == before


async def test_a_restarted_service_resumes_the_same_draft_where_it_stood(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    score = await s.answer(world.elena, score.id, score.revision, 0, "y")
    score = await s.answer(world.elena, score.id, score.revision, 1, "n")
    restarted = ScoreService(world.clock, Texts(make_i18n()), audio_keep_days=KEEP_DAYS)
    again = await restarted.next_form(world.elena)
    assert again.id == score.id and again.position == 2 and again.revision == score.revision
    assert answer_values(again.answers)["introduced"] == "no"
    assert await Score.all().count() == 1 and await SampleItem.filter(status=SampleStatus.TAKEN).count() == 1


async def test_an_item_taken_before_a_crash_is_opened_by_the_next_score(world: World) -> None:
    await SampleItem.filter(id=world.item.id).update(status=SampleStatus.TAKEN, taken_by_id=world.elena.id)  # no form yet
    score = await world.service.next_form(world.elena)
    assert score.conversation_id == world.conversation.id  # type: ignore[attr-defined]
    with pytest.raises(NotFound):
        await world.service.next_form(world.other)  # it is not back in the queue for anyone else


async def test_an_empty_queue_says_so(world: World) -> None:
    await SampleItem.all().update(status=SampleStatus.DONE)
    with pytest.raises(NotFound) as refused:
        await world.service.next_form(world.elena)
    assert refused.value.message == "The queue is empty: nothing to score now."


async def test_a_specialist_of_one_office_gets_only_that_offices_samples(world: World) -> None:
    with pytest.raises(NotFound):
        await world.service.next_form(world.ekb)  # the only sample is MSK-1's
    ekb_call = await make_conversation(office="EKB-1", point="W1", staff="smirnova")
    await queue(ekb_call, created=NOW - timedelta(days=1))
    score = await world.service.next_form(world.ekb)
    assert score.conversation_id == ekb_call.id  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- comments


async def test_comments_on_a_criterion_and_the_form_text_or_voice(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    score = await s.remember_prompt(world.elena, score.id, score.revision, 1, 5101, 77)
    assert await s.find_prompt(world.elena, 5101, 77) == (score.id, "introduced")
    assert await s.find_prompt(world.other, 5101, 77) is None  # not theirs
    score = await s.set_comment(world.elena, score.id, "introduced", "  Не назвал имя  ")
    assert await s.find_prompt(world.elena, 5101, 77) is None  # answered: the prompt is gone
    score = await s.set_comment(world.elena, score.id, None, None, voice_file_id="voice-1")
    stored = await Score.get(id=score.id)
    assert stored.answers["introduced"]["comment"] == "Не назвал имя"
    assert stored.answers[META] == {"voice": "voice-1"} and stored.comment is None
    assert "introduced" not in answer_values(stored.answers)  # a comment is not an answer
    checklist = await s.checklist_of(score)
    score = await s.go_to(world.elena, score.id, score.revision, len(ORDER))
    text, _keyboard = s.form_text(score, checklist, "ru")
    assert "Не назвал имя" in text and "Комментарий: (голосовое сообщение)" in text
    with pytest.raises(DomainError):
        await s.set_comment(world.elena, score.id, None, "   ")


# --------------------------------------------------------------------------- who may press what


async def test_only_the_quality_role_scores(world: World) -> None:
    s = world.service
    with pytest.raises(AccessDenied):
        await s.next_form(world.manager)
    score = await s.next_form(world.elena)
    before = await snapshot(score.id)
    with pytest.raises(AccessDenied):
        await s.answer(world.manager, score.id, score.revision, 0, "n")
    with pytest.raises(AccessDenied):
        await s.submit(world.manager, score.id, score.revision)
    assert await snapshot(score.id) == before


async def test_only_the_specialist_who_opened_a_form_can_press_its_buttons(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    before = await snapshot(score.id)
    for call in (
        s.answer(world.other, score.id, score.revision, 0, "n"),
        s.back(world.other, score.id, score.revision),
        s.skip_to_section(world.other, score.id, score.revision, 1),
        s.set_comment(world.other, score.id, None, "чужой"),
        s.submit(world.other, score.id, score.revision),
    ):
        with pytest.raises(NotFound) as refused:
            await call
        assert refused.value.message == "This form is not yours."
    assert await snapshot(score.id) == before


async def test_a_forged_score_id_or_criterion_is_refused(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    before = await snapshot(score.id)
    with pytest.raises(NotFound):
        await s.answer(world.elena, score.id + 1000, score.revision, 0, "n")
    with pytest.raises(DomainError):
        await s.answer(world.elena, score.id, score.revision, 99, "n")
    with pytest.raises(DomainError):
        await s.answer(world.elena, score.id, score.revision, 0, "maybe")
    with pytest.raises(DomainError):
        await s.skip_to_section(world.elena, score.id, score.revision, -1)
    assert await snapshot(score.id) == before


async def test_a_replayed_button_of_an_older_revision_is_refused(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    old = score.revision
    score = await s.answer(world.elena, score.id, old, 0, "y")
    before = await snapshot(score.id)
    with pytest.raises(DomainError) as refused:
        await s.answer(world.elena, score.id, old, 0, "n")
    assert refused.value.message == CHANGED
    with pytest.raises(DomainError):
        await s.back(world.elena, score.id, old)
    assert await snapshot(score.id) == before


async def test_a_form_outside_the_specialists_offices_is_refused(world: World) -> None:
    s = world.service
    with pytest.raises(AccessDenied):
        await s.open(world.ekb, world.conversation)
    assert await Score.all().count() == 0
    score = await s.open(world.elena, world.conversation)
    await Staff.filter(id=world.elena.id).update(office_id=world.ekb.office_id)  # Elena now covers EKB-1 only  # type: ignore[attr-defined]
    moved = await Staff.get(id=world.elena.id)
    before = await snapshot(score.id)
    with pytest.raises(AccessDenied):
        await s.answer(moved, score.id, score.revision, 0, "n")
    with pytest.raises(AccessDenied):
        await s.submit(moved, score.id, score.revision)
    assert await snapshot(score.id) == before


async def test_a_double_tap_on_submit_submits_once(world: World) -> None:
    s = world.service
    score = await fill(s, world.elena, await s.next_form(world.elena))
    revision = score.revision
    await s.submit(world.elena, score.id, revision)
    before = await snapshot(score.id)
    with pytest.raises(DomainError) as refused:
        await s.submit(world.elena, score.id, revision)
    assert refused.value.message == "This form is already submitted."
    assert await snapshot(score.id) == before
    assert await OutboxMessage.filter(chat_id=ANNA).count() == 1


async def test_two_submits_racing_store_one(world: World) -> None:
    import asyncio

    s = world.service
    score = await fill(s, world.elena, await s.next_form(world.elena))
    results = await asyncio.gather(*(s.submit(world.elena, score.id, score.revision) for _ in range(2)), return_exceptions=True)
    assert sum(isinstance(r, Score) for r in results) == 1 and sum(isinstance(r, DomainError) for r in results) == 1
    assert await OutboxMessage.filter(chat_id=ANNA).count() == 1


async def test_two_presses_racing_on_one_revision_change_the_form_once(world: World) -> None:
    import asyncio

    s = world.service
    score = await s.next_form(world.elena)
    score = await s.answer(world.elena, score.id, score.revision, 0, "y")  # now in the service's memory
    results = await asyncio.gather(
        s.answer(world.elena, score.id, score.revision, 1, "y"), s.answer(world.elena, score.id, score.revision, 1, "n"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Score) for r in results) == 1
    stored = await Score.get(id=score.id)
    assert stored.revision == score.revision + 1
    assert stored.answers["introduced"]["value"] == next(r for r in results if isinstance(r, Score)).answers["introduced"]["value"]


async def test_a_change_made_by_another_instance_refuses_this_ones_old_button(world: World) -> None:
    s = world.service
    other_instance = ScoreService(world.clock, Texts(make_i18n()), audio_keep_days=KEEP_DAYS)
    score = await s.next_form(world.elena)
    score = await s.answer(world.elena, score.id, score.revision, 0, "y")
    await other_instance.answer(world.elena, score.id, score.revision, 1, "n")
    before = await snapshot(score.id)
    with pytest.raises(DomainError):
        await s.answer(world.elena, score.id, score.revision, 1, "y")  # this instance remembers the old revision
    assert await snapshot(score.id) == before


async def test_every_button_fits_telegrams_64_bytes(world: World) -> None:
    assert len(ScoreCb(a="e", s=2**63 - 1, r=2**31 - 1, c=9999).pack().encode()) <= 64
    s = world.service
    score = await s.next_form(world.elena)
    checklist = await s.checklist_of(score)
    for position in range(len(ORDER) + 1):
        score = await s.go_to(world.elena, score.id, score.revision, position)
        for sections in (False, True):
            _text, keyboard = s.form_text(score, checklist, "ru", sections=sections)
            for row in keyboard.inline_keyboard:  # type: ignore[union-attr]
                for button in row:
                    assert len(button.callback_data.encode()) <= 64  # type: ignore[union-attr]


# --------------------------------------------------------------------------- corrections


async def test_a_score_is_corrected_within_24_hours_with_its_history_kept(world: World) -> None:
    s = world.service
    score = await fill(s, world.elena, await s.next_form(world.elena))
    score = await s.submit(world.elena, score.id, score.revision)
    world.clock.advance(timedelta(hours=23))
    score = await s.correct(world.elena, score.id)
    assert score.status == ScoreStatus.DRAFT and answer_values(score.answers) == ANSWERS  # answers kept
    history = await s.history(score.id)
    assert len(history) == 1 and history[0].result == pytest.approx(77.5) and history[0].submitted_at == NOW
    assert answer_values(history[0].answers) == ANSWERS
    score = await s.answer(world.elena, score.id, score.revision, ORDER.index("goodbye"), "yes")
    score = await s.submit(world.elena, score.id, score.revision)
    assert score.result == pytest.approx(82.5)  # closing 4/4: + 0.25·20
    texts = await OutboxMessage.filter(chat_id=ANNA).order_by("id").values_list("text", flat=True)
    assert len(texts) == 2 and "исправлена" in texts[1]


async def test_a_correction_after_24_hours_is_refused(world: World) -> None:
    s = world.service
    score = await fill(s, world.elena, await s.next_form(world.elena))
    score = await s.submit(world.elena, score.id, score.revision)
    world.clock.advance(timedelta(hours=23))
    score = await s.correct(world.elena, score.id)
    score = await s.submit(world.elena, score.id, score.revision)
    world.clock.advance(timedelta(hours=2))  # 25 h after the first submission, 2 h after the second
    before = await snapshot(score.id)
    with pytest.raises(DomainError):
        await s.correct(world.elena, score.id)
    assert await snapshot(score.id) == before


async def test_only_the_specialist_corrects_their_score(world: World) -> None:
    s = world.service
    score = await fill(s, world.elena, await s.next_form(world.elena))
    score = await s.submit(world.elena, score.id, score.revision)
    before = await snapshot(score.id)
    with pytest.raises(NotFound):
        await s.correct(world.other, score.id)
    with pytest.raises(AccessDenied):
        await s.correct(world.manager, score.id)
    assert await snapshot(score.id) == before


# --------------------------------------------------------------------------- feedback


async def test_the_employee_gets_the_score_the_failed_criteria_and_the_comment(world: World) -> None:
    s = world.service
    score = await s.next_form(world.elena)
    score = await s.set_comment(world.elena, score.id, "goodbye", "Не пригласил снова")
    score = await s.set_comment(world.elena, score.id, None, "В целом хорошо")
    score = await fill(s, world.elena, score)
    await s.submit(world.elena, score.id, score.revision)
    rows = await OutboxMessage.filter(chat_id=ANNA)
    assert len(rows) == 1 and world.pinged
    text = rows[0].text or ""
    assert "78 %" in text and "Стандарт продаж у стойки" in text
    assert "Представился, назвал своё имя" in text and "Спросил о карте лояльности" in text  # the two "no"s
    assert "Попрощался и пригласил снова — 💬 Не пригласил снова" in text
    assert "В целом хорошо" in text and "Поздоровался первым" not in text


async def test_no_feedback_when_the_office_turns_it_off(world: World) -> None:
    await Office.filter(code="MSK-1").update(quality_feedback=False)
    s = world.service
    score = await fill(s, world.elena, await s.next_form(world.elena))
    score = await s.submit(world.elena, score.id, score.revision)
    assert score.status == ScoreStatus.SUBMITTED
    assert await OutboxMessage.all().count() == 0 and not world.pinged


# --------------------------------------------------------------------------- calibration and month


async def test_a_calibration_form_uses_its_template_and_tells_nobody(world: World) -> None:
    s = world.service
    checklist = await checklists.latest("desk-sales")
    assert checklist is not None
    calibration = await Calibration.create(
        conversation_id=world.conversation.id, template_id=checklist.template_id, created_by_id=world.elena.id, created_at=NOW
    )
    seen: list[int | None] = []

    async def listener(score: Score) -> None:
        seen.append(score.calibration_id)  # type: ignore[attr-defined]

    s.add_submit_listener(listener)
    score = await s.open(world.elena, world.conversation, calibration=calibration)
    assert await s.open(world.elena, world.conversation, calibration=calibration) == score  # the same form again
    score = await fill(s, world.elena, score)
    await s.submit(world.elena, score.id, score.revision)
    assert seen == [calibration.id]
    assert await OutboxMessage.all().count() == 0
    assert (await SampleItem.get(id=world.item.id)).status == SampleStatus.QUEUED  # not the sample's score


async def test_the_month_is_the_conversations_local_month(world: World) -> None:
    late = await make_conversation(point="W3", at=datetime(2026, 11, 30, 22, 30, tzinfo=UTC))  # 01:30 on 1 Dec in Moscow
    score = await world.service.open(world.elena, late)
    assert score.month == date(2026, 12, 1)
