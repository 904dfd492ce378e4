"""Morning digests on a real database: when they go, to whom, once, and what comes first."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.digests import DigestService
from bot.directory import Directory
from bot.kpi import KpiService
from bot.models import OutboxMessage, Staff
from bot.org import import_org, load_org_file
from bot.ratings import RatingService, Received
from bot.reports import ReportService
from bot.settings import load_settings
from bot.texts import Texts, make_i18n
from devices.contract import InboundMessage, RatingEvent

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
SUN_1500 = datetime(2026, 11, 22, 15, 0, tzinfo=MSK)  # MSK-1 is closed on Sundays
MON_0859 = datetime(2026, 11, 23, 8, 59, tzinfo=MSK)
PETROV = 5002  # MSK-1's manager


def rating(uid: str, value: str, at: datetime, point: str = "W1") -> Received:
    message = InboundMessage(f"loyalty/v1/MSK-1/{point}/rating", b"{}", False, at)
    return Received(message, [RatingEvent(f"native:MSK-1:btn-17:{uid}", "MSK-1", point, "btn-17", value, at.astimezone(UTC))])


@pytest.fixture
async def world(database: str) -> tuple[DigestService, RatingService, FakeClock]:
    await import_org(load_org_file(ORG))
    directory = await Directory.load()
    clock = FakeClock(SUN_1500)
    texts = Texts(make_i18n())
    kpi = KpiService(clock)
    reports = ReportService(clock, texts, kpi)
    digests = DigestService(clock, texts, kpi, lambda: directory, reports.summary_text, time(9, 0), 60)
    ratings = RatingService(load_settings(), clock, texts, lambda: directory)
    return digests, ratings, clock


async def texts_to(chat_id: int) -> list[str]:
    return [t or "" for t in await OutboxMessage.filter(chat_id=chat_id).order_by("id").values_list("text", flat=True)]


async def test_the_monday_digest_lists_open_negatives_first_and_goes_once(world) -> None:
    digests, ratings, clock = world
    await ratings.store_batch([rating("1", "bad", SUN_1500), rating("2", "good", SUN_1500 + timedelta(minutes=5))])
    await ratings.store_batch([rating("3", "good", SUN_1500 - timedelta(days=2))])  # Friday: only in the weekly one
    assert await digests.run_once() == 0  # Sunday: a day off in both offices
    clock.set(MON_0859.astimezone(UTC))
    assert await digests.run_once() == 2  # 10:59 in Yekaterinburg: EKB-1's manager gets his two
    assert await texts_to(PETROV) == []  # 08:59 in Moscow: not yet
    clock.set((MON_0859 + timedelta(minutes=1)).astimezone(UTC))
    assert await digests.run_once() == 2  # daily and weekly, to MSK-1's one linked manager
    daily, weekly = await texts_to(PETROV)
    assert daily.startswith("🗞 <b>Утренняя сводка: MSK-1</b>")
    assert daily.index("без комментария: 1") < daily.index("Оценок: 2")  # what to act on comes first
    assert "#1 W1 · 22.11 15:00 · не определён" in daily  # nobody on the roster on Sundays
    assert "Оценок: 3" in weekly and "Недельная сводка" in weekly
    assert await digests.run_once() == 0  # claimed: never twice
    clock.set((MON_0859 + timedelta(days=1, minutes=1)).astimezone(UTC))
    assert await digests.run_once() == 2  # Tuesday: the daily one only, in each office
    assert "Оценок: 0" in (await texts_to(PETROV))[-1]


async def test_digest_off_stops_them_for_that_manager(world) -> None:
    digests, _, clock = world
    await digests.subscribe(await Staff.get(telegram_id=PETROV), False)
    clock.set((MON_0859 + timedelta(minutes=1)).astimezone(UTC))
    await digests.run_once()
    assert await texts_to(PETROV) == []


async def test_digest_time_off_sends_none(world) -> None:
    digests, ratings, clock = world
    assert load_settings(digest_time="off").digest_time is None
    assert load_settings(digest_time="08:30").digest_time == time(8, 30)
    off = DigestService(clock, Texts(make_i18n()), KpiService(clock), lambda: digests._directory(), lambda s, loc: "", None, 60)
    clock.set((MON_0859 + timedelta(minutes=1)).astimezone(UTC))
    assert await off.run_once() == 0
    assert await OutboxMessage.all().count() == 0
    assert await digests.run_once() == 4  # the same morning with digests on: both offices, daily and weekly
