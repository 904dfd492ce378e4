"""Chasing comments: one reminder at half-time, one escalation at the deadline.

Each step is claimed with a conditional UPDATE (``reminded_at IS NULL``) in the same
transaction that queues its message, so two passes, two instances or a restart can never
send a reminder twice. Times come from the injected clock so tests can jump past deadlines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.functions import Count
from tortoise.transactions import in_transaction

from bot.clock import Clock, wait_first
from bot.directory import Directory
from bot.models import NegativeCase, Office, OutboxKind, OutboxMessage, Rating
from bot.outbox import load_case_views
from bot.texts import Texts

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PassResult:
    reminders: int = 0
    escalations: int = 0
    digests: int = 0


class DeadlineScheduler:
    def __init__(
        self,
        clock: Clock,
        texts: Texts,
        directory: Callable[[], Directory],
        interval_seconds: float,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._texts = texts
        self._directory = directory
        self._interval = interval_seconds
        self._on_outbox = on_outbox

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("deadline pass failed")
            await wait_first(self._clock.sleep(self._interval), stop.wait())

    async def run_once(self) -> PassResult:
        now = self._clock.now()
        directory = self._directory()
        result = PassResult()
        due_reminders = await NegativeCase.filter(
            remind_at__lte=now, reminded_at__isnull=True, commented_at__isnull=True, message_id__isnull=False
        ).values_list("id", flat=True)
        for case_id in due_reminders:
            result.reminders += await self._remind(case_id, now, directory)
        due_escalations = await NegativeCase.filter(
            due_at__lte=now, escalated_at__isnull=True, commented_at__isnull=True
        ).values_list("id", flat=True)
        for case_id in due_escalations:
            result.escalations += await self._escalate(case_id, now, directory)
        result.digests = await self._hourly_digests(now, directory)
        if result.reminders or result.escalations or result.digests:
            self._on_outbox()
        return result

    async def _remind(self, case_id: int, now: datetime, directory: Directory) -> int:
        views = await load_case_views([case_id], directory)
        if not views:
            return 0
        async with in_transaction():
            claimed = await NegativeCase.filter(id=case_id, reminded_at__isnull=True, commented_at__isnull=True).update(reminded_at=now)
            if not claimed:
                return 0
            case = await NegativeCase.get(id=case_id)
            office = directory.offices.get(case.office_id)  # type: ignore[attr-defined]
            locale = office.language if office else "ru"
            await OutboxMessage.create(
                chat_id=case.chat_id, kind=OutboxKind.TEXT, text=self._texts.reminder(locale, views[0]),
                reply_to_message_id=case.message_id, next_attempt_at=now, created_at=now,
            )
        return 1

    async def _escalate(self, case_id: int, now: datetime, directory: Directory) -> int:
        views = await load_case_views([case_id], directory)
        if not views:
            return 0
        async with in_transaction():
            claimed = await NegativeCase.filter(id=case_id, escalated_at__isnull=True, commented_at__isnull=True).update(
                escalated_at=now, overdue=True
            )
            if not claimed:
                return 0
            case = await NegativeCase.get(id=case_id)
            office = directory.offices.get(case.office_id)  # type: ignore[attr-defined]
            locale = office.language if office else "ru"
            if office and office.manager_chat_id:
                await OutboxMessage.create(
                    chat_id=office.manager_chat_id, kind=OutboxKind.TEXT, text=self._texts.escalation(locale, views[0]),
                    next_attempt_at=now, created_at=now,
                )
            else:
                log.warning("negative #%s is overdue but office has no manager chat", case_id)
            if case.chat_id is not None:  # the group card shows «overdue»
                await OutboxMessage.create(
                    chat_id=case.chat_id, kind=OutboxKind.CASE_REFRESH, case_id=case_id, next_attempt_at=now, created_at=now
                )
        return 1

    async def _hourly_digests(self, now: datetime, directory: Directory) -> int:
        """Offices that asked for it get their positives and neutrals once an hour."""
        sent = 0
        hour = now.replace(minute=0, second=0, microsecond=0)
        for office in directory.offices.values():
            if not office.hourly_digest or not office.staff_chat_id:
                continue
            row = await Office.get(id=office.id)
            since = row.digest_sent_until or hour - timedelta(hours=1)
            if since >= hour:
                continue
            counts = dict(
                await Rating.filter(office_id=office.id, ts__gte=since, ts__lt=hour, excluded_reason__isnull=True)
                .annotate(n=Count("id"))
                .group_by("value")
                .values_list("value", "n")
            )
            async with in_transaction():
                claimed = await Office.filter(id=office.id, digest_sent_until=row.digest_sent_until).update(digest_sent_until=hour)
                if not claimed or not counts:
                    continue
                await OutboxMessage.create(
                    chat_id=office.staff_chat_id, kind=OutboxKind.TEXT,
                    text=self._texts.digest(office.language, office.code, {str(k): v for k, v in counts.items()}, since, hour, office.tz),
                    next_attempt_at=now, created_at=now,
                )
                sent += 1
        return sent
