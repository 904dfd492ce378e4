"""Device health: telling the admins when a device goes offline or its battery runs low.

The ingest side only records what devices say (``RatingService._store_statuses`` keeps
``Device.online``/``offline_since``/``battery``/``last_seen``); this service decides, on the
scheduler's beat and with the injected clock, what is worth a message. The rules:

* **Offline.** One alert when a device has been offline for ``device_offline_grace_seconds``
  (default 2 minutes) *and* its office is open. An outage shorter than the grace (a flapping
  device, a Wi-Fi blip, a reboot) is never reported. A device that goes offline after closing
  is reported at the next opening if it is still offline then; one that is back before the
  opening is not reported at all. An office with no open day at all is treated as always open.
* **Back online.** One message when a device that was reported offline is online again,
  sent when noticed (also after hours: it only ever follows an alert that was sent).
  ``offline_alerted`` marks "the admins were told it is offline"; while it is set, going
  offline again is news to nobody, so a device flapping after its alert costs no messages
  until it has been reported back online.
* **Battery.** One alert when the battery is under ``battery_alert_percent`` (15 %) during
  working hours, no second one while it stays low (14 → 13 is silent), and one "battery
  OK" message once it is back at ``battery_alert_percent + 5`` or more (replaced or charged);
  the 5-point hysteresis keeps a reading that wobbles around 15 % from alerting again.
* **Service start.** Mosquitto replays every retained ``offline`` on subscribe. For a device
  already known offline that changes nothing (same ``offline_since``, already alerted or
  not). A device seen offline for the first time at start (unknown before, or online when the
  service stopped) counts as offline from that moment: one alert after the grace, in
  working hours, like any other outage.

**Who is told**: the office's ``manager_chat`` when set, plus every active admin with a
Telegram account in a private chat (their own language); each chat once, even when an
admin's private chat is also the manager chat. Messages go through the persisted outbox
(``OutboxMessage`` kind TEXT), so they survive restarts and respect Telegram's limits; the
devices of one office that change in the same pass share one message.

Every alert is claimed with a conditional UPDATE in the transaction that queues its
messages, so two passes or two instances never send it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from tortoise.transactions import in_transaction

from bot.clock import Clock, wait_first
from bot.directory import Directory, OfficeInfo
from bot.models import Device, OutboxKind, OutboxMessage, Role, Staff
from bot.settings import Settings
from bot.texts import Texts

__all__ = ["BATTERY_HYSTERESIS", "TELEGRAM_LIMIT", "DeviceHealthService", "HealthPass", "split_lines"]

log = logging.getLogger(__name__)

BATTERY_HYSTERESIS = 5
"""Points above the alert threshold a battery must reach to count as replaced."""
TELEGRAM_LIMIT = 4096
"""Characters in one Telegram text message."""

OFFLINE, ONLINE, BATTERY_LOW, BATTERY_OK = "offline", "online", "battery_low", "battery_ok"


@dataclass(slots=True)
class HealthPass:
    """What one pass claimed (devices) and queued (outbox rows)."""

    offline: int = 0
    online: int = 0
    battery_low: int = 0
    battery_ok: int = 0
    messages: int = 0


@dataclass(frozen=True, slots=True)
class _Change:
    kind: str  # OFFLINE | ONLINE | BATTERY_LOW | BATTERY_OK
    device_id: str
    device_kind: str
    point_name: str
    since: datetime | None = None
    battery: int | None = None


def split_lines(lines: Iterable[str], limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Join lines into messages of at most ``limit`` characters, breaking only between lines
    (a single line longer than the limit is cut, with an ellipsis)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        if len(line) > limit:
            line = line[: limit - 1] + "…"
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


class DeviceHealthService:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        texts: Texts,
        directory: Callable[[], Directory],
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._texts = texts
        self._directory = directory
        self._on_outbox = on_outbox
        self._interval = settings.scheduler_interval_seconds
        self._grace = timedelta(seconds=settings.device_offline_grace_seconds)
        self.battery_low = settings.battery_alert_percent
        self.battery_ok = min(100, settings.battery_alert_percent + BATTERY_HYSTERESIS)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("device health pass failed")
            await wait_first(self._clock.sleep(self._interval), stop.wait())

    # ------------------------------------------------------------------ alerts

    async def run_once(self) -> HealthPass:
        now = self._clock.now()
        directory = self._directory()
        result = HealthPass()
        candidates: dict[int, list[tuple[str, Device]]] = defaultdict(list)
        for kind, query in (
            (OFFLINE, Device.filter(online=False, offline_alerted=False, offline_since__lte=now - self._grace)),
            (ONLINE, Device.filter(online=True, offline_alerted=True)),
            (BATTERY_LOW, Device.filter(battery__lt=self.battery_low, battery_alerted=False)),
            (BATTERY_OK, Device.filter(battery__gte=self.battery_ok, battery_alerted=True)),
        ):
            for device in await query:
                point = directory.points_by_id.get(device.point_id)  # type: ignore[attr-defined]
                if point is None:
                    continue  # the org changed under us; the next snapshot knows
                if kind in (OFFLINE, BATTERY_LOW) and not self._open(point.office, now):
                    continue  # waits for the opening, if it is still true then
                candidates[point.office.id].append((kind, device))
        if not candidates:
            return result
        admins = await Staff.filter(role=Role.ADMIN, active=True, telegram_id__isnull=False).values_list(
            "telegram_id", "language"
        )
        for office_id, items in candidates.items():
            office = directory.offices[office_id]
            async with in_transaction():
                changes = [change for kind, device in items if (change := await self._claim(kind, device, directory))]
                if not changes:
                    continue
                rows = [
                    OutboxMessage(chat_id=chat_id, kind=OutboxKind.TEXT, text=text, next_attempt_at=now, created_at=now)
                    for chat_id, locale in self._recipients(office, admins)
                    for text in self.alert_texts(locale, office, changes)
                ]
                if rows:
                    await OutboxMessage.bulk_create(rows)
                else:
                    log.warning("device alerts for %s have nobody to go to: no manager chat, no admin", office.code)
            for change in changes:
                setattr(result, change.kind, getattr(result, change.kind) + 1)
            result.messages += len(rows)
        if result.messages:
            self._on_outbox()
        return result

    @staticmethod
    def _open(office: OfficeInfo, now: datetime) -> bool:
        return not office.hours.has_open_days or office.hours.is_open(now)

    async def _claim(self, kind: str, device: Device, directory: Directory) -> _Change | None:
        """The conditional UPDATE that makes this pass the only one to report the change."""
        if kind == OFFLINE:
            claimed = await Device.filter(
                id=device.id, online=False, offline_alerted=False, offline_since=device.offline_since
            ).update(offline_alerted=True)
        elif kind == ONLINE:
            claimed = await Device.filter(id=device.id, online=True, offline_alerted=True).update(offline_alerted=False)
        elif kind == BATTERY_LOW:
            claimed = await Device.filter(id=device.id, battery__lt=self.battery_low, battery_alerted=False).update(
                battery_alerted=True
            )
        else:
            claimed = await Device.filter(id=device.id, battery__gte=self.battery_ok, battery_alerted=True).update(
                battery_alerted=False
            )
        if not claimed:
            return None
        point = directory.points_by_id[device.point_id]  # type: ignore[attr-defined]
        return _Change(kind, device.id, device.kind, point.name, device.offline_since, device.battery)

    @staticmethod
    def _recipients(office: OfficeInfo, admins: list[tuple[int, str | None]]) -> list[tuple[int, str]]:
        """The manager chat in the office's language, then each admin privately in theirs."""
        chats: dict[int, str] = {}
        if office.manager_chat_id:
            chats[office.manager_chat_id] = office.language
        for telegram_id, language in admins:
            chats.setdefault(telegram_id, language or office.language)
        return list(chats.items())

    def alert_texts(self, locale: str, office: OfficeInfo, changes: list[_Change]) -> list[str]:
        """One message (HTML) for an office's changes in a pass; split if it is very long."""
        t = self._texts.t
        lines = [f"🏢 {escape(office.code)} · {escape(office.name)}"]
        for c in changes:
            params = {"point": escape(c.point_name), "device": escape(c.device_id), "kind": escape(c.device_kind)}
            if c.kind == OFFLINE:
                since = self._texts.local(c.since, office.tz) if c.since else "—"
                lines.append("📴 " + t(
                    locale, "{point}: device {device} ({kind}) is offline since {since}.", since=since, **params
                ))
            elif c.kind == ONLINE:
                lines.append("✅ " + t(locale, "{point}: device {device} ({kind}) is back online.", **params))
            elif c.kind == BATTERY_LOW:
                lines.append("🪫 " + t(
                    locale, "{point}: device {device} ({kind}) battery is at {battery} %, under {threshold} %: please replace or charge it.",
                    battery=c.battery, threshold=self.battery_low, **params,
                ))
            else:
                lines.append("🔋 " + t(
                    locale, "{point}: device {device} ({kind}) battery is at {battery} % again.", battery=c.battery, **params
                ))
        return split_lines(lines)

    # ------------------------------------------------------------------ /devices

    async def device_list(self, staff: Staff, locale: str) -> list[str] | None:
        """``/devices`` as plain-text messages: admins see every office, a manager their own;
        ``None`` for anyone else (the handler refuses politely)."""
        directory = self._directory()
        if staff.role == Role.ADMIN:
            offices = sorted(directory.offices.values(), key=lambda o: o.code)
        elif staff.role == Role.MANAGER and staff.office_id is not None:  # type: ignore[attr-defined]
            own = directory.offices.get(staff.office_id)  # type: ignore[attr-defined]
            offices = [own] if own else []
        else:
            return None
        t = self._texts.t
        by_office: dict[int, list[tuple[str, str, Device]]] = defaultdict(list)
        for device in await Device.filter(point__office_id__in=[o.id for o in offices]).order_by("id"):
            point = directory.points_by_id.get(device.point_id)  # type: ignore[attr-defined]
            if point is not None:
                by_office[point.office.id].append((point.code, point.name, device))
        lines: list[str] = []
        for office in offices:
            devices = sorted(by_office.get(office.id, ()), key=lambda item: (item[0], item[2].id))
            if lines:
                lines.append("")
            lines.append(f"🏢 {office.code} · {office.name}")
            if not devices:
                lines.append(t(locale, "No devices registered."))
            for _code, point_name, device in devices:
                lines.append(self._device_line(locale, office, point_name, device))
        if not lines:
            return [t(locale, "No devices registered.")]
        return split_lines(lines)

    def _device_line(self, locale: str, office: OfficeInfo, point_name: str, device: Device) -> str:
        t = self._texts.t
        if device.online is True:
            icon, state = "🟢", t(locale, "online")
        elif device.online is False:
            since = self._texts.local(device.offline_since, office.tz) if device.offline_since else "—"
            icon, state = "🔴", t(locale, "offline since {since}", since=since)
        else:
            icon, state = "⚪", t(locale, "state unknown")
        parts = [f"{icon} {device.id}", device.kind, point_name, state]
        if device.battery is not None:
            parts.append(f"{'🪫' if device.battery < self.battery_low else '🔋'} {device.battery} %")
        if device.last_seen is not None:
            parts.append(t(locale, "last seen {time}", time=self._texts.local(device.last_seen, office.tz)))
        else:
            parts.append(t(locale, "never seen"))
        return " · ".join(parts)
