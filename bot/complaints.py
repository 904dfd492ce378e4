"""Complaints that need an answer: the complaint chat's card, «Taken», «Resolved», chasing, retention.

A complaint row (stored by the kiosk or QR ingest with status ``open`` and no message) is
posted to the office's complaint chat, or to its manager chat when no complaint chat is
configured. The card is rendered when the outbox sends it, from the database, so the
customer's name and contact never sit in an outbox row and a card edited after the contact
was erased no longer shows it. Contact details are shown only there: never in the staff
group (a card bound for the office's staff chat is rendered without them), never in
reminders, escalations, logs or exports.

Deadlines: ``due_at`` is ``complaint_due_days`` working days in the office's hours (days ×
the office's average open minutes per open day, counted like the comment deadlines), the
reminder at half of it. One reminder in the complaint chat (to whoever took it, else to the
chat), one escalation to the office's manager chat; each is claimed with a conditional
UPDATE in the transaction that queues its message, so nothing is sent twice.

Retention: ``customer_name`` and ``contact`` are erased at ``contact_expires_at`` (receipt +
``COMPLAINT_CONTACT_DAYS`` when the ingest did not set it) and the card is re-rendered to say
«contact erased after the retention period».

Outbox rows of kinds ``complaint_post`` and ``complaint_edit`` carry the complaint's id in
``text`` as ``complaint:<id>`` (``OutboxMessage`` has a foreign key to negatives only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from html import escape
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.callbacks import ComplaintCb
from bot.clock import Clock, wait_first
from bot.directory import Directory, OfficeInfo
from bot.errors import AccessDenied, NotFound
from bot.models import Complaint, ComplaintStatus, OutboxKind, OutboxMessage, Role, Staff
from bot.settings import Settings
from bot.texts import Texts, _
from bot.working_hours import WorkingHours

__all__ = [
    "ComplaintPass",
    "ComplaintService",
    "ComplaintView",
    "complaint_deadlines",
    "complaint_ref",
    "deliver_complaint",
    "load_complaint_view",
    "parse_complaint_ref",
    "render_complaint",
]

log = logging.getLogger(__name__)

REF_PREFIX = "complaint:"
BATCH = 500
MAX_RESOLUTION = 3000
CARD_PART = 1500  # characters of the complaint, and of the resolution, a card shows
MINUTES_PER_DAY = 24 * 60

CHANNEL_LABELS = {"button": _("loyalty button"), "kiosk": _("exit kiosk"), "qr": _("QR survey")}


def complaint_ref(complaint_id: int) -> str:
    """What an outbox row of a complaint kind holds in ``text``."""
    return f"{REF_PREFIX}{complaint_id}"


def parse_complaint_ref(text: str | None) -> int | None:
    if not text or not text.startswith(REF_PREFIX):
        return None
    try:
        return int(text[len(REF_PREFIX):])
    except ValueError:
        return None


def complaint_deadlines(hours: WorkingHours, start: datetime, days: int) -> tuple[datetime, datetime]:
    """(remind_at, due_at) for a complaint received at ``start``: ``days`` working days, and half of it.

    A working day is a day the office is open. The count starts when the office is open (a
    complaint left at night counts from the next opening) and the due time is the same wall
    time ``days`` open days later: Tuesday 12:00 → Thursday 12:00, Friday 15:00 → Tuesday
    15:00 when the weekend is closed. When that moment falls outside that day's hours, the
    due time is the last open moment before it (the closing time, or the start of a lunch
    break), or the day's opening if it comes before it. The reminder is at half of the working
    time between receipt and due. An office with no open day counts calendar days.
    """
    start = start.astimezone(UTC)
    if not hours.has_open_days:
        return start + timedelta(days=days / 2), start + timedelta(days=days)
    tz = hours.tz
    begin = hours.next_opening(start).astimezone(tz)
    day, counted = begin.date(), 0
    while counted < max(days, 0):
        day += timedelta(days=1)
        if hours.week[day.weekday()]:
            counted += 1
    minute = begin.hour * 60 + begin.minute
    intervals = hours.week[day.weekday()]
    if not intervals or any(s <= minute < e for s, e in intervals):
        due_minute = minute
    else:
        earlier = [e for _, e in intervals if e <= minute]
        due_minute = max(earlier) if earlier else intervals[0][0]
    due_day = day + timedelta(days=due_minute // MINUTES_PER_DAY)
    local = datetime.combine(due_day, time((due_minute % MINUTES_PER_DAY) // 60, due_minute % 60), tzinfo=tz)
    if due_minute == minute:
        local = local.replace(second=begin.second, microsecond=begin.microsecond)
    due = max(local.astimezone(UTC), start)
    remind = hours.add_working_minutes(start, hours.working_minutes_between(start, due) / 2)
    return remind, due


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True, slots=True)
class ComplaintView:
    """What a complaint's card shows; loaded when the outbox renders it."""

    complaint_id: int
    office_code: str
    office_name: str
    point_code: str | None
    point_name: str | None
    staff_name: str | None
    channel: str
    ts: datetime
    tz: ZoneInfo
    text: str
    customer_name: str | None
    contact: str | None
    consent: bool
    contact_erased: bool
    due_at: datetime | None
    status: ComplaintStatus
    taken_by: str | None
    taken_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    overdue: bool
    show_contact: bool  # false when the card would land in the office's staff group


async def load_complaint_view(complaint_id: int, chat_id: int | None = None) -> ComplaintView | None:
    complaint = await Complaint.get_or_none(id=complaint_id).select_related(
        "office", "point", "staff", "taken_by", "resolved_by"
    )
    if complaint is None:
        return None
    office = complaint.office
    staff_chat = office.staff_chat_id
    return ComplaintView(
        complaint_id=complaint.id,
        office_code=office.code,
        office_name=office.name,
        point_code=complaint.point.code if complaint.point else None,
        point_name=complaint.point.name if complaint.point else None,
        staff_name=complaint.staff.name if complaint.staff else None,
        channel=str(complaint.channel),
        ts=complaint.ts,
        tz=ZoneInfo(office.timezone),
        text=complaint.text,
        customer_name=complaint.customer_name,
        contact=complaint.contact,
        consent=complaint.consent,
        contact_erased=complaint.contact_erased_at is not None,
        due_at=complaint.due_at,
        status=ComplaintStatus(complaint.status),
        taken_by=complaint.taken_by.name if complaint.taken_by else None,
        taken_at=complaint.taken_at,
        resolved_by=complaint.resolved_by.name if complaint.resolved_by else None,
        resolved_at=complaint.resolved_at,
        resolution=complaint.resolution,
        overdue=complaint.overdue,
        show_contact=chat_id is None or staff_chat is None or chat_id != staff_chat,
    )


def render_complaint(texts: Texts, locale: str, v: ComplaintView) -> tuple[str, InlineKeyboardMarkup | None]:
    """The card in the complaint chat: the complaint, the contact, the deadline, the status."""
    t = texts.t
    title, office, point, employee = t(locale, "Complaint"), t(locale, "Office"), t(locale, "Point"), t(locale, "Employee")
    received, customer, contact = t(locale, "Received"), t(locale, "Customer"), t(locale, "Contact")
    resolution, resolve_by = t(locale, "Resolution"), t(locale, "Resolve by")
    lines = [f"📣 <b>{title}</b> #{v.complaint_id}"]
    lines.append(f"{office}: {escape(v.office_code)} · {escape(v.office_name)}")
    if v.point_name:
        lines.append(f"{point}: {escape(v.point_code or '')} · {escape(v.point_name)}")
    if v.staff_name:
        lines.append(f"{employee}: {escape(v.staff_name)}")
    channel = CHANNEL_LABELS.get(v.channel)
    lines.append(f"{received}: {texts.local(v.ts, v.tz)}" + (" · " + t(locale, channel) if channel else ""))
    lines.append(f"💬 {escape(_clip(v.text))}")
    if v.contact_erased:
        lines.append("👤 " + t(locale, "contact erased after the retention period"))
    elif not v.show_contact:
        lines.append("👤 " + t(locale, "contact details are shown only in the complaint chat"))
    elif v.customer_name or v.contact:
        if v.customer_name:
            lines.append(f"👤 {customer}: {escape(v.customer_name)}")
        if v.contact:
            lines.append(f"📞 {contact}: {escape(v.contact)}")
    else:
        lines.append("👤 " + t(locale, "the customer left no contact details"))
    if v.status == ComplaintStatus.RESOLVED:
        who = escape(v.resolved_by or "?")
        when = texts.local(v.resolved_at, v.tz) if v.resolved_at else ""
        lines.append("✅ " + t(locale, "Resolved by {who}, {when}", who=who, when=when))
        if v.taken_by and v.taken_by != v.resolved_by:
            lines.append(t(locale, "Taken by {who}", who=escape(v.taken_by)))
        lines.append(f"📝 {resolution}: {escape(_clip(v.resolution or ''))}")
    else:
        if v.due_at is not None:
            lines.append(f"{resolve_by}: {texts.local(v.due_at, v.tz)}")
        if v.status == ComplaintStatus.TAKEN:
            when = texts.local(v.taken_at, v.tz) if v.taken_at else ""
            lines.append("🙋 " + t(locale, "Taken by {who}, {when}", who=escape(v.taken_by or "?"), when=when))
        else:
            lines.append("🆕 " + t(locale, "Nobody has taken it yet"))
    if v.overdue and v.status == ComplaintStatus.RESOLVED:
        lines.append("⏰ " + t(locale, "resolved after the deadline"))
    elif v.overdue:
        lines.append("⏰ " + t(locale, "Overdue: the manager has been told"))
    return "\n".join(lines), _keyboard(texts, locale, v)


def _clip(text: str, limit: int = CARD_PART) -> str:
    """The complaint and the resolution share one message of at most 4,096 characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _keyboard(texts: Texts, locale: str, v: ComplaintView) -> InlineKeyboardMarkup | None:
    if v.status == ComplaintStatus.RESOLVED:
        return None
    builder = InlineKeyboardBuilder()
    if v.status == ComplaintStatus.OPEN:
        builder.button(text="🙋 " + texts.t(locale, "I'm on it"), callback_data=ComplaintCb(complaint_id=v.complaint_id, action="t"))
    builder.button(text="✅ " + texts.t(locale, "Mark resolved"), callback_data=ComplaintCb(complaint_id=v.complaint_id, action="r"))
    return builder.as_markup()


async def deliver_complaint(
    bot: Bot, texts: Texts, row: OutboxMessage, default_language: str,
    mark_sent: Callable[[int | None], Awaitable[None]],
) -> bool:
    """Send (``complaint_post``) or edit (``complaint_edit``) a card for the outbox sender.

    Returns whether Telegram was called (for the rate limiter). ``mark_sent`` runs in the
    transaction that records the card's message id on the complaint.
    """
    complaint_id = parse_complaint_ref(row.text)
    complaint = await Complaint.get_or_none(id=complaint_id).select_related("office") if complaint_id else None
    if complaint is None:
        log.error("outbox %s: complaint %r is gone; nothing to send", row.id, row.text)
        await mark_sent(None)
        return False
    locale = complaint.office.language or default_language
    if row.kind == OutboxKind.COMPLAINT_POST:
        view = await load_complaint_view(complaint.id, row.chat_id)
        assert view is not None
        text, keyboard = render_complaint(texts, locale, view)
        message = await bot.send_message(row.chat_id, text, parse_mode="HTML", reply_markup=keyboard)
        async with in_transaction():
            await Complaint.filter(id=complaint.id).update(chat_id=row.chat_id, message_id=message.message_id)
            await mark_sent(message.message_id)
        return True
    if complaint.chat_id is None or complaint.message_id is None:
        await mark_sent(None)  # not posted yet: the post will show the latest state
        return False
    view = await load_complaint_view(complaint.id, complaint.chat_id)
    assert view is not None
    text, keyboard = render_complaint(texts, locale, view)
    await bot.edit_message_text(
        text=text, chat_id=complaint.chat_id, message_id=complaint.message_id, parse_mode="HTML", reply_markup=keyboard
    )
    await mark_sent(complaint.message_id)
    return True


# --------------------------------------------------------------------------- the service


@dataclass(slots=True)
class ComplaintPass:
    posted: int = 0
    reminders: int = 0
    escalations: int = 0
    erased: int = 0


class ComplaintService:
    """Posting, buttons, reminders, escalations and contact retention for complaints."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        texts: Texts,
        directory: Callable[[], Directory],
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._texts = texts
        self._directory = directory
        self._on_outbox = on_outbox
        self._interval = settings.scheduler_interval_seconds
        self._retention_interval = timedelta(seconds=settings.retention_interval_seconds)
        self._contact_keep = timedelta(days=settings.complaint_contact_days)
        self._next_erasure: datetime | None = None
        self._wake = asyncio.Event()
        self._unroutable: set[int] = set()  # complaints already logged as having nowhere to go

    # ------------------------------------------------------------------ the loop

    def wake(self) -> None:
        """Post new complaints now instead of at the next pass (the ingest calls it after storing one)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                result = await self.run_once()
                if result.erased:
                    log.info("complaints: contact details of %d complaints erased after the retention period", result.erased)
            except Exception:
                log.exception("complaint pass failed")
            self._wake.clear()
            await wait_first(self._clock.sleep(self._interval), self._wake.wait(), stop.wait())

    async def run_once(self) -> ComplaintPass:
        now = self._clock.now()
        result = ComplaintPass()
        result.posted = await self.post_new()
        result.reminders = await self._reminders(now)
        result.escalations = await self._escalations(now)
        if self._next_erasure is None or now >= self._next_erasure:
            result.erased = await self.erase_expired_contacts()
            self._next_erasure = now + self._retention_interval
        if result.posted or result.reminders or result.escalations or result.erased:
            self._on_outbox()
        return result

    # ------------------------------------------------------------------ posting

    def _target_chat(self, office: OfficeInfo, complaint_id: int) -> int | None:
        if office.complaint_chat_id:
            return office.complaint_chat_id
        if office.manager_chat_id:
            if complaint_id not in self._unroutable:
                self._unroutable.add(complaint_id)
                log.warning(
                    "office %s has no complaint chat: complaint #%s goes to its manager chat; "
                    "set complaint_chat in the org file", office.code, complaint_id,
                )
            return office.manager_chat_id
        if complaint_id not in self._unroutable:
            self._unroutable.add(complaint_id)
            log.error(
                "office %s has neither a complaint chat nor a manager chat: complaint #%s waits unposted; "
                "set complaint_chat in the org file", office.code, complaint_id,
            )
        return None

    async def post_new(self) -> int:
        """Queue the card of every complaint that has no chat yet; claims each with a conditional UPDATE."""
        directory = self._directory()
        now = self._clock.now()
        posted = 0
        rows = await Complaint.filter(chat_id__isnull=True).order_by("id").limit(BATCH).values(
            "id", "office_id", "received_at", "due_at", "remind_at", "contact_expires_at"
        )
        for row in rows:
            office = directory.offices.get(row["office_id"])
            if office is None:
                continue  # an office imported a moment ago: the next directory snapshot has it
            chat_id = self._target_chat(office, row["id"])
            if chat_id is None:
                continue
            changes: dict[str, object] = {"chat_id": chat_id}
            if row["due_at"] is None or row["remind_at"] is None:
                remind_at, due_at = complaint_deadlines(office.hours, row["received_at"], office.complaint_due_days)
                changes["due_at"] = row["due_at"] or due_at
                changes["remind_at"] = row["remind_at"] or remind_at
            if row["contact_expires_at"] is None:
                changes["contact_expires_at"] = row["received_at"] + self._contact_keep
            async with in_transaction():
                claimed = await Complaint.filter(id=row["id"], chat_id__isnull=True).update(**changes)
                if not claimed:
                    continue
                await OutboxMessage.create(
                    chat_id=chat_id, kind=OutboxKind.COMPLAINT_POST, text=complaint_ref(row["id"]),
                    next_attempt_at=now, created_at=now,
                )
            posted += 1
        return posted

    # ------------------------------------------------------------------ buttons

    @staticmethod
    def _may_act(staff: Staff, complaint: Complaint, chat_id: int | None) -> bool:
        """Managers and admins of the office, admins anywhere, and any staff member in the complaint's chat."""
        if not staff.active:
            return False
        if staff.role == Role.ADMIN:
            return True
        if staff.role == Role.MANAGER and staff.office_id == complaint.office_id:  # type: ignore[attr-defined]
            return True
        return chat_id is not None and complaint.chat_id is not None and chat_id == complaint.chat_id

    async def _checked(self, staff: Staff, complaint_id: int, chat_id: int | None) -> Complaint:
        complaint = await Complaint.get_or_none(id=complaint_id)
        if complaint is None or not self._may_act(staff, complaint, chat_id):
            raise AccessDenied(_("Only the office's complaint handlers can act on this complaint."))
        return complaint

    async def _refuse_resolved(self, complaint: Complaint) -> None:
        if complaint.status == ComplaintStatus.RESOLVED:
            who = await Staff.get_or_none(id=complaint.resolved_by_id)  # type: ignore[attr-defined]
            raise NotFound(_("Complaint #{id} is already resolved by {name}."), id=complaint.id, name=who.name if who else "?")

    async def take(self, staff: Staff, complaint_id: int, chat_id: int | None) -> Complaint:
        """«Taken»: the complaint is this person's now; the card shows who and since when."""
        complaint = await self._checked(staff, complaint_id, chat_id)
        await self._refuse_resolved(complaint)
        now = self._clock.now()
        async with in_transaction():
            fresh = await Complaint.select_for_update().get(id=complaint.id)
            if fresh.status == ComplaintStatus.RESOLVED:
                await self._refuse_resolved(fresh)
            if fresh.status == ComplaintStatus.TAKEN and fresh.taken_by_id not in (None, staff.id):  # type: ignore[attr-defined]
                other = await Staff.get(id=fresh.taken_by_id)  # type: ignore[attr-defined]
                raise NotFound(_("Complaint #{id} is already taken by {name}."), id=fresh.id, name=other.name)
            if fresh.status == ComplaintStatus.TAKEN:
                return fresh  # pressed twice
            fresh.status = ComplaintStatus.TAKEN
            fresh.taken_by = staff
            fresh.taken_at = now
            await fresh.save(update_fields=["status", "taken_by_id", "taken_at"])
            await self._queue_edit(fresh, now)
        self._on_outbox()
        return fresh

    async def check_resolvable(self, staff: Staff, complaint_id: int, chat_id: int | None) -> Complaint:
        """Before asking for the resolution text: may this person resolve it, and is it still open?"""
        complaint = await self._checked(staff, complaint_id, chat_id)
        await self._refuse_resolved(complaint)
        return complaint

    async def resolve(self, staff: Staff, complaint_id: int, chat_id: int | None, text: str | None) -> Complaint:
        """«Resolved» with the resolution text: the card shows who resolved it, when and how."""
        complaint = await self._checked(staff, complaint_id, chat_id)
        resolution = (text or "").strip()
        if not resolution:
            raise NotFound(_("Write what was done for the customer as text."))
        now = self._clock.now()
        async with in_transaction():
            fresh = await Complaint.select_for_update().get(id=complaint.id)
            await self._refuse_resolved(fresh)
            fresh.status = ComplaintStatus.RESOLVED
            fresh.resolved_by = staff
            fresh.resolved_at = now
            fresh.resolution = resolution[:MAX_RESOLUTION]
            fields = ["status", "resolved_by_id", "resolved_at", "resolution"]
            if fresh.taken_by_id is None:  # type: ignore[attr-defined]
                fresh.taken_by = staff
                fresh.taken_at = now
                fields += ["taken_by_id", "taken_at"]
            await fresh.save(update_fields=fields)
            await self._queue_edit(fresh, now)
        self._on_outbox()
        return fresh

    @staticmethod
    async def _queue_edit(complaint: Complaint, now: datetime) -> None:
        if complaint.chat_id is None:
            return  # not posted: the post renders the latest state
        await OutboxMessage.create(
            chat_id=complaint.chat_id, kind=OutboxKind.COMPLAINT_EDIT, text=complaint_ref(complaint.id),
            next_attempt_at=now, created_at=now,
        )

    # ------------------------------------------------------------------ chasing

    def _locale(self, office_id: int, directory: Directory) -> tuple[str, ZoneInfo | None, OfficeInfo | None]:
        office = directory.offices.get(office_id)
        return (office.language if office else self._settings.default_language), (office.tz if office else None), office

    async def _reminders(self, now: datetime) -> int:
        directory = self._directory()
        due = await Complaint.filter(
            remind_at__lte=now, reminded_at__isnull=True, message_id__isnull=False
        ).exclude(status=ComplaintStatus.RESOLVED).order_by("id").limit(BATCH).values_list("id", flat=True)
        sent = 0
        for complaint_id in due:
            async with in_transaction():
                claimed = await Complaint.filter(id=complaint_id, reminded_at__isnull=True).exclude(
                    status=ComplaintStatus.RESOLVED
                ).update(reminded_at=now)
                if not claimed:
                    continue
                complaint = await Complaint.get(id=complaint_id).select_related("taken_by", "office")
                locale, tz, _office = self._locale(complaint.office_id, directory)  # type: ignore[attr-defined]
                zone = tz or ZoneInfo(complaint.office.timezone)
                due_text = self._texts.local(complaint.due_at, zone) if complaint.due_at else "—"
                if complaint.taken_by is not None:
                    who = self._texts.mention(complaint.taken_by.name, complaint.taken_by.telegram_id)
                    text = self._texts.t(
                        locale, "{who}, please resolve complaint #{id} by {due}.", who=who, id=complaint.id, due=due_text
                    )
                else:
                    text = self._texts.t(
                        locale, "Colleagues, nobody has taken complaint #{id} yet; it must be resolved by {due}.",
                        id=complaint.id, due=due_text,
                    )
                await OutboxMessage.create(
                    chat_id=complaint.chat_id, kind=OutboxKind.TEXT, text="⏳ " + text,
                    reply_to_message_id=complaint.message_id, next_attempt_at=now, created_at=now,
                )
            sent += 1
        return sent

    async def _escalations(self, now: datetime) -> int:
        directory = self._directory()
        due = await Complaint.filter(due_at__lte=now, escalated_at__isnull=True).exclude(
            status=ComplaintStatus.RESOLVED
        ).order_by("id").limit(BATCH).values_list("id", flat=True)
        sent = 0
        for complaint_id in due:
            async with in_transaction():
                claimed = await Complaint.filter(id=complaint_id, escalated_at__isnull=True).exclude(
                    status=ComplaintStatus.RESOLVED
                ).update(escalated_at=now, overdue=True)
                if not claimed:
                    continue
                complaint = await Complaint.get(id=complaint_id).select_related("taken_by", "office", "point")
                locale, tz, office = self._locale(complaint.office_id, directory)  # type: ignore[attr-defined]
                zone = tz or ZoneInfo(complaint.office.timezone)
                manager_chat = office.manager_chat_id if office else complaint.office.manager_chat_id
                if manager_chat:
                    who = escape(complaint.taken_by.name) if complaint.taken_by else self._texts.t(locale, "nobody")
                    place = escape(complaint.office.code) + (f" / {escape(complaint.point.name)}" if complaint.point else "")
                    # no customer name, contact or text here: the manager chat may be a group
                    text = "⏰ " + self._texts.t(
                        locale, "Complaint #{id} at {place} ({time}) was not resolved by {due}. Taken by: {who}.",
                        id=complaint.id, place=place, time=self._texts.local(complaint.ts, zone),
                        due=self._texts.local(complaint.due_at, zone) if complaint.due_at else "—", who=who,
                    )
                    await OutboxMessage.create(
                        chat_id=manager_chat, kind=OutboxKind.TEXT, text=text, next_attempt_at=now, created_at=now
                    )
                else:
                    log.warning("complaint #%s is overdue but office %s has no manager chat", complaint_id, complaint.office.code)
                await self._queue_edit(complaint, now)  # the card shows «overdue»
            sent += 1
        return sent

    # ------------------------------------------------------------------ retention

    async def erase_expired_contacts(self) -> int:
        """Erase the customer's name and contact whose keep has ended; the card then says so."""
        now = self._clock.now()
        expired = Q(contact_expires_at__lte=now) | Q(contact_expires_at__isnull=True, received_at__lte=now - self._contact_keep)
        has_contact = Q(customer_name__isnull=False) | Q(contact__isnull=False)
        erased = 0
        while True:
            rows = await Complaint.filter(expired, has_contact, contact_erased_at__isnull=True).order_by("id").limit(
                BATCH
            ).values_list("id", "chat_id")
            if not rows:
                return erased
            ids = [int(id_) for id_, _ in rows]
            async with in_transaction():
                count = await Complaint.filter(id__in=ids, contact_erased_at__isnull=True).update(
                    customer_name=None, contact=None, contact_erased_at=now
                )
                for id_, chat_id in rows:
                    if chat_id is not None:
                        await OutboxMessage.create(
                            chat_id=chat_id, kind=OutboxKind.COMPLAINT_EDIT, text=complaint_ref(int(id_)),
                            next_attempt_at=now, created_at=now,
                        )
            erased += count
            if len(rows) < BATCH:
                return erased
