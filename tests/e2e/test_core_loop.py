"""A press on each kind of real button reaches the office group; a reply becomes the comment."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from bot.models import NegativeCase, OutboxMessage, OutboxStatus, Rating
from tests.e2e.conftest import MANAGER_CHAT, STAFF_CHAT, Harness


def native_rating(event_id: str, value: str, device: str) -> bytes:
    return json.dumps(
        {"id": event_id, "ts": datetime.now(UTC).isoformat(), "device": device, "value": value}
    ).encode()


async def test_four_device_kinds_reach_the_group_and_a_reply_edits_the_post(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start(coalesce_after=10)  # four cards, not a summary, even on a slow machine
    # Anna takes W1 through the bot; the queue terminal names who serves at W2-W4
    await emu.user_message(5001, 5001, "/shift")
    keyboard = await emu.wait_for_bot_message(5001, contains="Где вы сейчас работаете?")
    w1 = next(b for row in keyboard["reply_markup"]["inline_keyboard"] for b in row if "W1" in b["text"])
    await emu.press_button(5001, 5001, keyboard["message_id"], w1["callback_data"])
    await emu.wait_for_bot_message(5001, contains="смена на месте «Окно 1» началась")
    now = datetime.now(UTC).isoformat()
    for point, staff in (("W2", "sidorov"), ("W3", "kozlova"), ("W4", "orlov")):
        presence = {"id": f"p-{point}", "ts": now, "state": "start", "ticket": f"A0{point[-1]}", "staff": staff}
        await harness.publish(f"{harness.root}/MSK-1/{point}/presence", json.dumps(presence).encode())

    native = harness.device("native")
    z2m, tasmota, shelly = harness.device("zigbee2mqtt"), harness.device("tasmota"), harness.device("shelly")
    await harness.publish(f"{harness.root}/MSK-1/W1/rating", native_rating("e-1", "bad", native["id"]))
    await harness.publish(z2m["topic"], b'{"action":"3_single","battery":100,"linkquality":98,"voltage":3000}')
    await harness.publish(z2m["topic"], b'{"action":""}')  # Home Assistant's reset: not a press
    await harness.publish(f"stat/{tasmota['topic']}/RESULT", b'{"Button3":{"Action":"SINGLE"}}', qos=0)
    shelly_event = {
        "src": shelly["topic"], "method": "NotifyEvent",
        "params": {"ts": time.time(), "events": [{"component": "input:2", "id": 2, "event": "single_push", "ts": time.time()}]},
    }
    await harness.publish(f"{shelly['topic']}/events/rpc", json.dumps(shelly_event).encode())

    expected = {"Окно 1": "Анна Иванова", "Окно 2": "Павел Сидоров", "Окно 3": "Ольга Козлова", "Окно 4": "Денис Орлов"}
    posts = await emu.wait_for(
        lambda: (m := [x for x in emu.bot_messages(STAFF_CHAT) if "Негативная оценка" in x.get("text", "")])
        and len(m) >= 4 and m,
        timeout=15,
        what="four negatives in the group",
    )
    assert len(posts) == 4
    for post in posts:
        text = post["text"]
        assert "MSK-1 · Москва, Тверская 1" in text
        point = next(p for p in expected if p in text)
        assert f"Сотрудник: {expected.pop(point)}" in text
        buttons = [b["text"] for row in post["reply_markup"]["inline_keyboard"] for b in row]
        assert buttons == ["💬 Комментарий"]
    assert expected == {}
    assert await Rating.filter(value="bad").count() == 4

    anna_post = next(p for p in posts if "Окно 1" in p["text"])
    await emu.user_message(STAFF_CHAT, 5001, "Клиент хотел вернуть товар без чека", reply_to_message_id=anna_post["message_id"])
    edited = await emu.wait_for(
        lambda: (m := emu.message(STAFF_CHAT, anna_post["message_id"])) and "Клиент хотел вернуть" in m["text"] and m,
        what="the post edited with the comment",
    )
    assert "Комментарий (Анна Иванова" in edited["text"]
    assert "reply_markup" not in edited or not edited["reply_markup"]
    await emu.wait_for_bot_message(STAFF_CHAT, contains="Комментарий сохранён.")
    case = await NegativeCase.get(message_id=anna_post["message_id"]).select_related("comment_by")
    assert case.comment_text == "Клиент хотел вернуть товар без чека"
    assert case.comment_by.code == "ivanova"
    assert case.comment_late is False
    assert emu.bot_messages(MANAGER_CHAT) == []


async def test_comment_button_prompts_and_the_answer_is_stored(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    native = harness.device("native")
    await emu.user_message(5001, 5001, "/shift")
    keyboard = await emu.wait_for_bot_message(5001, contains="Где вы сейчас работаете?")
    w1 = next(b for row in keyboard["reply_markup"]["inline_keyboard"] for b in row if "W1" in b["text"])
    await emu.press_button(5001, 5001, keyboard["message_id"], w1["callback_data"])
    await emu.wait_for_bot_message(5001, contains="началась")
    await harness.publish(f"{harness.root}/MSK-1/W1/rating", native_rating("b-1", "bad", native["id"]))
    post = await emu.wait_for_bot_message(STAFF_CHAT, contains="Негативная оценка")
    button = post["reply_markup"]["inline_keyboard"][0][0]
    await emu.press_button(STAFF_CHAT, 5001, post["message_id"], button["callback_data"])
    prompt = await emu.wait_for_bot_message(STAFF_CHAT, contains="напишите комментарий")
    await emu.user_message(STAFF_CHAT, 5001, "Очередь была 20 минут", reply_to_message_id=prompt["message_id"])
    await emu.wait_for(
        lambda: "Очередь была 20 минут" in (emu.message(STAFF_CHAT, post["message_id"]) or {}).get("text", ""),
        what="post edited",
    )
    assert await OutboxMessage.filter(status=OutboxStatus.FAILED).count() == 0


async def test_voice_reply_is_stored_as_the_comment(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    native = harness.device("native")
    await harness.publish(f"{harness.root}/MSK-1/W2/rating", native_rating("v-1", "bad", native["id"]))
    post = await emu.wait_for_bot_message(STAFF_CHAT, contains="Негативная оценка")
    assert "Сотрудник: не определён" in post["text"]  # nobody on shift, no roster at W2 now
    voice = b"OggS" + bytes(200)
    await emu.user_voice(STAFF_CHAT, 5003, voice, duration=4, reply_to_message_id=post["message_id"])
    edited = await emu.wait_for(
        lambda: (m := emu.message(STAFF_CHAT, post["message_id"])) and "голосовое сообщение" in m["text"] and m
    )
    assert "Комментарий (Павел Сидоров" in edited["text"]
    case = await NegativeCase.get(message_id=post["message_id"])
    assert case.comment_voice_file_id and case.comment_text is None
    assert emu.file_bytes(case.comment_voice_file_id) == voice
