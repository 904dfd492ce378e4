"""Clocks: the fake one lets tests jump past deadlines without waiting."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.clock import Clock, FakeClock, SystemClock

START = datetime(2024, 5, 15, 9, 0, tzinfo=UTC)


async def settle() -> None:
    """Give woken tasks a few loop turns to run."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(START), Clock)


def test_system_clock_now_is_utc_aware() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


async def test_system_clock_sleeps_for_real() -> None:
    before = time.monotonic()
    await SystemClock().sleep(0.01)
    await SystemClock().sleep(-1)  # a deadline already past does not raise
    assert time.monotonic() - before >= 0.009


def test_fake_clock_reports_utc_even_from_another_zone() -> None:
    clock = FakeClock(datetime(2024, 5, 15, 12, 0, tzinfo=ZoneInfo("Europe/Moscow")))
    assert clock.now() == START and clock.now().tzinfo is UTC


def test_fake_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2024, 5, 15, 9, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(START).set(datetime(2024, 5, 16))


def test_advance_and_set_move_now() -> None:
    clock = FakeClock(START)
    clock.advance(90)
    assert clock.now() == START + timedelta(seconds=90)
    clock.advance(timedelta(hours=1))
    assert clock.now() == START + timedelta(hours=1, seconds=90)
    clock.set(START + timedelta(days=2))
    assert clock.now() == START + timedelta(days=2)


def test_fake_clock_does_not_go_back() -> None:
    clock = FakeClock(START)
    with pytest.raises(ValueError, match="go back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="go back"):
        clock.set(START - timedelta(seconds=1))


async def test_sleeper_wakes_only_when_its_deadline_is_reached() -> None:
    clock = FakeClock(START)
    task = asyncio.create_task(clock.sleep(10))
    await settle()
    assert clock.sleepers == 1 and clock.next_deadline == START + timedelta(seconds=10)
    clock.advance(9.5)
    await settle()
    assert not task.done()
    clock.advance(0.5)
    await settle()
    assert task.done() and clock.sleepers == 0


async def test_set_wakes_sleepers_whose_deadline_passed() -> None:
    clock = FakeClock(START)
    short = asyncio.create_task(clock.sleep(60))
    long = asyncio.create_task(clock.sleep(3600))
    await settle()
    clock.set(START + timedelta(minutes=30))
    await settle()
    assert short.done() and not long.done()
    clock.set(START + timedelta(hours=2))
    await settle()
    assert long.done()


async def test_sleepers_wake_in_deadline_order() -> None:
    clock = FakeClock(START)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 30), ("a", 10), ("b", 20), ("a2", 10)]]
    await settle()
    clock.advance(60)
    await asyncio.gather(*tasks)
    assert woke == ["a", "a2", "b", "c"]


async def test_a_long_fake_sleep_takes_no_real_time() -> None:
    clock = FakeClock(START)
    before = time.monotonic()
    task = asyncio.create_task(clock.sleep(86_400))
    await settle()
    clock.advance(timedelta(days=1))
    await asyncio.wait_for(task, timeout=1)
    assert time.monotonic() - before < 1


async def test_sleep_zero_yields_once_without_waiting_for_the_clock() -> None:
    clock = FakeClock(START)
    ran: list[bool] = []

    async def other() -> None:
        ran.append(True)

    asyncio.create_task(other())
    await clock.sleep(0)
    assert ran  # the other task got its turn
    assert clock.sleepers == 0 and clock.now() == START
    await clock.sleep(-5)  # negative is treated as zero


async def test_cancelled_sleeper_is_forgotten() -> None:
    clock = FakeClock(START)
    task = asyncio.create_task(clock.sleep(10))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0 and clock.next_deadline is None
    clock.advance(20)  # waking a cancelled sleeper must not raise


async def test_a_loop_driven_by_the_fake_clock_sees_time_pass() -> None:
    """The shape services use: sleep until the next check, then look at now()."""
    clock = FakeClock(START)
    seen: list[datetime] = []

    async def reminder_loop() -> None:
        for _ in range(3):
            await clock.sleep(60)
            seen.append(clock.now())

    task = asyncio.create_task(reminder_loop())
    for _ in range(3):
        await settle()
        clock.advance(60)
    await asyncio.wait_for(task, timeout=1)
    assert seen == [START + timedelta(minutes=m) for m in (1, 2, 3)]
