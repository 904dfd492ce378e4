"""A missed comment: one reminder at half-time, one escalation, counted in working hours."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.clock import FakeClock
from bot.models import NegativeCase
from tests.e2e.conftest import MANAGER_CHAT, STAFF_CHAT, Harness

MSK = ZoneInfo("Europe/Moscow")
WED_1955 = datetime(2026, 11, 25, 19, 55, tzinfo=MSK)  # the office closes at 20:00


async def settle(clock: FakeClock, to: datetime) -> None:
    clock.set(to.astimezone(UTC))
    for _ in range(20):  # let the scheduler pass and the outbox run on real time
        await asyncio.sleep(0.05)


async def test_late_negative_is_due_next_morning_with_one_reminder_and_one_escalation(harness: Harness) -> None:
    emu = harness.emulator
    clock = FakeClock(WED_1955.astimezone(UTC))
    await harness.start(clock=clock)
    native = harness.device("native")
    rating = {"id": "late-1", "ts": WED_1955.isoformat(), "device": native["id"], "value": "bad"}
    await harness.publish(f"{harness.root}/MSK-1/W1/rating", json.dumps(rating).encode())
    post = await emu.wait_for_bot_message(STAFF_CHAT, contains="Негативная оценка")
    assert "Сотрудник: Анна Иванова" in post["text"]  # from the roster: mon-sat 09:00-20:00 at W1
    assert "Прокомментировать до: 26.11.2026 09:25" in post["text"]

    case = await NegativeCase.get(message_id=post["message_id"])
    assert case.due_at.astimezone(MSK) == datetime(2026, 11, 26, 9, 25, tzinfo=MSK)
    assert case.remind_at.astimezone(MSK) == datetime(2026, 11, 26, 9, 10, tzinfo=MSK)

    await settle(clock, datetime(2026, 11, 26, 9, 0, tzinfo=MSK))  # the night does not count
    assert [m for m in emu.bot_messages(STAFF_CHAT) if "прокомментируйте" in m["text"]] == []

    await settle(clock, datetime(2026, 11, 26, 9, 11, tzinfo=MSK))
    reminder = await emu.wait_for_bot_message(STAFF_CHAT, contains="прокомментируйте")
    assert reminder["text"].startswith("Анна Иванова, прокомментируйте")
    assert any(e["type"] == "text_link" and e["url"] == "tg://user?id=5001" for e in reminder.get("entities", []))
    assert reminder["reply_to_message"]["message_id"] == post["message_id"]
    assert emu.bot_messages(MANAGER_CHAT) == []

    for moment in (datetime(2026, 11, 26, 9, 26, tzinfo=MSK), datetime(2026, 11, 26, 12, 0, tzinfo=MSK), datetime(2026, 11, 27, 9, 0, tzinfo=MSK)):
        await settle(clock, moment)
    escalation = await emu.wait_for_bot_message(MANAGER_CHAT, contains="не прокомментирована")
    assert "#%d" % case.id in escalation["text"] and "Анна Иванова" in escalation["text"]
    await asyncio.sleep(0.5)
    assert len([m for m in emu.bot_messages(STAFF_CHAT) if "прокомментируйте" in m["text"]]) == 1
    assert len(emu.bot_messages(MANAGER_CHAT)) == 1
    await emu.wait_for(lambda: "Просрочено" in (emu.message(STAFF_CHAT, post["message_id"]) or {}).get("text", ""))

    # a late comment is still recorded, and counted as late
    await emu.user_message(STAFF_CHAT, 5001, "Не успела: была на обучении", reply_to_message_id=post["message_id"])
    await emu.wait_for_bot_message(STAFF_CHAT, contains="после срока")
    case = await NegativeCase.get(id=case.id)
    assert case.comment_text == "Не успела: была на обучении"
    assert case.comment_late is True and case.overdue is True
    await emu.wait_for(lambda: "прокомментировано после срока" in (emu.message(STAFF_CHAT, post["message_id"]) or {}).get("text", ""))
