"""A complaint reaches the complaint chat with the contact; «Взял в работу» and «Решено» edit its card."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.clock import FakeClock
from bot.models import Channel, Complaint, ComplaintStatus, Office, OutboxMessage, OutboxStatus, Point
from tests.e2e.conftest import MANAGER_CHAT, STAFF_CHAT, Harness

COMPLAINT_CHAT = -1001000000003
NAME, CONTACT = "Иван Клиентов", "+7 999 123-45-67"


def buttons(message: dict) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


async def test_complaint_card_taken_and_resolved_in_the_complaint_chat(harness: Harness) -> None:
    emu = harness.emulator
    emu.add_chat(COMPLAINT_CHAT, "supergroup", "MSK-1 жалобы")
    app = await harness.start()
    await Office.filter(code="MSK-1").update(complaint_chat_id=COMPLAINT_CHAT)  # until the org file names it
    await app.holder.reload()
    office = await Office.get(code="MSK-1")
    now = datetime.now(UTC)
    complaint = await Complaint.create(  # as the kiosk ingest stores it: open, not posted
        event_uid=f"kiosk:{harness.tag}:c1", office=office, point=await Point.get(office=office, code="W2"),
        channel=Channel.KIOSK, device_id="kiosk-1", text="Кассир нагрубил, жду звонка", customer_name=NAME,
        contact=CONTACT, consent=True, ts=now, local_date=now.date(), received_at=now,
    )
    assert app.complaints is not None
    app.complaints.wake()

    card = await emu.wait_for_bot_message(COMPLAINT_CHAT, contains="Жалоба")
    text = card["text"]
    assert f"#{complaint.id}" in text and "Кассир нагрубил, жду звонка" in text
    assert f"Клиент: {NAME}" in text and f"Контакт: {CONTACT}" in text
    assert "Окно 2" in text and "Ответить до:" in text and "Ещё никто не взял в работу" in text
    keys = buttons(card)
    assert list(keys) == ["🙋 Взял в работу", "✅ Решено"]
    for chat in (STAFF_CHAT, MANAGER_CHAT):  # nobody else hears of the customer
        assert not [m for m in emu.messages(chat) if CONTACT in str(m) or NAME in str(m)]

    # a stranger's press is refused politely and changes nothing
    query = await emu.press_button(COMPLAINT_CHAT, 7777, card["message_id"], keys["🙋 Взял в работу"])
    refusal = await emu.wait_for(lambda: next((a for a in emu.answered_callbacks if a["id"] == query), None))
    assert refusal["show_alert"] and "только с сотрудниками" in refusal["text"]
    assert (await Complaint.get(id=complaint.id)).status == ComplaintStatus.OPEN

    # the manager takes it
    query = await emu.press_button(COMPLAINT_CHAT, 5002, card["message_id"], keys["🙋 Взял в работу"])
    answer = await emu.wait_for(lambda: next((a for a in emu.answered_callbacks if a["id"] == query), None))
    assert answer["text"] == f"Жалоба №{complaint.id} теперь у вас в работе."
    taken = await emu.wait_for(
        lambda: (m := emu.message(COMPLAINT_CHAT, card["message_id"])) and "Взял в работу: Олег Петров" in m["text"] and m,
        what="the card edited with who took it",
    )
    assert CONTACT in taken["text"]  # still there for the handlers
    assert list(buttons(taken)) == ["✅ Решено"]

    # «Решено» asks for the resolution; the reply resolves it
    await emu.press_button(COMPLAINT_CHAT, 5002, card["message_id"], buttons(taken)["✅ Решено"])
    prompt = await emu.wait_for_bot_message(COMPLAINT_CHAT, contains="как решена жалоба")
    await emu.user_message(COMPLAINT_CHAT, 5002, "Позвонили клиенту, извинились, дали скидку", reply_to_message_id=prompt["message_id"])
    resolved = await emu.wait_for(
        lambda: (m := emu.message(COMPLAINT_CHAT, card["message_id"])) and "Решение:" in m["text"] and m,
        what="the card edited with the resolution",
    )
    assert "Решено: Олег Петров" in resolved["text"]
    assert "Решение: Позвонили клиенту, извинились, дали скидку" in resolved["text"]
    assert not buttons(resolved)
    await emu.wait_for_bot_message(COMPLAINT_CHAT, contains=f"Жалоба №{complaint.id} решена.")
    stored = await Complaint.get(id=complaint.id).select_related("resolved_by", "taken_by")
    assert stored.status == ComplaintStatus.RESOLVED and stored.resolved_by.code == "petrov" and stored.taken_by.code == "petrov"
    assert stored.resolution == "Позвонили клиенту, извинились, дали скидку"
    assert not [m for m in emu.messages(STAFF_CHAT) if CONTACT in str(m) or NAME in str(m)]
    assert await OutboxMessage.filter(status=OutboxStatus.FAILED).count() == 0


async def test_unanswered_complaint_is_chased_escalated_and_its_contact_erased_on_time(harness: Harness) -> None:
    msk = ZoneInfo("Europe/Moscow")
    tue = datetime(2026, 11, 24, 12, 0, tzinfo=msk)
    clock = FakeClock(tue.astimezone(UTC))

    async def settle(to: datetime) -> None:
        clock.set(to.astimezone(UTC))
        for _ in range(20):  # the complaint pass and the outbox run on real time
            await asyncio.sleep(0.05)

    emu = harness.emulator
    emu.add_chat(COMPLAINT_CHAT, "supergroup", "MSK-1 жалобы")
    app = await harness.start(clock=clock, complaint_contact_days=3)
    await Office.filter(code="MSK-1").update(complaint_chat_id=COMPLAINT_CHAT)
    await app.holder.reload()
    office = await Office.get(code="MSK-1")
    complaint = await Complaint.create(
        event_uid=f"kiosk:{harness.tag}:c2", office=office, channel=Channel.QR, text="Не перезвонили",
        customer_name=NAME, contact=CONTACT, consent=True, ts=tue, local_date=tue.date(), received_at=tue,
    )
    assert app.complaints is not None
    app.complaints.wake()
    card = await emu.wait_for_bot_message(COMPLAINT_CHAT, contains="Не перезвонили")
    assert "Ответить до: 26.11.2026 12:00" in card["text"] and CONTACT in card["text"]

    await settle(datetime(2026, 11, 25, 11, 50, tzinfo=msk))
    assert not [m for m in emu.bot_messages(COMPLAINT_CHAT) if m["text"].startswith("⏳ Коллеги")]
    await settle(datetime(2026, 11, 25, 12, 1, tzinfo=msk))
    reminder = await emu.wait_for_bot_message(COMPLAINT_CHAT, contains="ещё никто не взял в работу")
    assert reminder["reply_to_message"]["message_id"] == card["message_id"]
    assert emu.bot_messages(MANAGER_CHAT) == []

    await settle(datetime(2026, 11, 26, 12, 1, tzinfo=msk))
    escalation = await emu.wait_for_bot_message(MANAGER_CHAT, contains=f"Жалоба №{complaint.id}")
    assert "не решена до 26.11.2026 12:00" in escalation["text"] and "В работе у: никто" in escalation["text"]
    assert CONTACT not in escalation["text"] and NAME not in escalation["text"]
    await emu.wait_for(lambda: "Просрочено" in (emu.message(COMPLAINT_CHAT, card["message_id"]) or {}).get("text", ""))

    await settle(tue + timedelta(days=3, minutes=1))
    erased = await emu.wait_for(
        lambda: (m := emu.message(COMPLAINT_CHAT, card["message_id"])) and "контакт удалён по сроку хранения" in m["text"] and m,
        what="the card edited without the contact",
    )
    assert CONTACT not in erased["text"] and NAME not in erased["text"]
    stored = await Complaint.get(id=complaint.id)
    assert (stored.contact, stored.customer_name) == (None, None) and stored.contact_erased_at is not None
    assert len([m for m in emu.bot_messages(COMPLAINT_CHAT) if m["text"].startswith("⏳ Коллеги")]) == 1
    assert len(emu.bot_messages(MANAGER_CHAT)) == 1
