"""/score through the real bot: voice, transcript, the form edited in place, a restart, submit, feedback."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.checklists import import_checklists, load_checklists_file
from bot.models import Conversation, ConversationKind, OutboxMessage, Point, SampleItem, SampleStatus, Score, ScoreStatus, SpeechStatus, Staff
from tests.e2e.conftest import Harness
from tests.telegram_emulator import BotApiEmulator

CHECKLISTS = Path(__file__).parent.parent / "fixtures" / "checklists.yaml"
QUALITY = 5101  # Елена Соколова: quality, no office (every office)
ANNA = 5001  # Анна Иванова: the employee whose call is scored
RULES = {"forbidden": ["не знаю"], "required": {"greeting": ["здравствуйте"]}}


def find_button(message: dict[str, Any], label: str) -> str:
    """The callback data of the button labelled exactly ``label`` (a ✅ mark before it aside)."""
    for row in message.get("reply_markup", {}).get("inline_keyboard", []):
        for b in row:
            if b["text"].removeprefix("✅ ") == label:
                return b["callback_data"]
    raise AssertionError(f"no button {label!r} in {message.get('reply_markup')}")


class Specialist:
    """Elena's side of the chat: press a button of the form and wait for its edit."""

    def __init__(self, emu: BotApiEmulator, user: int = QUALITY) -> None:
        self.emu = emu
        self.user = user

    def form(self, message_id: int) -> dict[str, Any]:
        message = self.emu.message(self.user, message_id)
        assert message is not None
        return message

    async def press(self, message_id: int, label: str) -> dict[str, Any]:
        before = self.form(message_id)
        query = await self.emu.press_button(self.user, self.user, message_id, find_button(before, label))
        await self.emu.wait_for(lambda: any(a["id"] == query for a in self.emu.answered_callbacks), what=f"answer to {label}")
        answer = next(a for a in self.emu.answered_callbacks if a["id"] == query)
        assert not answer["show_alert"], f"{label!r} was refused: {answer['text']}"
        return await self.emu.wait_for(
            lambda: (m := self.form(message_id)) and (m.get("reply_markup") != before.get("reply_markup")
                                                      or m.get("text") != before.get("text")) and m,
            what=f"the form edited after {label}",
        )

    async def alert(self, message_id: int, data: str, user: int | None = None) -> str:
        """A forged press: the refusal's text (an alert), and nothing else happens."""
        who = user or self.user
        query = await self.emu.press_button(who, who, message_id, data, forged=True)
        await self.emu.wait_for(lambda: any(a["id"] == query for a in self.emu.answered_callbacks), what="the refusal")
        answer = next(a for a in self.emu.answered_callbacks if a["id"] == query)
        assert answer["show_alert"], answer
        return answer["text"] or ""

    async def comment(self, form_id: int, label: str, reply: str | bytes) -> None:
        """Press a comment button, answer the ForceReply prompt (text or voice), wait for «saved»."""
        newest = max(m["message_id"] for m in self.emu.messages(self.user))
        await self.press(form_id, label)
        prompt = await self.emu.wait_for_bot_message(self.user, contains="ответьте на это сообщение", newer_than=newest)
        if isinstance(reply, bytes):
            sent = await self.emu.user_voice(self.user, self.user, reply, 2, reply_to_message_id=prompt["message_id"])
        else:
            sent = await self.emu.user_message(self.user, self.user, reply, reply_to_message_id=prompt["message_id"])
        await self.emu.wait_for_bot_message(self.user, contains="Комментарий сохранён", newer_than=sent["message_id"])


async def seed_call(harness: Harness) -> tuple[Conversation, bytes]:
    """A real Ogg/Opus call of Anna's at MSK-1/W1, transcribed, with its rule hits, in the queue."""
    from tests.speech_samples import desk_clip

    ogg = desk_clip([0.3, "Здравствуйте!", 0.3, "Не знаю.", 0.3], "ru", fmt="ogg")
    path = harness.tmp_path / "calls" / "call-1.ogg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ogg)
    point = await Point.get(office__code="MSK-1", code="W1").select_related("office")
    anna = await Staff.get(code="ivanova")
    started = datetime.now(UTC) - timedelta(hours=2)
    conversation = await Conversation.create(
        kind=ConversationKind.CALL, office_id=point.office.id, point_id=point.id, staff=anna, started_at=started,
        ended_at=started + timedelta(seconds=3), audio_path=str(path), codec="opus", size_bytes=len(ogg), digest="call-1",
        received_at=started, keep_until=started + timedelta(days=30), speech_status=SpeechStatus.DONE,
        transcript="Здравствуйте! Не знаю.", transcript_segments=[[0.3, 1.2, "Здравствуйте!"], [1.5, 2.4, "Не знаю."]],
        rule_hits={"forbidden": [{"rule": "не знаю", "word": "Не знаю", "at": 1.5}],
                   "required": {"greeting": [{"rule": "здравствуйте", "word": "Здравствуйте", "at": 0.3}]}, "missing": []},
    )
    local = started.astimezone()
    await SampleItem.create(month=date(local.year, local.month, 1), staff=anna, office_id=point.office.id,
                            conversation=conversation, created_at=started)
    return conversation, ogg


async def test_a_specialist_scores_a_call_criterion_by_criterion_across_a_restart(harness: Harness) -> None:
    from tests.speech_samples import desk_clip

    emu = harness.emulator
    emu.add_user(QUALITY, "Елена")
    next(o for o in harness.org["offices"] if o["code"] == "MSK-1")["speech_rules"] = RULES
    elena = Specialist(emu)
    await harness.start(audio_dir=harness.tmp_path / "audio")
    try:
        await import_checklists(load_checklists_file(CHECKLISTS))
        conversation, ogg = await seed_call(harness)

        await emu.user_message(QUALITY, QUALITY, "/score")
        voice = await emu.wait_for(lambda: next((m for m in emu.bot_messages(QUALITY) if "voice" in m), None), what="the voice")
        assert emu.file_bytes(voice["voice"]["file_id"]) == ogg
        assert f"Разговор #{conversation.id}" in voice["caption"] and "Анна Иванова" in voice["caption"]
        transcript = await emu.wait_for_bot_message(QUALITY, contains="Расшифровка разговора")
        assert "[00:00] Здравствуйте!" in transcript["text"] and "❗Не знаю" in transcript["text"]
        assert {e["type"] for e in transcript.get("entities", [])} >= {"bold", "underline"}  # hits highlighted
        form = await emu.wait_for_bot_message(QUALITY, contains="Критерий 1 из 12")
        assert form["message_id"] > transcript["message_id"] > voice["message_id"]
        assert "По расшифровке: Да" in form["text"]  # the greeting was heard
        form_id = form["message_id"]

        m = await elena.press(form_id, "Да")  # 1 hello (automatic yes, confirmed)
        assert "Критерий 2 из 12" in m["text"] and "Н/П" not in str(m["reply_markup"])  # no N/A for criterion 2
        m = await elena.press(form_id, "Нет")  # 2 introduced
        assert "Н/П" in str(m["reply_markup"])  # criterion 3 allows it
        m = await elena.press(form_id, "Н/П")  # 3 client_name
        assert "Критерий 4 из 12" in m["text"] and "Текущий балл: 25 %" in m["text"]  # greeting 1/2, polite (auto) no
        await elena.comment(form_id, "💬 Комментарий", "Вопросы были закрытые")
        m = await elena.press(form_id, "Нет")  # 4 open_questions
        assert "Критерий 5 из 12" in m["text"]
        stale = elena.form(form_id)

        # the service restarts in the middle of the form
        await harness.stop_all()
        await harness.start(audio_dir=harness.tmp_path / "audio")

        newest = max(x["message_id"] for x in emu.messages(QUALITY))
        await emu.user_message(QUALITY, QUALITY, "/score")
        await emu.wait_for_bot_message(QUALITY, contains="Продолжаем незаконченную форму", newer_than=newest)
        form = await emu.wait_for_bot_message(QUALITY, contains="Критерий 5 из 12", newer_than=newest)
        assert not any("voice" in x for x in emu.bot_messages(QUALITY) if x["message_id"] > newest)  # sent once
        old_id, form_id = form_id, form["message_id"]
        await emu.wait_for(lambda: "reply_markup" not in elena.form(old_id), what="the old copy's buttons removed")
        refusal = await elena.alert(old_id, find_button(stale, "Да"))  # a replayed button of the old copy
        assert "Форма изменилась" in refusal
        assert (await Score.get(conversation_id=conversation.id)).position == 4

        m = await elena.press(form_id, "⏭ К разделу…")
        m = await elena.press(form_id, "▫️ Завершение и этика 1/3")
        assert "Критерий 10 из 12" in m["text"]
        await elena.press(form_id, "Да")  # 10 correct_terms
        m = elena.form(form_id)
        assert "По расшифровке: Нет" in m["text"]  # 11 polite: a forbidden word was heard
        m = await elena.press(form_id, "Да")  # overridden by hand
        m = await elena.press(form_id, "⬅️ Назад")
        assert "изменён вручную; автоматически: Нет" in m["text"]
        await elena.press(form_id, "➡️ Дальше")
        m = await elena.press(form_id, "Да")  # 12 goodbye → the summary, with 5..9 unanswered
        assert "Критериев без ответа: 5 (первый — № 5)" in m["text"]
        assert "Отправить" not in str(m["reply_markup"])
        m = await elena.press(form_id, "➡️ К первому без ответа")
        assert "Критерий 5 из 12" in m["text"]
        for label in ("Да", "Да", "Да", "Н/П", "Да"):  # 5 summarised · 6 loyalty_card · 7 benefits · 8 promotion · 9 objections
            m = await elena.press(form_id, label)
        for _ in range(3):  # 10, 11 and 12 are answered: on to the summary
            m = await elena.press(form_id, "➡️ Дальше")
        # greeting 1/2 · needs 2/4 · offer 4/4 · closing 4/4 → 10 + 15 + 30 + 20
        assert "Итог: проверьте и отправьте" in m["text"] and "Итого: 75 %" in m["text"]
        await elena.comment(form_id, "💬 Комментарий к форме", desk_clip([0.2, "Хорошо", 0.2], "ru", fmt="ogg"))
        summary = elena.form(form_id)
        assert "Комментарий: (голосовое сообщение)" in summary["text"]

        # a double tap on Submit: both presses reach the bot before its edit
        submit = find_button(summary, "Отправить")
        taps = [await emu.press_button(QUALITY, QUALITY, form_id, submit), await emu.press_button(QUALITY, QUALITY, form_id, submit)]
        await emu.wait_for(lambda: sum(a["id"] in taps for a in emu.answered_callbacks) == 2, what="both taps answered")
        answers = sorted((a for a in emu.answered_callbacks if a["id"] in taps), key=lambda a: a["show_alert"])
        assert answers[0]["text"] == "Отправлено." and not answers[0]["show_alert"]
        assert answers[1]["show_alert"] and ("уже отправлена" in answers[1]["text"] or "Форма изменилась" in answers[1]["text"])
        done = await emu.wait_for(lambda: "Отправлено: 75 %" in (elena.form(form_id).get("text") or "") and elena.form(form_id),
                                  what="the submitted form")
        assert "Исправить (24 ч)" in str(done["reply_markup"])

        feedback = await emu.wait_for_bot_message(ANNA, contains="оценён", timeout=15)
        text = feedback["text"]
        assert "Стандарт продаж у стойки: 75 %" in text
        assert "Представился, назвал своё имя" in text
        assert "Задал открытые вопросы о цели визита — 💬 Вопросы были закрытые" in text
        assert "Комментарий: (голосовое сообщение)" in text and "Поздоровался первым" not in text
        await asyncio.sleep(0.5)  # a second feedback would have been sent by now
        assert len([x for x in emu.bot_messages(ANNA) if "оценён" in (x.get("text") or "")]) == 1
        assert await OutboxMessage.filter(chat_id=ANNA).count() == 1

        score = await Score.get(conversation_id=conversation.id)
        assert score.status == ScoreStatus.SUBMITTED and score.result == 75.0
        assert score.answers["polite"]["value"] == "yes" and score.answers["polite"]["auto"] == "no"
        assert score.answers["open_questions"]["comment"] == "Вопросы были закрытые"
        assert (await SampleItem.get(conversation_id=conversation.id)).status == SampleStatus.DONE
        assert all(len(b["callback_data"].encode()) <= 64 for b in (
            b for x in emu.bot_messages(QUALITY) for row in x.get("reply_markup", {}).get("inline_keyboard", []) for b in row))

        # the KPI: the office's manager sees the score in /report, and Anna sees hers with /me
        await emu.user_message(5002, 5002, "/report office MSK-1 month")
        report = await emu.wait_for_bot_message(5002, contains="Соблюдение стандарта продаж", timeout=20)
        assert "Соблюдение стандарта продаж: 75 % (оценено разговоров: 1)" in report["text"]
        await emu.user_message(ANNA, ANNA, "/me month")
        await emu.wait_for(
            lambda: any("75 %" in (m.get("text") or "") and "оценён" not in (m.get("text") or "")
                        for m in emu.bot_messages(ANNA)), timeout=20, what="/me with the score",
        )
    finally:
        await harness.stop_all()


async def test_strangers_other_roles_and_forged_buttons_are_refused(harness: Harness) -> None:
    emu = harness.emulator
    emu.add_user(QUALITY, "Елена")
    elena = Specialist(emu)
    await harness.start(audio_dir=harness.tmp_path / "audio")
    try:
        await import_checklists(load_checklists_file(CHECKLISTS))
        conversation, _ogg = await seed_call(harness)
        await emu.user_message(ANNA, ANNA, "/score")
        refused = await emu.wait_for_bot_message(ANNA, contains="только для службы качества")
        assert await Score.all().count() == 0

        await emu.user_message(QUALITY, QUALITY, "/score")
        form = await emu.wait_for_bot_message(QUALITY, contains="Критерий 1 из 12")
        yes = find_button(form, "Да")
        for _ in range(100):  # the form is sent first, then stored as the form (revision + 1)
            before = await Score.get(conversation_id=conversation.id)
            if before.message_id == form["message_id"]:
                break
            await asyncio.sleep(0.05)
        # the same button pressed by someone else, a forged score id, a forged revision, garbage
        assert "только для службы качества" in await elena.alert(refused["message_id"], yes, user=ANNA)  # from her chat
        _prefix, action, score_id, revision, index = yes.split(":")
        assert "не ваша" in await elena.alert(form["message_id"], f"sc:{action}:{int(score_id) + 1}:{revision}:{index}")
        assert "Форма изменилась" in await elena.alert(form["message_id"], f"sc:{action}:{score_id}:{int(revision) - 1}:{index}")
        assert "Форма изменилась" in await elena.alert(form["message_id"], "sc:y:not-a-number")
        assert "Форма изменилась" in await elena.alert(form["message_id"], f"sc:zz:{score_id}:{revision}:0")
        after = await Score.get(conversation_id=conversation.id)
        assert (after.revision, after.answers, after.position) == (before.revision, before.answers, before.position)
        assert elena.form(form["message_id"])["text"] == form["text"]
    finally:
        await harness.stop_all()
