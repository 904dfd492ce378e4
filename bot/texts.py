"""Everything the bot says outside a handler, rendered in the office's language (gettext).

Handlers answer in the user's language through aiogram's i18n context; messages the bot
sends on its own (a negative's post, reminders, alerts) are rendered here, when they are
sent, in the language of the office they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import CommentCb

LOCALES_DIR = Path(__file__).parent / "locales"
DOMAIN = "messages"


def make_i18n(default_locale: str = "ru") -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=default_locale, domain=DOMAIN)


def _(text: str) -> str:
    """Marks a message for extraction; translation happens in ``Texts.t``."""
    return text


VALUE_LABELS = {"good": _("good"), "neutral": _("neutral"), "bad": _("bad")}
VALUE_ICONS = {"good": "🟢", "neutral": "🟡", "bad": "🔴"}


@dataclass(frozen=True, slots=True)
class CaseView:
    """What a negative's message shows; loaded by the outbox when it renders the post."""

    case_id: int
    office_code: str
    office_name: str
    point_code: str
    point_name: str
    staff_name: str | None
    staff_telegram_id: int | None
    ts: datetime
    tz: ZoneInfo
    due_at: datetime | None
    comment_text: str | None
    comment_voice: bool
    comment_by: str | None
    commented_at: datetime | None
    comment_late: bool | None
    overdue: bool
    comment_transcript: str | None = None
    channel: str = "button"  # button | kiosk | qr
    customer_text: str | None = None  # what the customer wrote at the kiosk or on the QR page
    reasons: tuple[str, ...] = ()  # the reasons they picked, as labels
    customer_voice: bool = False  # the customer left a voice comment at the kiosk
    customer_transcript: str | None = None  # its words, once transcribed
    customer_voice_failed: bool = False  # it could not be transcribed


class Texts:
    def __init__(self, i18n: I18n) -> None:
        self._i18n = i18n

    def t(self, locale: str, text: str, **params: object) -> str:
        translated = self._i18n.gettext(text, locale=locale)
        return translated.format(**params) if params else translated

    @staticmethod
    def local(at: datetime, tz: ZoneInfo, with_date: bool = True) -> str:
        local = at.astimezone(tz)
        return local.strftime("%d.%m.%Y %H:%M") if with_date else local.strftime("%H:%M")

    @staticmethod
    def mention(name: str, telegram_id: int | None) -> str:
        if telegram_id:
            return f'<a href="tg://user?id={telegram_id}">{escape(name)}</a>'
        return escape(name)

    def _staff(self, locale: str, view: CaseView) -> str:
        return escape(view.staff_name) if view.staff_name else self.t(locale, "not identified")

    def case_post(self, locale: str, views: list[CaseView]) -> tuple[str, InlineKeyboardMarkup | None]:
        """One negative → its full card; a coalesced burst → one summary with a button each."""
        if len(views) == 1:
            return self._case_card(locale, views[0])
        return self._case_summary(locale, views)

    def _case_card(self, locale: str, v: CaseView) -> tuple[str, InlineKeyboardMarkup | None]:
        title = self.t(locale, "Negative rating")
        office, point = self.t(locale, "Office"), self.t(locale, "Point")
        employee, when = self.t(locale, "Employee"), self.t(locale, "Time")
        lines = [
            f"🔴 <b>{title}</b> #{v.case_id}",
            f"{office}: {escape(v.office_code)} · {escape(v.office_name)}",
            f"{point}: {escape(v.point_code)} · {escape(v.point_name)}",
            f"{employee}: {self._staff(locale, v)}",
            f"{when}: {self.local(v.ts, v.tz)}",
        ]
        if v.channel != "button":
            source = self.t(locale, "exit kiosk") if v.channel == "kiosk" else self.t(locale, "QR survey")
            channel = self.t(locale, "Channel")
            lines.append(f"{channel}: {source}")
        if v.reasons:
            reasons = self.t(locale, "Reasons")
            lines.append(f"{reasons}: {escape(', '.join(v.reasons))}")
        if v.customer_text:
            customer = self.t(locale, "Customer")
            lines.append(f"🗣 {customer}: <i>{escape(v.customer_text[:1000])}</i>")
        if v.customer_voice:
            lines.append(self._customer_voice_line(locale, v))
        lines.extend(self._comment_lines(locale, v))
        return "\n".join(lines), self._keyboard(locale, [v])

    def _customer_voice_line(self, locale: str, v: CaseView) -> str:
        by_voice = self.t(locale, "Customer (by voice)")
        if v.customer_transcript is not None:
            heard = escape(v.customer_transcript[:1000]) or self.t(locale, "(no speech recognised)")
            return f"🗣 {by_voice}: <i>{heard}</i>"
        if v.customer_voice_failed:
            return f"🗣 {by_voice}: " + self.t(locale, "(voice message)")
        return f"🗣 {by_voice}: " + self.t(locale, "(voice message, transcript in progress)")

    def _comment_lines(self, locale: str, v: CaseView) -> list[str]:
        if v.commented_at is None:
            lines = []
            if v.due_at is not None:
                comment_by = self.t(locale, "Comment by")
                lines.append(f"{comment_by}: {self.local(v.due_at, v.tz)}")
            if v.overdue:
                lines.append("⏰ " + self.t(locale, "Overdue: the manager has been told"))
            return lines
        by = escape(v.comment_by or "?")
        body = escape(v.comment_text) if v.comment_text else ""
        if v.comment_voice and not body:
            body = self.t(locale, "(voice message)")
            if v.comment_transcript is not None:
                heard = escape(v.comment_transcript) or self.t(locale, "(no speech recognised)")
                body += f" 🎙 <i>{heard}</i>"
        comment = self.t(locale, "Comment")
        lines = [f"💬 <b>{comment}</b> ({by}, {self.local(v.commented_at, v.tz)}): {body}"]
        if v.comment_late:
            lines.append("⏰ " + self.t(locale, "commented after the deadline"))
        return lines

    def _case_summary(self, locale: str, views: list[CaseView]) -> tuple[str, InlineKeyboardMarkup | None]:
        head = self.t(locale, "{count} negative ratings in a row", count=len(views))
        lines = [f"🔴 <b>{head}</b>"]
        for number, v in enumerate(views, 1):
            status = (
                "✅ " + self.t(locale, "commented")
                if v.commented_at
                else ("⏰ " + self.t(locale, "overdue") if v.overdue else "⏳ " + self.local(v.due_at, v.tz, False) if v.due_at else "")
            )
            lines.append(
                f"{number}. #{v.case_id} {escape(v.office_code)}/{escape(v.point_code)} · {self._staff(locale, v)}"
                f" · {self.local(v.ts, v.tz, False)} — {status}"
            )
            if v.commented_at and (v.comment_text or v.comment_transcript):
                said = escape(v.comment_text) if v.comment_text else f"🎙 <i>{escape(v.comment_transcript or '')}</i>"
                lines.append(f"    💬 {escape(v.comment_by or '?')}: {said}")
        lines.append(self.t(locale, "Press a number to comment that rating."))
        return "\n".join(lines), self._keyboard(locale, views)

    def _keyboard(self, locale: str, views: list[CaseView]) -> InlineKeyboardMarkup | None:
        open_views = [(n, v) for n, v in enumerate(views, 1) if v.commented_at is None]
        if not open_views:
            return None
        builder = InlineKeyboardBuilder()
        if len(views) == 1:
            builder.button(text="💬 " + self.t(locale, "Comment"), callback_data=CommentCb(case_id=views[0].case_id))
        else:
            for number, v in open_views:
                builder.button(text=f"💬 {number}", callback_data=CommentCb(case_id=v.case_id))
            builder.adjust(5)
        return builder.as_markup()

    def reminder(self, locale: str, v: CaseView) -> str:
        who = self.mention(v.staff_name, v.staff_telegram_id) if v.staff_name else self.t(locale, "colleagues")
        return self.t(
            locale,
            "{who}, please comment negative #{case} ({point}) by {due}.",
            who=who, case=v.case_id, point=escape(v.point_name), due=self.local(v.due_at, v.tz, False) if v.due_at else "—",
        )

    def escalation(self, locale: str, v: CaseView) -> str:
        return "⏰ " + self.t(
            locale,
            "Negative #{case} at {office} / {point} ({time}) was not commented by {due}. Employee: {staff}.",
            case=v.case_id, office=escape(v.office_code), point=escape(v.point_name), time=self.local(v.ts, v.tz),
            due=self.local(v.due_at, v.tz) if v.due_at else "—", staff=self._staff(locale, v),
        )

    def anomaly(self, locale: str, office_code: str, point_name: str, bad: int, total: int, minutes: int) -> str:
        return "⚠️ " + self.t(
            locale,
            "{office} / {point}: {bad} of {total} ratings in the last {minutes} minutes are negative.",
            office=escape(office_code), point=escape(point_name), bad=bad, total=total, minutes=minutes,
        )

    def positive(self, locale: str, point_name: str, value: str, ts: datetime, tz: ZoneInfo, staff: str | None) -> str:
        label = self.t(locale, VALUE_LABELS[value])
        who = escape(staff) if staff else self.t(locale, "not identified")
        return f"{VALUE_ICONS[value]} {label} · {escape(point_name)} · {who} · {self.local(ts, tz, False)}"

    def digest(self, locale: str, office_code: str, counts: dict[str, int], since: datetime, until: datetime, tz: ZoneInfo) -> str:
        return self.t(
            locale,
            "{office}, {since}–{until}: 🟢 {good} · 🟡 {neutral} · 🔴 {bad}",
            office=escape(office_code), since=self.local(since, tz, False), until=self.local(until, tz, False),
            good=counts.get("good", 0), neutral=counts.get("neutral", 0), bad=counts.get("bad", 0),
        )
