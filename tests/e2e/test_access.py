"""Strangers, other offices and forged buttons are refused politely and change nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.callbacks import CommentCb
from bot.models import CommentPrompt, Invite, NegativeCase, Office, Shift, Staff
from tests.e2e.conftest import STAFF_CHAT, Harness

REFUSAL = "Извините, я работаю только с сотрудниками наших офисов"
STRANGER = 7777
EKB_STAFF = 5011


async def test_unknown_user_gets_a_refusal_for_bind_invite_and_shift(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    before = await Office.get(code="MSK-1")
    for command in ("/bind EKB-1", "/invite ivanova", "/shift"):
        await emu.user_message(STAFF_CHAT, STRANGER, command)
        await emu.wait_for(lambda: len([m for m in emu.bot_messages(STAFF_CHAT) if REFUSAL in m["text"]]) >= 1)
    await emu.user_message(STRANGER, STRANGER, "/shift")
    reply = await emu.wait_for_bot_message(STRANGER, contains=REFUSAL)
    assert "Traceback" not in reply["text"]
    await emu.wait_for(lambda: len([m for m in emu.bot_messages(STAFF_CHAT) if REFUSAL in m["text"]]) == 3)
    after = await Office.get(code="MSK-1")
    assert (after.staff_chat_id, after.manager_chat_id) == (before.staff_chat_id, before.manager_chat_id)
    assert await Office.filter(code="EKB-1", staff_chat_id=STAFF_CHAT).count() == 0
    assert await Invite.all().count() == 0
    assert await Shift.all().count() == 0


async def test_staff_cannot_bind_and_admin_can(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    emu.add_chat(-1009, "supergroup", "new group")
    await emu.user_message(-1009, 5001, "/bind MSK-1")
    await emu.wait_for_bot_message(-1009, contains="только администратор")
    assert (await Office.get(code="MSK-1")).staff_chat_id == STAFF_CHAT
    await emu.user_message(-1009, 5201, "/bind MSK-1")  # the admin's language is English
    await emu.wait_for_bot_message(-1009, contains="This group now receives the negatives of MSK-1")
    assert (await Office.get(code="MSK-1")).staff_chat_id == -1009


async def test_invite_link_binds_once(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    await Staff.filter(code="orlov").update(telegram_id=None)
    await emu.user_message(5002, 5002, "/invite orlov")  # Oleg is MSK-1's manager
    answer = await emu.wait_for_bot_message(5002, contains="https://t.me/loyalty_test_bot?start=inv_")
    token = answer["text"].split("start=")[1].split()[0]
    emu.add_user(8001, "Денис")
    await emu.user_message(8001, 8001, f"/start {token}")
    await emu.wait_for_bot_message(8001, contains="Добро пожаловать, Денис Орлов")
    assert (await Staff.get(code="orlov")).telegram_id == 8001
    emu.add_user(8002, "Someone")
    await emu.user_message(8002, 8002, f"/start {token}")
    await emu.wait_for_bot_message(8002, contains="недействительна")
    assert await Staff.filter(telegram_id=8002).count() == 0
    await emu.user_message(5001, 5001, "/invite orlov")  # plain staff may not invite
    await emu.wait_for_bot_message(5001, contains="Приглашать сотрудников может только")
    assert await Invite.all().count() == 1


async def test_other_office_and_forged_callbacks_are_refused(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    native = harness.device("native")
    rating = {"id": "acc-1", "ts": datetime.now(UTC).isoformat(), "device": native["id"], "value": "bad"}
    await harness.publish(f"{harness.root}/MSK-1/W1/rating", json.dumps(rating).encode())
    post = await emu.wait_for_bot_message(STAFF_CHAT, contains="Негативная оценка")
    case = await NegativeCase.get(message_id=post["message_id"])

    # a staff member of EKB-1 presses «Comment» on an MSK-1 negative
    await emu.press_button(STAFF_CHAT, EKB_STAFF, post["message_id"], CommentCb(case_id=case.id).pack())
    await emu.wait_for(lambda: any("не можете" in (a["text"] or "") for a in emu.answered_callbacks))
    # forged data: a case that does not exist, garbage, another prefix's shape
    for data in (CommentCb(case_id=999999).pack(), "cm:abc", "cm:", "sh:1:2:3"):
        await emu.press_button(STAFF_CHAT, 5001, post["message_id"], data, forged=True)
    await emu.wait_for(lambda: sum("не можете" in (a["text"] or "") for a in emu.answered_callbacks) >= 2)
    # a reply from the other office's employee is refused too
    await emu.user_message(STAFF_CHAT, EKB_STAFF, "это не я", reply_to_message_id=post["message_id"])
    await emu.wait_for(lambda: [m for m in emu.bot_messages(STAFF_CHAT) if "не можете" in m["text"]])

    case = await NegativeCase.get(id=case.id)
    assert case.comment_text is None and case.commented_at is None
    assert await CommentPrompt.all().count() == 0
    assert "Комментарий (" not in emu.message(STAFF_CHAT, post["message_id"])["text"]
