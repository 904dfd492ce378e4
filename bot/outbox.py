"""Delivering the outbox to Telegram: once, in order per chat, within Telegram's limits.

A row is marked sent only after Telegram answers, so a crash between the answer and the
commit can repeat one message (the unavoidable window); nothing else repeats and nothing is
lost. Negatives' posts are rendered when sent, from the database, so an edit that was
queued before the post went out is already in it, and a burst into one group becomes one
summary message with a button per negative instead of an hour of queued posts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import FSInputFile, ReplyParameters
from tortoise.transactions import in_transaction

from bot.clock import Clock, wait_first
from bot.complaints import deliver_complaint
from bot.directory import Directory
from bot.models import Channel, NegativeCase, OutboxKind, OutboxMessage, OutboxStatus, RatingReason, SpeechStatus
from bot.settings import Settings
from bot.texts import CaseView, Texts

log = logging.getLogger(__name__)

MAX_SUMMARY = 20
FETCH_LIMIT = 500
MAX_BACKOFF_SECONDS = 60.0


async def load_case_views(case_ids: Sequence[int], directory: Directory) -> list[CaseView]:
    cases = (
        await NegativeCase.filter(id__in=list(case_ids))
        .select_related("rating", "rating__point", "rating__staff", "office", "comment_by")
        .order_by("id")
    )
    reasons: dict[int, list[str]] = defaultdict(list)  # rating id → reason codes the customer picked
    if any(case.rating.channel != Channel.BUTTON for case in cases):
        for rating_id, code in await RatingReason.filter(rating_id__in=[c.rating.id for c in cases]).order_by("id").values_list(
            "rating_id", "reason__code"
        ):
            reasons[rating_id].append(code)
    views = []
    for case in cases:
        office_info = directory.offices.get(case.office_id)  # type: ignore[attr-defined]
        tz = office_info.tz if office_info else ZoneInfo(case.office.timezone)
        staff = case.rating.staff
        views.append(
            CaseView(
                case_id=case.id,
                office_code=case.office.code,
                office_name=case.office.name,
                point_code=case.rating.point.code,
                point_name=case.rating.point.name,
                staff_name=staff.name if staff else None,
                staff_telegram_id=staff.telegram_id if staff else None,
                ts=case.rating.ts,
                tz=tz,
                due_at=case.due_at,
                comment_text=case.comment_text,
                comment_voice=bool(case.comment_voice_file_id),
                comment_by=case.comment_by.name if case.comment_by else None,
                commented_at=case.commented_at,
                comment_late=case.comment_late,
                comment_transcript=case.comment_transcript,
                overdue=case.overdue,
                channel=str(case.rating.channel),
                customer_text=case.rating.customer_text,
                customer_voice=case.rating.customer_speech_status is not None,
                customer_transcript=case.rating.customer_transcript,
                customer_voice_failed=case.rating.customer_speech_status == SpeechStatus.FAILED,
                reasons=tuple(
                    directory.reasons[code].text(office_info.language if office_info else "ru") if code in directory.reasons else code
                    for code in reasons.get(case.rating.id, ())
                ),
            )
        )
    return views


class RateLimiter:
    """Sliding windows: ~20 messages a minute per group, ~30 a second overall."""

    def __init__(self, per_group_per_minute: int, global_per_second: int) -> None:
        self._group_limit = per_group_per_minute
        self._global_limit = global_per_second
        self._group: dict[int, deque[float]] = {}
        self._global: deque[float] = deque()
        self._blocked_until: dict[int, float] = {}

    def _trim(self, window: deque[float], span: float, now: float) -> None:
        while window and now - window[0] >= span:
            window.popleft()

    def group_budget(self, chat_id: int) -> int:
        if chat_id > 0:  # private chats: only the global limit applies
            return 1_000_000
        now = time.monotonic()
        window = self._group.setdefault(chat_id, deque())
        self._trim(window, 60.0, now)
        return self._group_limit - len(window)

    def ready(self, chat_id: int) -> bool:
        return time.monotonic() >= self._blocked_until.get(chat_id, 0.0) and self.group_budget(chat_id) > 0

    def block(self, chat_id: int, seconds: float) -> None:
        self._blocked_until[chat_id] = max(self._blocked_until.get(chat_id, 0.0), time.monotonic() + seconds)

    async def acquire_global(self) -> None:
        while True:
            now = time.monotonic()
            self._trim(self._global, 1.0, now)
            if len(self._global) < self._global_limit:
                return
            await asyncio.sleep(1.0 - (now - self._global[0]) + 0.001)

    def record(self, chat_id: int, at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
        self._global.append(now)
        if chat_id < 0:
            self._group.setdefault(chat_id, deque()).append(now)

    def waiting(self) -> dict[int, float]:
        """Chats that may not receive now, and the seconds until they may."""
        chats = set(self._blocked_until) | {chat_id for chat_id, window in self._group.items() if len(window) >= self._group_limit}
        return {chat_id: wait for chat_id in chats if (wait := self.next_free(chat_id)) > 0}

    def next_free(self, chat_id: int) -> float:
        """Seconds until this chat may receive again."""
        now = time.monotonic()
        wait = self._blocked_until.get(chat_id, 0.0) - now
        window = self._group.get(chat_id)
        if chat_id < 0 and window and len(window) >= self._group_limit:
            wait = max(wait, 60.0 - (now - window[0]))
        return max(wait, 0.0)


class OutboxSender:
    def __init__(
        self, bot: Bot, settings: Settings, clock: Clock, texts: Texts, directory: Callable[[], Directory]
    ) -> None:
        self._bot = bot
        self._settings = settings
        self._clock = clock
        self._texts = texts
        self._directory = directory
        self._wake = asyncio.Event()
        self.limiter = RateLimiter(settings.group_messages_per_minute, settings.global_messages_per_second)
        self.sent = 0

    def notify(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; pending rows stay in the table for the next start."""
        await self._seed_limiter()
        while not stop.is_set():
            try:
                pause = await self.drain_once()
            except Exception:  # the sender must outlive a bad row or a database hiccup
                log.exception("outbox pass failed")
                pause = 1.0
            if pause <= 0:
                continue
            self._wake.clear()
            await wait_first(self._wake.wait(), stop.wait(), timeout=pause)

    async def _seed_limiter(self) -> None:
        """A restart must not forget what each group received in the last minute."""
        since = self._clock.now() - timedelta(seconds=60)
        rows = await OutboxMessage.filter(status=OutboxStatus.SENT, sent_at__gte=since).values_list(
            "chat_id", "sent_message_id", "sent_at"
        )
        seen: set[tuple[int, int | None]] = set()
        now_wall, now_mono = self._clock.now(), time.monotonic()
        for chat_id, message_id, sent_at in sorted(rows, key=lambda r: r[2]):
            if (chat_id, message_id) in seen:
                continue
            seen.add((chat_id, message_id))
            self.limiter.record(chat_id, at=now_mono - (now_wall - sent_at).total_seconds())

    async def drain_once(self) -> float:
        """One round over the chats with due rows; returns how long to wait before the next."""
        now = self._clock.now()
        # Rows of chats at their limit are left in the table, not fetched: during a burst every
        # ingest batch wakes the sender, and re-reading hundreds of rows it may not send yet
        # cost a quarter of the event loop.
        waiting = self.limiter.waiting()
        due = OutboxMessage.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=now)
        if waiting:
            due = due.filter(chat_id__not_in=list(waiting))
        rows = await due.order_by("id").limit(FETCH_LIMIT)
        if not rows:
            pending = OutboxMessage.filter(status=OutboxStatus.PENDING)
            if waiting:
                pending = pending.filter(chat_id__not_in=list(waiting))
            upcoming = await pending.order_by("next_attempt_at").first().values_list("next_attempt_at", flat=True)
            pause = min(waiting.values(), default=5.0)
            if upcoming is not None:
                pause = min(pause, (upcoming - now).total_seconds())
            return min(max(pause, 0.05), 5.0)
        by_chat: OrderedDict[int, list[OutboxMessage]] = OrderedDict()
        for row in rows:
            by_chat.setdefault(row.chat_id, []).append(row)
        progressed = False
        wait = 1.0
        for chat_id, chat_rows in by_chat.items():
            if not self.limiter.ready(chat_id):
                wait = min(wait, max(self.limiter.next_free(chat_id), 0.05))
                continue
            await self.limiter.acquire_global()
            await self._send_next(chat_id, chat_rows)
            progressed = True
        return 0.0 if progressed else wait

    async def _send_next(self, chat_id: int, rows: list[OutboxMessage]) -> None:
        head = rows[0]
        group = [head]
        if head.kind == OutboxKind.CASE_POST:
            posts = [r for r in rows if r.kind == OutboxKind.CASE_POST]
            budget = self.limiter.group_budget(chat_id)
            if len(posts) > self._settings.coalesce_after or len(posts) > budget:
                group = posts[:MAX_SUMMARY]
        elif head.kind == OutboxKind.CASE_REFRESH:
            group = [r for r in rows if r.kind == OutboxKind.CASE_REFRESH and r.case_id == head.case_id]  # type: ignore[attr-defined]
        elif head.kind == OutboxKind.COMPLAINT_EDIT:  # rendered from the database: one edit shows them all
            group = [r for r in rows if r.kind == OutboxKind.COMPLAINT_EDIT and r.text == head.text]
        try:
            await self._deliver(chat_id, head, group)
        except TelegramRetryAfter as exc:
            log.warning("chat %s: 429, retry after %s s", chat_id, exc.retry_after)
            self.limiter.block(chat_id, exc.retry_after)
            await self._postpone(group, exc.retry_after, f"429 retry_after={exc.retry_after}")
        except (TelegramServerError, TelegramNetworkError, asyncio.TimeoutError, OSError) as exc:
            delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(head.attempts, 8)) * (0.8 + 0.4 * random.random())
            log.warning("chat %s: %s, retrying in %.1f s", chat_id, type(exc).__name__, delay)
            self.limiter.block(chat_id, delay)
            await self._postpone(group, delay, f"{type(exc).__name__}: {exc}")
        except TelegramBadRequest as exc:
            if "message is not modified" in exc.message:
                await self._mark_sent(group, None)
                return
            log.error("chat %s: Telegram refused outbox %s: %s", chat_id, head.id, exc.message)
            await self._fail(group, exc.message)
        except (TelegramForbiddenError, TelegramNotFound) as exc:
            log.error("chat %s: Telegram refused outbox %s: %s", chat_id, head.id, exc.message)
            await self._fail(group, exc.message)

    async def _deliver(self, chat_id: int, head: OutboxMessage, group: list[OutboxMessage]) -> None:
        directory = self._directory()
        if head.kind == OutboxKind.TEXT:
            reply = (
                ReplyParameters(message_id=head.reply_to_message_id, allow_sending_without_reply=True)
                if head.reply_to_message_id
                else None
            )
            message = await self._bot.send_message(
                chat_id, head.text or "", parse_mode="HTML", reply_parameters=reply, reply_markup=head.reply_markup
            )
            self.limiter.record(chat_id)
            await self._mark_sent(group, message.message_id)
            return
        if head.kind == OutboxKind.VOICE:
            reply = (
                ReplyParameters(message_id=head.reply_to_message_id, allow_sending_without_reply=True)
                if head.reply_to_message_id
                else None
            )
            message = await self._bot.send_voice(
                chat_id, FSInputFile(head.file_path or ""), duration=round(head.file_seconds or 0) or None,
                caption=(head.text or "")[:1024] or None, parse_mode="HTML", reply_parameters=reply,
            )
            self.limiter.record(chat_id)
            await self._mark_sent(group, message.message_id)
            return
        if head.kind in (OutboxKind.COMPLAINT_POST, OutboxKind.COMPLAINT_EDIT):
            called = await deliver_complaint(
                self._bot, self._texts, head, self._settings.default_language,
                lambda message_id: self._mark_sent(group, message_id),
            )
            if called:
                self.limiter.record(chat_id)
            return
        if head.kind == OutboxKind.CASE_POST:
            case_ids = [row.case_id for row in group]  # type: ignore[attr-defined]
            views = await load_case_views(case_ids, directory)
            if not views:
                await self._fail(group, "case vanished")
                return
            text, keyboard = self._texts.case_post(self._locale(head, directory), views)
            message = await self._bot.send_message(chat_id, text, parse_mode="HTML", reply_markup=keyboard)
            self.limiter.record(chat_id)
            async with in_transaction():
                await NegativeCase.filter(id__in=case_ids).update(chat_id=chat_id, message_id=message.message_id)
                await self._mark_sent(group, message.message_id)
            return
        # CASE_REFRESH: re-render the whole message the case lives in (a card or a summary)
        case = await NegativeCase.get_or_none(id=head.case_id)  # type: ignore[attr-defined]
        if case is None or case.message_id is None:
            await self._mark_sent(group, None)  # not posted yet: the post will show the latest state
            return
        same_message = await NegativeCase.filter(chat_id=case.chat_id, message_id=case.message_id).values_list("id", flat=True)
        views = await load_case_views(list(same_message), directory)
        text, keyboard = self._texts.case_post(self._locale(head, directory), views)
        await self._bot.edit_message_text(
            text=text, chat_id=case.chat_id, message_id=case.message_id, parse_mode="HTML", reply_markup=keyboard
        )
        self.limiter.record(chat_id)
        await self._mark_sent(group, case.message_id)

    def _locale(self, row: OutboxMessage, directory: Directory) -> str:
        for office in directory.offices.values():
            if office.staff_chat_id == row.chat_id or office.manager_chat_id == row.chat_id:
                return office.language
        return self._settings.default_language

    async def _mark_sent(self, group: list[OutboxMessage], message_id: int | None) -> None:
        now = self._clock.now()
        await OutboxMessage.filter(id__in=[row.id for row in group]).update(
            status=OutboxStatus.SENT, sent_at=now, sent_message_id=message_id
        )
        self.sent += len(group)

    async def _postpone(self, group: list[OutboxMessage], seconds: float, error: str) -> None:
        at = self._clock.now() + timedelta(seconds=seconds)
        for row in group:
            await OutboxMessage.filter(id=row.id).update(next_attempt_at=at, attempts=row.attempts + 1, last_error=error[:500])

    async def _fail(self, group: list[OutboxMessage], error: str) -> None:
        await OutboxMessage.filter(id__in=[row.id for row in group]).update(status=OutboxStatus.FAILED, last_error=error[:500])
