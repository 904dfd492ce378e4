"""Telegram misbehaves (429 with retry_after, 500s): every negative still reaches the group once.

In-process through the Harness: the real service (outbox, ingest, rating service) against the
Bot API emulator, which enforces the per-group limit (20 messages a minute) and can answer
sends with injected 429s and 500s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiomqtt
import pytest

from bot.app import App
from bot.models import NegativeCase
from tests.e2e.conftest import STAFF_CHAT, Harness
from tests.telegram_emulator import BotApiEmulator, RequestRecord

pytestmark = pytest.mark.timeout(90)

CASE_ID = re.compile(r"#(\d+)\b")
POINTS = ("W1", "W2", "W3", "W4")


# --------------------------------------------------------------------------- helpers


def case_ids_by_message(emu: BotApiEmulator, chat_id: int = STAFF_CHAT) -> dict[int, set[int]]:
    """Bot messages of the chat (edits applied) → the case ids they show as ``#<id>``."""
    return {m["message_id"]: {int(x) for x in CASE_ID.findall(m.get("text") or "")} for m in emu.bot_messages(chat_id)}


def posted_case_ids(emu: BotApiEmulator, chat_id: int = STAFF_CHAT) -> Counter[int]:
    """How many distinct messages show each case id."""
    counts: Counter[int] = Counter()
    for ids in case_ids_by_message(emu, chat_id).values():
        counts.update(ids)
    return counts


def sends_to(emu: BotApiEmulator, chat_id: int = STAFF_CHAT) -> list[RequestRecord]:
    return [r for r in emu.requests_log if r.method.lower() == "sendmessage" and str(r.params.get("chat_id")) == str(chat_id)]


async def publish_negatives(harness: Harness, prefix: str, n: int, spacing: float) -> None:
    """``n`` bad native ratings from the org's native button, spread over MSK-1/W1..W4."""
    device = harness.device("native")["id"]
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"pub-{uuid.uuid4().hex[:8]}") as client:
        for i in range(n):
            payload = {"id": f"{prefix}-{i}", "ts": datetime.now(UTC).isoformat(), "device": device, "value": "bad"}
            await client.publish(f"{harness.root}/MSK-1/{POINTS[i % len(POINTS)]}/rating", json.dumps(payload).encode(), qos=1)
            await asyncio.sleep(spacing)


@contextlib.asynccontextmanager
async def running(harness: Harness) -> AsyncIterator[App]:
    """Start the service and stop it inside the test itself.

    Tortoise keeps its connections in a context variable; the ``harness`` fixture's teardown
    runs in another context, so its ``stop_all`` cannot close the aiosqlite connection opened
    by ``App.start`` here, and that connection's non-daemon thread keeps pytest from exiting.
    Stopping in the test's own context closes it.
    """
    app = await harness.start()
    try:
        yield app
    finally:
        await harness.stop_all()


async def wait_posted(emu: BotApiEmulator, n: int, timeout: float, what: str) -> None:
    await emu.wait_for(lambda: len(posted_case_ids(emu)) >= n, timeout=timeout, what=what)


# --------------------------------------------------------------------------- tests


async def test_429_and_500_windows_every_negative_posted_once_within_the_group_limit(harness: Harness) -> None:
    emu = harness.emulator
    async with running(harness):
        # Phase 1: Telegram answers every send with 429 (retry_after=1) for 4 s while negatives arrive.
        emu.fail_for(4, status=429, retry_after=1)
        await publish_negatives(harness, "flood", 15, spacing=0.15)
        await wait_posted(emu, 15, timeout=30, what="15 negatives posted after the 429 window")

        # Phase 2: a 3 s outage (500) while more negatives arrive.
        emu.fail_for(3, status=500)
        await publish_negatives(harness, "outage", 15, spacing=0.15)
        await wait_posted(emu, 30, timeout=40, what="30 negatives posted after the 500 window")
        await asyncio.sleep(1.0)  # anything sent twice would show up now

        cases = set(await NegativeCase.all().values_list("id", flat=True))
        assert len(cases) == 30
        counts = posted_case_ids(emu)
        assert set(counts) == cases, f"posted {sorted(counts)} != cases {sorted(cases)}\n{emu.dump()}"
        repeated = {case: n for case, n in counts.items() if n != 1}
        assert not repeated, f"case ids shown in more than one message: {repeated}\n{emu.dump()}"

        texts = Counter(m.get("text") for m in emu.bot_messages(STAFF_CHAT))
        assert all(n == 1 for n in texts.values()), f"duplicated message texts: {[t for t, n in texts.items() if n > 1]}"
        assert emu.limit_violations == 0, "the service exceeded the per-group limit (the emulator answered 429 on its own)"

        statuses = Counter(r.status for r in sends_to(emu))
        assert statuses[429] >= 1, f"no 429 was answered: {statuses}"
        assert statuses[500] >= 1, f"no 500 was answered: {statuses}"
        assert statuses[200] == len(emu.bot_messages(STAFF_CHAT))
        # 429 retries are paced by retry_after (1 s), not hammered: ~4 attempts in a 4 s window.
        assert statuses[429] <= 8, f"too many attempts during the 429 window: {statuses}"
        print(f"\nsends to the group: {dict(statuses)}; {len(emu.bot_messages(STAFF_CHAT))} messages for 30 negatives")


async def test_a_single_429_is_retried_after_retry_after(harness: Harness) -> None:
    emu = harness.emulator
    retry_after = 2
    async with running(harness):
        emu.fail_next(1, status=429, retry_after=retry_after)
        await publish_negatives(harness, "single", 1, spacing=0)
        post = await emu.wait_for_bot_message(STAFF_CHAT, contains="#", timeout=15)

        sends = sends_to(emu)
        assert [r.status for r in sends] == [429, 200], f"expected one 429 then one success: {[(r.status, r.description) for r in sends]}"
        failed_at = sends[0].at
        sent = [s for s in emu.sent_log if s.chat_id == STAFF_CHAT and s.message_id == post["message_id"]]
        assert len(sent) == 1
        waited = sent[0].at - failed_at
        assert waited >= retry_after, f"retried after {waited:.2f} s, Telegram asked for {retry_after} s"
        assert waited < retry_after + 5, f"retried only after {waited:.2f} s"
        case = await NegativeCase.get(message_id=post["message_id"])
        assert f"#{case.id}" in post["text"]
        assert len(emu.bot_messages(STAFF_CHAT)) == 1
