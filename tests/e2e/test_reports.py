"""/report in two taps, shortcuts, exports, /me, /served and who may see what — through the real bot."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.models import Rating
from tests.e2e.conftest import Harness

MANAGER = 5002  # Олег Петров, MSK-1's manager
ANNA = 5001  # Анна Иванова, staff at MSK-1/W1 by the roster
PNG = b"\x89PNG\r\n\x1a\n"


def rating(event_id: str, value: str, device: str, ts: datetime) -> bytes:
    return json.dumps({"id": event_id, "ts": ts.isoformat(), "device": device, "value": value}).encode()


def button(message: dict, text: str) -> str:
    for row in message["reply_markup"]["inline_keyboard"]:
        for b in row:
            if text in b["text"]:
                return b["callback_data"]
    raise AssertionError(f"no button {text!r} in {message['reply_markup']}")


async def seed(harness: Harness) -> None:
    device = harness.device("native")["id"]
    now = datetime.now(UTC)
    values = ["good", "good", "good", "neutral", "bad", "good"]
    for n, value in enumerate(values):
        await harness.publish(f"{harness.root}/MSK-1/W2/rating", rating(f"rep-{n}", value, device, now - timedelta(minutes=30 * n)))
    for _ in range(100):
        if await Rating.all().count() == len(values):
            break
        await asyncio.sleep(0.1)
    assert await Rating.all().count() == len(values)


def photos_after(emu, chat: int, after: int) -> list[dict]:
    return [m for m in emu.bot_messages(chat) if m["message_id"] > after and "photo" in m]


async def test_a_manager_gets_figures_and_charts_in_two_taps(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    await seed(harness)

    await emu.user_message(MANAGER, MANAGER, "/report")
    periods = await emu.wait_for_bot_message(MANAGER, contains="за какой период")
    await emu.press_button(MANAGER, MANAGER, periods["message_id"], button(periods, "7 дней"))
    scopes = await emu.wait_for(
        lambda: (m := emu.message(MANAGER, periods["message_id"])) and "reply_markup" in m and "MSK-1" in str(m["reply_markup"]) and m,
        what="scope keyboard",
    )
    assert "EKB-1" not in str(scopes["reply_markup"])  # a manager sees their own office only
    await emu.press_button(MANAGER, MANAGER, periods["message_id"], button(scopes, "MSK-1"))
    summary = await emu.wait_for_bot_message(MANAGER, contains="Оценок: 6", timeout=20)
    text = summary["text"]
    assert "👍 4 · 😐 1 · 👎 1" in text
    assert "Удовлетворённость: 67 %" in text  # 4 / 6
    assert "Лайк-индекс: +50" in text  # (4 − 1) / 6 × 100
    assert "Индекс счастья: 75" in text  # (4·100 + 50) / 6
    assert "Обслужено клиентов: нет данных" in text
    album = await emu.wait_for(lambda: len(photos_after(emu, MANAGER, summary["message_id"])) >= 6 and photos_after(
        emu, MANAGER, summary["message_id"]), timeout=20, what="chart album")
    assert len({m["media_group_id"] for m in album}) == 1 and len(album) == 6  # the sixth: sales-standard compliance
    for message in album:
        assert emu.file_bytes(message["photo"][-1]["file_id"]).startswith(PNG)

    # the export button on the summary sends the period's ratings as CSV
    before = summary["message_id"]
    await emu.press_button(MANAGER, MANAGER, summary["message_id"], button(summary, "CSV"))
    document = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(MANAGER) if m["message_id"] > before and "document" in m), None),
        timeout=20, what="CSV document",
    )
    rows = list(csv.reader(io.StringIO(emu.file_bytes(document["document"]["file_id"]).decode("utf-8-sig")), delimiter=";"))
    assert rows[0][0] == "Дата и время" and len(rows) == 7
    assert sorted(r[4] for r in rows[1:]) == ["нейтрально", "плохо", "хорошо", "хорошо", "хорошо", "хорошо"]


async def test_shortcuts_served_clients_and_staff_limits(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    await seed(harness)
    today = datetime.now(ZoneInfo("Europe/Moscow")).date()

    await emu.user_message(MANAGER, MANAGER, f"/served MSK-1 {today.isoformat()} 12")
    await emu.wait_for_bot_message(MANAGER, contains="12")
    await emu.user_message(MANAGER, MANAGER, "/report office MSK-1 today")
    summary = await emu.wait_for_bot_message(MANAGER, contains="Обслужено клиентов: 12", timeout=20)
    assert "Отклик" in summary["text"]  # response rate = ratings of that day / 12

    await emu.user_message(MANAGER, MANAGER, "/report office EKB-1 7d")
    await emu.wait_for_bot_message(MANAGER, contains="Нет доступа к показателям")

    await emu.user_message(ANNA, ANNA, "/report 7d")
    await emu.wait_for_bot_message(ANNA, contains="/me")
    await emu.user_message(ANNA, ANNA, "/me 7d")
    mine = await emu.wait_for_bot_message(ANNA, contains="Анна Иванова", timeout=20)
    assert "Оценок: 0" in mine["text"]  # W2 is not hers: the ratings above belong to nobody
    # a forged button asking for the company's figures is refused
    forged = "rp:s:" + f"{today:%Y%m%d}-{today:%Y%m%d}" + ":c:"
    await emu.press_button(ANNA, ANNA, mine["message_id"], forged, forged=True)
    await emu.wait_for(
        lambda: any("Нет доступа" in (a["text"] or "") for a in emu.answered_callbacks), what="refusal alert"
    )
