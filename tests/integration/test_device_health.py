"""Device health on a real database (SQLite and PostgreSQL): statuses stored by the ingest
side, alerts decided by DeviceHealthService on a fake clock, queued in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.device_health import DeviceHealthService
from bot.directory import Directory
from bot.models import Device, OutboxKind, OutboxMessage, Role, Staff
from bot.org import import_org, load_org_file
from bot.ratings import RatingService, Received
from bot.settings import load_settings
from bot.texts import Texts, make_i18n
from devices.contract import InboundMessage
from devices.routing import TopicRouter

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
TUE_1200 = datetime(2026, 11, 24, 12, 0, tzinfo=MSK)
MANAGER_CHAT = -1001000000002
ADMIN = 5201  # the fixture admin, language en


class World:
    def __init__(self, clock: FakeClock, ratings: RatingService, health: DeviceHealthService, router: TopicRouter) -> None:
        self.clock, self.ratings, self.health, self.router = clock, ratings, health, router

    async def publish(self, topic: str, payload: bytes, retained: bool = False) -> None:
        message = InboundMessage(topic, payload, retained, self.clock.now())
        await self.ratings.store_batch([Received(message, self.router.parse(message))])

    async def at(self, moment: datetime) -> int:
        """Move the clock, run one pass, return how many devices it reported."""
        self.clock.set(moment.astimezone(UTC))
        result = await self.health.run_once()
        return result.offline + result.online + result.battery_low + result.battery_ok

    async def after(self, seconds: float) -> int:
        return await self.at(self.clock.now() + timedelta(seconds=seconds))


async def texts(chat_id: int) -> list[str]:
    return list(await OutboxMessage.filter(chat_id=chat_id, kind=OutboxKind.TEXT).order_by("id").values_list("text", flat=True))


async def make_world(start: datetime) -> World:
    await import_org(load_org_file(ORG))
    directory = await Directory.load()
    clock = FakeClock(start.astimezone(UTC))
    settings = load_settings()
    text = Texts(make_i18n())
    ratings = RatingService(settings, clock, text, lambda: directory)
    health = DeviceHealthService(settings, clock, text, lambda: directory)
    router = TopicRouter("loyalty/v1", directory.devices, directory.points.keys())
    return World(clock, ratings, health, router)


@pytest.fixture
async def world(database: str) -> World:
    return await make_world(TUE_1200)


OFFLINE = ("loyalty/v1/MSK-1/btn-17/status", b"offline")
ONLINE = ("loyalty/v1/MSK-1/btn-17/status", b"online")


async def test_offline_in_working_hours_alerts_once_after_the_grace(world: World) -> None:
    await world.publish(*ONLINE, retained=True)
    await world.after(60)
    await world.publish(*OFFLINE, retained=True)
    assert await world.after(119) == 0  # 1:59 offline: not yet
    assert await world.after(2) == 1
    assert await world.after(600) == 0  # still offline: nothing more
    manager, admin = await texts(MANAGER_CHAT), await texts(ADMIN)
    assert len(manager) == 1 and len(admin) == 1
    assert "btn-17" in manager[0] and "Окно 1" in manager[0] and "не в сети с 24.11.2026 12:01" in manager[0]
    assert "MSK-1" in manager[0]
    assert "is offline since 24.11.2026 12:01" in admin[0]  # the admin reads English
    device = await Device.get(id="btn-17")
    assert device.online is False and device.offline_alerted is True


async def test_a_30_second_blip_is_not_reported(world: World) -> None:
    await world.publish(*ONLINE)
    await world.publish(*OFFLINE)
    await world.after(30)
    await world.publish(*ONLINE)
    for _ in range(5):
        assert await world.after(120) == 0
    assert await OutboxMessage.all().count() == 0
    assert (await Device.get(id="btn-17")).offline_since is None


async def test_flapping_every_few_seconds_never_floods(world: World) -> None:
    await world.publish(*ONLINE)
    for _ in range(30):
        await world.publish(*OFFLINE)
        assert await world.after(5) == 0
        await world.publish(*ONLINE)
        assert await world.after(5) == 0
    assert await OutboxMessage.all().count() == 0


async def test_offline_after_hours_waits_for_the_opening(database: str) -> None:
    world = await make_world(datetime(2026, 11, 24, 20, 30, tzinfo=MSK))  # closed since 20:00
    await world.publish(*OFFLINE, retained=True)
    assert await world.at(datetime(2026, 11, 24, 20, 40, tzinfo=MSK)) == 0
    assert await world.at(datetime(2026, 11, 25, 3, 0, tzinfo=MSK)) == 0
    assert await world.at(datetime(2026, 11, 25, 8, 59, tzinfo=MSK)) == 0
    assert await OutboxMessage.all().count() == 0
    assert await world.at(datetime(2026, 11, 25, 9, 0, tzinfo=MSK)) == 1  # the opening
    assert await world.at(datetime(2026, 11, 25, 9, 30, tzinfo=MSK)) == 0
    [alert] = await texts(MANAGER_CHAT)
    assert "не в сети с 24.11.2026 20:30" in alert


async def test_offline_after_hours_and_back_before_the_opening_is_never_reported(database: str) -> None:
    world = await make_world(datetime(2026, 11, 24, 22, 0, tzinfo=MSK))
    await world.publish(*OFFLINE)
    await world.at(datetime(2026, 11, 25, 2, 0, tzinfo=MSK))
    await world.publish(*ONLINE)
    assert await world.at(datetime(2026, 11, 25, 9, 0, tzinfo=MSK)) == 0
    assert await OutboxMessage.all().count() == 0


async def test_back_online_is_one_message(world: World) -> None:
    await world.publish(*OFFLINE)
    assert await world.after(180) == 1
    await world.publish(*ONLINE)
    assert await world.after(1) == 1
    assert await world.after(60) == 0
    manager = await texts(MANAGER_CHAT)
    assert len(manager) == 2 and "снова в сети" in manager[1] and "btn-17" in manager[1]
    assert "is back online" in (await texts(ADMIN))[1]
    device = await Device.get(id="btn-17")
    assert (device.online, device.offline_alerted, device.offline_since) == (True, False, None)


async def test_battery_alert_once_and_recovery_once_with_hysteresis(world: World) -> None:
    async def battery(level: int) -> None:
        await world.publish("loyalty/v1/MSK-1/btn-17/status", b'{"battery": %d}' % level)

    await battery(30)
    assert await world.after(1) == 0
    await battery(14)
    assert await world.after(1) == 1
    await battery(13)
    assert await world.after(1) == 0
    await battery(17)  # above 15, under 15 + 5: still the same low battery
    assert await world.after(1) == 0
    await battery(25)
    assert await world.after(1) == 1
    await battery(25)
    assert await world.after(1) == 0
    low, ok = await texts(MANAGER_CHAT)
    assert "заряд батареи 14 %, меньше 15 %" in low and "btn-17" in low and "Окно 1" in low
    assert "снова 25 % заряда" in ok
    assert len(await texts(ADMIN)) == 2


async def test_zigbee2mqtt_battery_from_a_press_alerts(world: World) -> None:
    await world.publish("zigbee2mqtt/desk2", b'{"action":"1_single","battery":14,"linkquality":98,"voltage":2700}')
    assert await world.after(1) == 1
    device = await Device.get(id="desk2-remote")
    assert device.battery == 14 and device.battery_alerted and device.last_seen == world.clock.now() - timedelta(seconds=1)
    [alert] = await texts(MANAGER_CHAT)
    assert "desk2-remote" in alert and "Окно 2" in alert


async def test_every_kind_goes_offline_and_is_reported(world: World) -> None:
    for topic, payload in (
        ("zigbee2mqtt/desk2/availability", b'{"state":"offline"}'),
        ("tele/desk3/LWT", b"Offline"),
        ("shellyplusi4-a8032ab1/online", b"false"),
    ):
        await world.publish(topic, payload, retained=True)
    assert await world.after(150) == 3
    [alert] = await texts(MANAGER_CHAT)  # one office, one pass: one message
    assert all(name in alert for name in ("desk2-remote", "desk3-tasmota", "desk4-shelly", "Окно 2", "Окно 3", "Окно 4"))


async def test_restart_replaying_a_retained_offline_does_not_alert_again(world: World) -> None:
    await world.publish(*OFFLINE, retained=True)
    assert await world.after(180) == 1
    since = (await Device.get(id="btn-17")).offline_since
    # the service restarts: Mosquitto hands the retained last will over again
    await world.after(3600)
    await world.publish(*OFFLINE, retained=True)
    assert await world.after(600) == 0
    device = await Device.get(id="btn-17")
    assert device.offline_since == since and device.last_seen is None  # retained: never a sighting
    assert len(await texts(MANAGER_CHAT)) == 1


async def test_first_seen_offline_at_start_alerts_once(world: World) -> None:
    assert (await Device.get(id="btn-17")).online is None
    await world.publish(*OFFLINE, retained=True)
    assert await world.after(121) == 1
    await world.publish(*OFFLINE, retained=True)
    assert await world.after(121) == 0
    assert len(await texts(MANAGER_CHAT)) == 1


async def test_a_battery_heartbeat_in_the_same_batch_does_not_hide_the_offline(world: World) -> None:
    now = world.clock.now()
    batch = []
    for payload in (b"online", b"offline", b'{"battery": 80}'):
        message = InboundMessage("loyalty/v1/MSK-1/btn-17/status", payload, False, now)
        batch.append(Received(message, world.router.parse(message)))
        now += timedelta(milliseconds=5)
    await world.ratings.store_batch(batch)
    device = await Device.get(id="btn-17")
    assert (device.online, device.battery) == (False, 80) and device.offline_since is not None


async def test_a_status_naming_another_site_is_ignored(world: World) -> None:
    await world.publish("loyalty/v1/EKB-1/btn-17/status", b"offline")
    assert (await Device.get(id="btn-17")).online is None


async def test_alerts_go_to_every_admin_and_the_manager_chat_once_each(world: World) -> None:
    await Staff.create(code="admin2", name="Второй админ", role=Role.ADMIN, telegram_id=MANAGER_CHAT)  # shares the chat
    await Staff.create(code="admin3", name="Без телеграма", role=Role.ADMIN)
    await world.publish(*OFFLINE)
    assert await world.after(121) == 1
    chats = sorted(await OutboxMessage.all().values_list("chat_id", flat=True))
    assert chats == sorted([MANAGER_CHAT, ADMIN])


async def test_device_list_for_admin_manager_and_staff(world: World) -> None:
    await world.publish("loyalty/v1/MSK-1/btn-17/status", b'{"battery": 87}')
    await world.publish("tele/desk3/LWT", b"Offline", retained=True)
    admin = await Staff.get(code="admin")
    manager = await Staff.get(code="kuznetsov")  # EKB-1
    staff = await Staff.get(code="ivanova")
    [listing] = await world.health.device_list(admin, "ru")
    assert "🏢 MSK-1" in listing and "🏢 EKB-1" in listing
    line = next(x for x in listing.split("\n") if "btn-17" in x)
    assert "Окно 1" in line and "🔋 87 %" in line and "последний сигнал 24.11.2026 12:00" in line
    tasmota = next(x for x in listing.split("\n") if "desk3-tasmota" in x)
    assert tasmota.startswith("🔴") and "не в сети с 24.11.2026 12:00" in tasmota and "сигналов не было" in tasmota
    [own] = await world.health.device_list(manager, "en")
    assert "EKB-1" in own and "MSK-1" not in own and "ekb-btn-1" in own and "state unknown" in own
    assert await world.health.device_list(staff, "ru") is None


async def test_device_list_splits_at_the_telegram_limit(world: World) -> None:
    point_id = (await Device.get(id="btn-17")).point_id  # type: ignore[attr-defined]
    for n in range(150):
        await Device.create(id=f"bulk-button-with-a-long-name-{n:03d}", kind="native", point_id=point_id, battery=50)
    admin = await Staff.get(code="admin")
    chunks = await world.health.device_list(admin, "ru")
    assert chunks is not None and len(chunks) > 1 and all(len(c) <= 4096 for c in chunks)
    joined = "\n".join(chunks)
    assert all(f"bulk-button-with-a-long-name-{n:03d}" in joined for n in range(150))


async def test_a_press_is_a_sighting_but_never_moves_last_seen_back(world: World) -> None:
    await world.publish("stat/desk3/RESULT", b'{"Button1":{"Action":"SINGLE"}}')
    pressed = world.clock.now()
    assert (await Device.get(id="desk3-tasmota")).last_seen == pressed
    await world.after(600)
    old = (pressed - timedelta(hours=1)).isoformat()
    await world.publish("loyalty/v1/MSK-1/W1/rating", b'{"id":"q-1","ts":"%s","device":"btn-17","value":"good"}' % old.encode())
    await world.publish("loyalty/v1/MSK-1/W1/rating", b'{"id":"q-2","ts":"%s","device":"btn-17","value":"good"}' % pressed.isoformat().encode())
    await world.publish("loyalty/v1/MSK-1/W1/rating", b'{"id":"q-3","ts":"%s","device":"btn-17","value":"good"}' % old.encode())
    assert (await Device.get(id="btn-17")).last_seen == pressed  # the queued older press did not move it back
    assert (await Device.get(id="btn-17")).online is None  # a press says nothing about the last will
