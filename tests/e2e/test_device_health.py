"""Device health end to end: a retained last will through Mosquitto, alerts in the emulated
Telegram once the fake clock passes the grace, "back online", and /devices for the admin."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.clock import FakeClock
from bot.models import Device
from tests.e2e.conftest import MANAGER_CHAT, Harness

MSK = ZoneInfo("Europe/Moscow")
WED_1100 = datetime(2026, 11, 25, 11, 0, tzinfo=MSK)  # MSK-1 is open
ADMIN = 5201  # the fixture admin (English)


async def settle(clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    for _ in range(10):  # let the health pass and the outbox run on real time
        await asyncio.sleep(0.05)


async def until_device(device_id: str, check: Callable[[Device], bool], timeout: float = 10) -> Device:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        device = await Device.get(id=device_id)
        if check(device):
            return device
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"device {device_id} never reached the expected state: {device.__dict__}")
        await asyncio.sleep(0.05)


def alerts(emu: object, chat_id: int, device_id: str) -> list[str]:
    """Offline (📴) and back-online (✅) messages naming the device; /devices answers are not alerts."""
    texts = [m.get("text", "") for m in emu.bot_messages(chat_id)]  # type: ignore[attr-defined]
    return [t for t in texts if device_id in t and ("📴" in t or "✅" in t)]


async def test_retained_offline_alerts_once_then_back_online_and_devices_lists_it(harness: Harness) -> None:
    emu = harness.emulator
    clock = FakeClock(WED_1100.astimezone(UTC))
    await harness.start(clock=clock)
    device_id = harness.device("native")["id"]
    topic = f"{harness.root}/MSK-1/{device_id}/status"
    try:
        await harness.publish(topic, b'{"battery": 87}')
        await harness.publish(topic, b"offline", retain=True)  # the device's last will
        await until_device(device_id, lambda d: d.online is False and d.battery == 87)

        await settle(clock, 60)  # a minute offline: under the grace
        assert alerts(emu, MANAGER_CHAT, device_id) == [] and alerts(emu, ADMIN, device_id) == []

        await settle(clock, 90)
        manager = await emu.wait_for_bot_message(MANAGER_CHAT, contains=device_id)
        assert "Окно 1" in manager["text"] and "не в сети с 25.11.2026 11:00" in manager["text"]
        admin = await emu.wait_for_bot_message(ADMIN, contains=device_id)
        assert "Окно 1" in admin["text"] and "is offline since 25.11.2026 11:00" in admin["text"]
        await settle(clock, 600)
        await asyncio.sleep(0.3)
        assert len(alerts(emu, MANAGER_CHAT, device_id)) == 1 and len(alerts(emu, ADMIN, device_id)) == 1

        await emu.user_message(ADMIN, ADMIN, "/devices")
        listing = await emu.wait_for_bot_message(ADMIN, contains="🏢 MSK-1", newer_than=admin["message_id"])
        line = next(x for x in listing["text"].split("\n") if device_id in x)
        assert line.startswith("🔴") and "Окно 1" in line and "🔋 87 %" in line and "offline since 25.11.2026 11:00" in line

        await harness.publish(topic, b"online", retain=True)
        await until_device(device_id, lambda d: d.online is True)
        await settle(clock, 1)
        back = await emu.wait_for_bot_message(MANAGER_CHAT, contains="снова в сети")
        assert device_id in back["text"] and "Окно 1" in back["text"]
        await emu.wait_for_bot_message(ADMIN, contains="is back online")
        await settle(clock, 600)
        await asyncio.sleep(0.3)
        assert len(alerts(emu, MANAGER_CHAT, device_id)) == 2 and len(alerts(emu, ADMIN, device_id)) == 2
    finally:
        await harness.stop_all()
        await harness.publish(topic, b"", retain=True)  # clear the retained message from the broker


async def test_devices_is_refused_politely_to_staff_and_strangers(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    await emu.user_message(5001, 5001, "/devices")  # Anna, front staff
    refused = await emu.wait_for_bot_message(5001, contains="администраторам и руководителям")
    assert "🏢" not in refused["text"]
    await emu.user_message(7777, 7777, "/devices")
    await emu.wait_for_bot_message(7777, contains="ссылку-приглашение")
