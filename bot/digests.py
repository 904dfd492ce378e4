"""Morning digests for office managers: yesterday every working day, last week on Mondays.

A digest is due when the office's local clock has passed ``DIGEST_TIME`` on a working day
and the office's ``daily_digest_on`` (``weekly_digest_on``) is not today yet. The date is
claimed with a conditional update, so two instances or a restart never send one twice. The
messages go through the outbox like everything else. Yesterday's negatives that are still not
commented come first: that is what the manager has to act on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from html import escape

from tortoise.transactions import in_transaction

from bot.clock import Clock, wait_first
from bot.directory import Directory, OfficeInfo
from bot.kpi import KpiService, KpiSummary, Period, Scope
from bot.models import NegativeCase, Office, OutboxKind, OutboxMessage, Role, Staff
from bot.texts import Texts

log = logging.getLogger(__name__)

MAX_LISTED = 20  # uncommented negatives listed one by one; the rest are counted


class DigestService:
    def __init__(
        self,
        clock: Clock,
        texts: Texts,
        kpi: KpiService,
        directory: Callable[[], Directory],
        summary_text: Callable[[KpiSummary, str], str],
        digest_time: time | None,  # None: no digests at all (DIGEST_TIME=off)
        interval_seconds: float,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._texts = texts
        self._kpi = kpi
        self._directory = directory
        self._summary_text = summary_text
        self._at = digest_time
        self._interval = interval_seconds
        self._on_outbox = on_outbox

    async def subscribe(self, staff: Staff, on: bool) -> None:
        await Staff.filter(id=staff.id).update(digests=on)

    async def run(self, stop: asyncio.Event) -> None:
        if self._at is None:
            log.info("DIGEST_TIME=off: no morning digests")
            return
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("digest pass failed")
            await wait_first(self._clock.sleep(self._interval), stop.wait())

    async def run_once(self) -> int:
        """Sends the digests that are due now; returns how many messages were queued."""
        if self._at is None:
            return 0
        now = self._clock.now()
        queued = 0
        for office in self._directory().offices.values():
            local = now.astimezone(office.tz)
            today = local.date()
            if local.time() < self._at or not office.hours.week[today.weekday()]:
                continue  # too early, or a day off: the digest waits for the next working morning
            row = await Office.get(id=office.id)
            if row.daily_digest_on != today:
                yesterday = today - timedelta(days=1)
                queued += await self._send(office, row.daily_digest_on, today, "daily_digest_on", Period(yesterday, yesterday), now)
            if today.weekday() == 0 and row.weekly_digest_on != today:
                week = Period(today - timedelta(days=7), today - timedelta(days=1))
                queued += await self._send(office, row.weekly_digest_on, today, "weekly_digest_on", week, now)
        if queued:
            self._on_outbox()
        return queued

    async def _recipients(self, office: OfficeInfo) -> list[tuple[int, str]]:
        managers = await Staff.filter(
            office_id=office.id, role=Role.MANAGER, active=True, digests=True, telegram_id__isnull=False
        ).values_list("telegram_id", "language")
        if managers:
            return [(int(chat), language or office.language) for chat, language in managers]
        # nobody has linked an account yet: the office's manager chat still hears about it
        bound = await Staff.filter(office_id=office.id, role=Role.MANAGER, telegram_id__isnull=False).exists()
        return [(office.manager_chat_id, office.language)] if office.manager_chat_id and not bound else []

    async def _send(self, office: OfficeInfo, claimed_before: date | None, today: date, field: str, period: Period,
                    now: datetime) -> int:
        recipients = await self._recipients(office)
        texts: dict[str, str] = {}
        for _, locale in recipients:
            if locale not in texts:
                texts[locale] = await self.text(office, period, locale, weekly=field == "weekly_digest_on")
        async with in_transaction():
            claimed = await Office.filter(id=office.id, **{field: claimed_before}).update(**{field: today})
            if not claimed:
                return 0  # another instance sent it
            for chat_id, locale in recipients:
                await OutboxMessage.create(
                    chat_id=chat_id, kind=OutboxKind.TEXT, text=texts[locale], next_attempt_at=now, created_at=now
                )
        return len(recipients)

    async def text(self, office: OfficeInfo, period: Period, locale: str, weekly: bool = False) -> str:
        t = self._texts.t
        head = t(locale, "Weekly digest") if weekly else t(locale, "Morning digest")
        lines = [f"🗞 <b>{head}: {escape(office.code)}</b>"]
        open_cases = (
            await NegativeCase.filter(
                office_id=office.id, commented_at__isnull=True, rating__local_date__gte=period.start,
                rating__local_date__lte=period.end, rating__excluded_reason__isnull=True,
            )
            .order_by("rating__ts")
            .select_related("rating", "rating__point", "rating__staff")
        )
        if open_cases:
            lines.append("")
            lines.append("⚠️ " + t(locale, "Negatives still not commented: {count}", count=len(open_cases)))
            for case in open_cases[:MAX_LISTED]:
                rating = case.rating
                who = escape(rating.staff.name) if rating.staff else t(locale, "not identified")
                when = rating.ts.astimezone(office.tz).strftime("%d.%m %H:%M")
                lines.append(f"• #{case.id} {escape(rating.point.code)} · {when} · {who}")
            if len(open_cases) > MAX_LISTED:
                lines.append(t(locale, "…and {count} more", count=len(open_cases) - MAX_LISTED))
        summary = await self._kpi.summary(Scope.offices(office.id, label=office.code), period, compare=True)
        lines.append("")
        lines.append(self._summary_text(summary, locale))
        return "\n".join(lines)


__all__ = ["DigestService"]
