"""Scoring conversations on checklists: the form lives in the database, not in memory.

A specialist of the quality service opens the next sampled conversation with ``/score`` and
answers its checklist criterion by criterion in one message that is edited in place. Every
state of the form (answers, the criterion shown, comments, the ForceReply prompt waiting for
a comment) is a column of its ``Score`` row, so a restart of the service loses nothing and
``/score`` resumes the draft where it stood.

Who may press what is decided here, on every call, never by the buttons: the quality role,
the score's own specialist, an office the specialist covers (none = all offices), a DRAFT,
and the ``revision`` the button was drawn with. Every change is one conditional UPDATE on
``status`` and ``revision`` that bumps the revision, so a replayed or forged button, an old
copy of the form and the second tap of a double tap change nothing.

``Score.answers`` holds ``{criterion id: {"value": yes|no|na, "auto": the automatic answer
or null, "comment": text or null, "voice": Telegram file id or null}}``; an override of an
automatic answer is ``value != auto``. One extra key, ``@meta`` (never a criterion id: ids
are ``[A-Za-z0-9_-]``), keeps the waiting comment prompt and the form's voice comment;
``answer_values`` gives the plain ``{id: answer}`` mapping ``checklists.score`` takes.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot import checklists
from bot.checklists import Answer, Checklist, Criterion
from bot.clock import Clock
from bot.errors import AccessDenied, DomainError, NotFound
from bot.models import (
    Calibration,
    ChecklistTemplate,
    Conversation,
    ConversationKind,
    Office,
    OutboxKind,
    OutboxMessage,
    Role,
    SampleItem,
    SampleStatus,
    Score,
    ScoreRevision,
    ScoreStatus,
    Staff,
)
from bot.speech_service import check_transcript, split_message
from bot.texts import Texts, _
from speech.rules import RuleSet, highlight_html
from speech.transcriber import Segment, Transcript

log = logging.getLogger(__name__)

__all__ = [
    "CORRECTION_WINDOW",
    "META",
    "Materials",
    "ScoreCb",
    "ScoreService",
    "answer_values",
]

CORRECTION_WINDOW = timedelta(hours=24)
META = "@meta"  # the one key of Score.answers that is not a criterion
VALUES: dict[str, Answer] = {"y": "yes", "n": "no", "a": "na"}
COMMENT_LIMIT = 1000
RECENT_FORMS = 2048  # forms kept in memory to skip a SELECT per press (the database stays the truth)
SUMMARY_TEXT_LIMIT = 80  # characters of a criterion's text in the summary
TELEGRAM_TEXT_LIMIT = 4096
DEFAULT_ZONE = ZoneInfo("Europe/Moscow")

# messages the service raises; the handlers translate them
QUALITY_ONLY = _("Scoring is for the quality service.")
NOT_YOURS = _("This form is not yours.")
CHANGED = _("This form has changed; use the current message.")
ALREADY_SUBMITTED = _("This form is already submitted.")
OUTSIDE_OFFICES = _("This conversation is not in your offices.")


class ScoreCb(CallbackData, prefix="sc"):
    """A button of a form: ``sc:y:1234:7:3`` is at most ~40 bytes (Telegram allows 64).

    a: y/n/a answer criterion ``c`` · b back · k section menu · g go to section ``c`` ·
    j go to criterion ``c`` (``c`` = N: the summary) · x close the menu · m comment on
    criterion ``c`` · f comment on the whole form · s submit · e correct a submitted score.
    """

    a: str
    s: int  # Score.id
    r: int  # Score.revision the button was drawn with
    c: int = 0  # a criterion's or a section's index in the checklist (never its id: bytes)


def answer_values(answers: Mapping[str, Any] | None) -> dict[str, Answer]:
    """``Score.answers`` as the ``{criterion id: yes|no|na}`` that ``checklists.score`` takes."""
    return {
        key: entry["value"]
        for key, entry in (answers or {}).items()
        if key != META and isinstance(entry, Mapping) and entry.get("value") in ("yes", "no", "na")
    }


@dataclass(frozen=True, slots=True)
class Materials:
    """What ``/score`` sends before the form: the recording and its transcript."""

    audio_path: str | None
    codec: str
    seconds: float
    caption: str
    transcript: list[str]  # HTML messages, each within Telegram's 4,096 characters


class ScoreService:
    def __init__(
        self,
        clock: Clock,
        texts: Texts,
        on_outbox: Callable[[], None] = lambda: None,
        checklist_code: str = "desk-sales",
        audio_keep_days: int = 180,
    ) -> None:
        self._clock = clock
        self._texts = texts
        self._on_outbox = on_outbox
        self._code = checklist_code
        self._keep = timedelta(days=audio_keep_days)
        self._checklists: dict[int, Checklist] = {}  # template versions never change: cached by id
        self._on_submit: list[Callable[[Score], Awaitable[object]]] = []
        self._recent: OrderedDict[int, Score] = OrderedDict()  # forms as this process stored them last

    def add_submit_listener(self, listener: Callable[[Score], Awaitable[object]]) -> None:
        """Called with the score after each submit has committed (e.g. the calibration's
        ``maybe_report``); its failure is logged and does not undo the submit."""
        self._on_submit.append(listener)

    # --- checklists -------------------------------------------------------------------------

    async def checklist_of(self, score: Score) -> Checklist:
        return await self._checklist(score.template_id)  # type: ignore[attr-defined]

    async def _checklist(self, template_id: int) -> Checklist:
        checklist = self._checklists.get(template_id)
        if checklist is None:
            checklist = await checklists.by_template_id(template_id)
            self._checklists[template_id] = checklist
        return checklist

    # --- who may act ------------------------------------------------------------------------

    @staticmethod
    def _require_quality(specialist: Staff) -> None:
        if specialist.role != Role.QUALITY or not specialist.active:
            raise AccessDenied(QUALITY_ONLY)

    @staticmethod
    def _covers(specialist: Staff, office_id: int) -> bool:
        own = specialist.office_id  # type: ignore[attr-defined]
        return own is None or own == office_id

    def _remember(self, score: Score) -> None:
        self._recent[score.id] = copy.copy(score)  # copies in and out: concurrent presses never share one
        self._recent.move_to_end(score.id)
        while len(self._recent) > RECENT_FORMS:
            self._recent.popitem(last=False)

    async def _own(self, specialist: Staff, score_id: int, revision: int | None = None, read_only: bool = False) -> Score:
        """The score, if this quality specialist opened it and still covers its office.

        A press that names the revision this process stored last skips the SELECT: the
        conditional UPDATE that follows still refuses if anything changed it meanwhile.
        ``read_only`` callers use only what never changes (conversation, specialist, office)."""
        self._require_quality(specialist)
        score = self._recent.get(score_id)
        if score is not None and (read_only or (revision is not None and score.revision == revision)):
            score = copy.copy(score)
        else:
            score = await Score.get_or_none(id=score_id).select_related("staff")
            if score is not None:
                self._remember(score)
        if score is None or score.specialist_id != specialist.id:  # type: ignore[attr-defined]
            raise NotFound(NOT_YOURS)  # a forged id learns nothing about other forms
        if not self._covers(specialist, score.office_id):  # type: ignore[attr-defined]
            raise AccessDenied(OUTSIDE_OFFICES)
        return score

    async def _draft(self, specialist: Staff, score_id: int, revision: int | None) -> Score:
        score = await self._own(specialist, score_id, revision)
        if score.status != ScoreStatus.DRAFT:
            raise DomainError(ALREADY_SUBMITTED)
        if revision is not None and score.revision != revision:
            raise DomainError(CHANGED)
        return score

    async def _store(self, score: Score, **changes: Any) -> Score:
        """One conditional UPDATE on the state the caller read; bumps the revision."""
        now = self._clock.now()
        changes.update(revision=score.revision + 1, updated_at=now)
        updated = await Score.filter(id=score.id, status=score.status, revision=score.revision).update(**changes)
        if updated != 1:
            self._recent.pop(score.id, None)
            raise DomainError(CHANGED)
        for name, value in changes.items():
            setattr(score, name, value)
        self._remember(score)
        return score

    # --- opening forms ----------------------------------------------------------------------

    async def next_form(self, specialist: Staff) -> Score:
        """The specialist's draft if there is one, else the oldest queued sample in their offices."""
        self._require_quality(specialist)
        draft = (
            await Score.filter(specialist_id=specialist.id, status=ScoreStatus.DRAFT)
            .order_by("-updated_at", "-id").select_related("staff").first()
        )
        if draft is not None and self._covers(specialist, draft.office_id):  # type: ignore[attr-defined]
            self._remember(draft)
            return draft
        own = specialist.office_id  # type: ignore[attr-defined]
        # an item this specialist took whose form was never created (a crash in between)
        for item in await SampleItem.filter(status=SampleStatus.TAKEN, taken_by_id=specialist.id).order_by("created_at", "id"):
            if not await Score.exists(
                conversation_id=item.conversation_id, specialist_id=specialist.id, calibration_id__isnull=True  # type: ignore[attr-defined]
            ):
                if own is None or item.office_id == own:  # type: ignore[attr-defined]
                    return await self.open(specialist, await _conversation(item.conversation_id))  # type: ignore[attr-defined]
        for _attempt in range(20):  # another specialist may take the same item first
            query = SampleItem.filter(status=SampleStatus.QUEUED)
            if own is not None:
                query = query.filter(office_id=own)
            item = await query.order_by("created_at", "id").first()
            if item is None:
                break
            # no transaction: on SQLite one would hold the only connection for every query of open()
            taken = await SampleItem.filter(id=item.id, status=SampleStatus.QUEUED).update(
                status=SampleStatus.TAKEN, taken_by_id=specialist.id
            )
            if taken != 1:
                continue
            try:
                return await self.open(specialist, await _conversation(item.conversation_id))  # type: ignore[attr-defined]
            except BaseException:
                await SampleItem.filter(id=item.id, status=SampleStatus.TAKEN, taken_by_id=specialist.id).update(
                    status=SampleStatus.QUEUED, taken_by_id=None
                )
                raise
        raise NotFound(_("The queue is empty: nothing to score now."))

    async def open(self, specialist: Staff, conversation: Conversation, calibration: Calibration | None = None) -> Score:
        """The specialist's form for this conversation (and calibration), created if new.

        The calibration's template is used when given, else the latest version of the
        service's checklist; the automatic criteria are pre-filled from the rule hits."""
        self._require_quality(specialist)
        if not self._covers(specialist, conversation.office_id):  # type: ignore[attr-defined]
            raise AccessDenied(OUTSIDE_OFFICES)
        calibration_id = calibration.id if calibration is not None else None
        same = {"calibration_id": calibration_id} if calibration_id is not None else {"calibration_id__isnull": True}
        existing = await Score.get_or_none(
            conversation_id=conversation.id, specialist_id=specialist.id, **same
        ).select_related("staff")
        if existing is not None:
            self._remember(existing)
            return existing
        if calibration is not None:
            template_id: int | None = calibration.template_id  # type: ignore[attr-defined]
        else:
            template_id = await ChecklistTemplate.filter(code=self._code).order_by("-version").first().values_list("id", flat=True)
            if template_id is None:
                raise NotFound(_("No checklist is loaded yet: an admin imports one with: loyalty checklists import FILE"))
        checklist = await self._checklist(template_id)
        office = conversation.office if isinstance(conversation.office, Office) else await Office.get(id=conversation.office_id)  # type: ignore[attr-defined]
        auto = checklists.auto_answers(checklist, conversation.rule_hits)
        answers = {cid: {"value": value, "auto": value, "comment": None} for cid, value in auto.items()}
        now = self._clock.now()
        try:
            score = await Score.create(
                conversation_id=conversation.id, template_id=checklist.template_id, specialist_id=specialist.id,
                staff_id=conversation.staff_id, office_id=office.id, calibration_id=calibration_id,  # type: ignore[attr-defined]
                answers=answers, position=0, month=_month(conversation.started_at, office.timezone),
                created_at=now, updated_at=now,
            )
        except IntegrityError:  # opened twice at once: the other call's row is the form
            score = await Score.get(conversation_id=conversation.id, specialist_id=specialist.id, **same)
        if conversation.staff_id is None:  # type: ignore[attr-defined]
            score.staff = None
        elif isinstance(conversation.staff, Staff):
            score.staff = conversation.staff
        else:
            await score.fetch_related("staff")
        self._remember(score)
        return score

    async def attach_message(self, specialist: Staff, score_id: int, revision: int, chat_id: int, message_id: int) -> Score:
        """The form was (re)sent as a new message drawn with ``revision + 1``: that message is now
        the form, and the buttons of every older copy are stale."""
        score = await self._draft(specialist, score_id, revision)
        return await self._store(score, chat_id=chat_id, message_id=message_id)

    async def materials(self, specialist: Staff, score_id: int, locale: str) -> Materials:
        """The recording's caption and the transcript with rule hits highlighted."""
        score = await self._own(specialist, score_id, read_only=True)
        conversation = await Conversation.get(id=score.conversation_id).select_related("office", "point", "staff")  # type: ignore[attr-defined]
        office = conversation.office
        zone = _zone(office.timezone)
        t = self._texts.t
        who = escape(conversation.staff.name) if conversation.staff else t(locale, "not identified")
        kind = t(locale, "negative rating") if conversation.kind == ConversationKind.NEGATIVE else t(locale, "call")
        caption = (
            "🎧 " + t(locale, "Conversation #{id}", id=conversation.id) + f" · {kind} · {escape(office.code)}/"
            f"{escape(conversation.point.code)} · {who} · {self._texts.local(conversation.started_at, zone)}"
        )
        seconds = max((conversation.ended_at - conversation.started_at).total_seconds(), 0.0)
        header = "📝 " + t(locale, "Transcript of conversation #{id}", id=conversation.id)
        segments = [Segment(float(s[0]), float(s[1]), str(s[2])) for s in conversation.transcript_segments or []]
        if not segments and not conversation.transcript:
            return Materials(conversation.audio_path, conversation.codec, seconds, caption,
                             [header + "\n" + t(locale, "The transcript is not ready yet.")])
        if not segments:
            segments = [Segment(0.0, seconds, conversation.transcript or "")]
        transcript = Transcript(office.language, seconds, segments, conversation.transcript or "")
        try:
            rules = RuleSet.from_config(office.speech_rules)
        except ValueError:
            rules = RuleSet()
        shown, result = check_transcript(transcript, rules)
        lines = highlight_html(shown, result).splitlines() or [t(locale, "(no speech recognised)")]
        if rules.forbidden or rules.required:
            parts = []
            if result.forbidden_hits:
                words = ", ".join(sorted({escape(h.word.lower()) for h in result.forbidden_hits}))
                parts.append("❗ " + t(locale, "forbidden: {words}", words=words))
            if result.required_missing:
                parts.append("⚠️ " + t(locale, "not heard: {names}", names=escape(", ".join(result.required_missing))))
            if not parts:
                parts.append("✅ " + t(locale, "speech rules met"))
            lines += ["", " · ".join(parts)]
        return Materials(conversation.audio_path, conversation.codec, seconds, caption, split_message(header, lines))

    # --- the form ---------------------------------------------------------------------------

    async def check(self, specialist: Staff, score_id: int, revision: int) -> Score:
        """A press that changes nothing (the section menu, closing it): still only the owner's
        current message."""
        return await self._draft(specialist, score_id, revision)

    async def answer(self, specialist: Staff, score_id: int, revision: int, criterion: str | int, value: str) -> Score:
        """Answer a criterion (its id, or its index in the form) and move to the next one."""
        score = await self._draft(specialist, score_id, revision)
        checklist = await self.checklist_of(score)
        index, item = _criterion(checklist, criterion)
        value = VALUES.get(value, value)
        if value not in ("yes", "no", "na") or (value == "na" and not item.na):
            raise DomainError(_("That answer is not possible for this criterion."))
        answers = dict(score.answers or {})
        entry = dict(answers.get(item.id) or {"auto": None, "comment": None})
        entry["value"] = value
        entry.setdefault("auto", None)
        answers[item.id] = entry
        return await self._store(score, answers=answers, position=min(index + 1, len(checklist.criteria)))

    async def back(self, specialist: Staff, score_id: int, revision: int) -> Score:
        score = await self._draft(specialist, score_id, revision)
        if score.position <= 0:
            raise DomainError(_("This is the first criterion."))
        return await self._store(score, position=score.position - 1)

    async def go_to(self, specialist: Staff, score_id: int, revision: int, index: int) -> Score:
        """Show criterion ``index``; the number of criteria shows the summary."""
        score = await self._draft(specialist, score_id, revision)
        total = len((await self.checklist_of(score)).criteria)
        if not 0 <= index <= total:
            raise DomainError(CHANGED)
        return await self._store(score, position=index)

    async def skip_to_section(self, specialist: Staff, score_id: int, revision: int, section: int) -> Score:
        score = await self._draft(specialist, score_id, revision)
        checklist = await self.checklist_of(score)
        if not 0 <= section < len(checklist.sections):
            raise DomainError(CHANGED)
        return await self._store(score, position=sum(len(s.criteria) for s in checklist.sections[:section]))

    async def remember_prompt(
        self, specialist: Staff, score_id: int, revision: int, criterion: int | None, chat_id: int, message_id: int
    ) -> Score:
        """The ForceReply prompt whose reply becomes the comment on ``criterion`` (an index;
        None: the whole form). Kept in the row, so a reply after a restart still lands."""
        score = await self._draft(specialist, score_id, revision)
        checklist = await self.checklist_of(score)
        criterion_id = _criterion(checklist, criterion)[1].id if criterion is not None else None
        answers = dict(score.answers or {})
        answers[META] = {**(answers.get(META) or {}), "prompt": [chat_id, message_id, criterion_id]}
        return await self._store(score, answers=answers)

    async def find_prompt(self, specialist: Staff, chat_id: int, message_id: int) -> tuple[int, str | None] | None:
        """(score id, criterion id or None for the form) if this message is one of the
        specialist's comment prompts; None if it is not a prompt of theirs."""
        if specialist.role != Role.QUALITY:
            return None
        drafts = await Score.filter(specialist_id=specialist.id, status=ScoreStatus.DRAFT).values("id", "answers")
        for row in drafts:
            prompt = ((row["answers"] or {}).get(META) or {}).get("prompt")
            if prompt and prompt[0] == chat_id and prompt[1] == message_id:
                return row["id"], prompt[2]
        return None

    async def criterion_label(self, score: Score, criterion: str | int) -> str:
        """«3. Greeted first» (plain text) for a criterion's id or index."""
        checklist = await self.checklist_of(score)
        index, item = _criterion(checklist, criterion)
        return f"{index + 1}. {item.text}"

    async def set_comment(
        self, specialist: Staff, score_id: int, criterion_id: str | None, text: str | None,
        voice_file_id: str | None = None,
    ) -> Score:
        """A comment on a criterion, or on the whole form (``criterion_id`` None), as text or
        a voice message (its Telegram file id). Replaces the previous one."""
        text = (text or "").strip()[:COMMENT_LIMIT] or None
        if text is None and not voice_file_id:
            raise DomainError(_("Send the comment as text or a voice message."))
        for _attempt in range(5):  # a press may land between the read and the write: read again
            score = await self._draft(specialist, score_id, None)
            answers = dict(score.answers or {})
            meta = dict(answers.get(META) or {})
            prompt = meta.get("prompt")
            if prompt and prompt[2] == criterion_id:
                meta.pop("prompt")
            changes: dict[str, Any] = {}
            if criterion_id is None:
                if voice_file_id:
                    meta["voice"] = voice_file_id
                else:
                    meta.pop("voice", None)
                changes["comment"] = text
            else:
                checklist = await self.checklist_of(score)
                _criterion(checklist, criterion_id)
                entry = dict(answers.get(criterion_id) or {"value": None, "auto": None})
                entry.update(comment=text, voice=voice_file_id)
                answers[criterion_id] = entry
            if meta:
                answers[META] = meta
            else:
                answers.pop(META, None)
            try:
                return await self._store(score, answers=answers, **changes)
            except DomainError:
                continue
        raise DomainError(CHANGED)

    # --- submitting and correcting ----------------------------------------------------------

    async def submit(self, specialist: Staff, score_id: int, revision: int) -> Score:
        """Count the score: refused while a criterion is unanswered and for a second tap.

        Marks the sample done, keeps the recording as long as scored audio is kept, and
        queues the employee's private feedback unless their office turned it off."""
        score = await self._draft(specialist, score_id, revision)
        checklist = await self.checklist_of(score)
        result = checklists.score(checklist, answer_values(score.answers))
        if result.unanswered:
            first = checklist.criteria.index(checklist.criterion(result.unanswered[0])) + 1
            raise DomainError(
                _("{count} criteria have no answer yet (the first is No. {number})."),
                count=len(result.unanswered), number=first,
            )
        now = self._clock.now()
        # reads first, in one query: on SQLite a transaction holds the only connection while it lasts
        conversation = await Conversation.get(id=score.conversation_id).select_related("office", "staff")  # type: ignore[attr-defined]
        corrected = score.submitted_at is not None  # submitted before, then corrected
        feedback = self._feedback(score, checklist, conversation, corrected, result.percent, result.critical_failed)
        keep = now + self._keep
        async with in_transaction():
            score = await self._store(
                score, status=ScoreStatus.SUBMITTED, result=result.percent, critical_failed=result.critical_failed,
                submitted_at=now, position=len(checklist.criteria),
            )
            if score.calibration_id is None:  # type: ignore[attr-defined]
                await SampleItem.filter(
                    conversation_id=score.conversation_id, status__in=[SampleStatus.QUEUED, SampleStatus.TAKEN]  # type: ignore[attr-defined]
                ).update(status=SampleStatus.DONE)
            if conversation.keep_until is None or conversation.keep_until < keep:  # scored audio is kept
                await Conversation.filter(id=conversation.id).update(keep_until=keep)
            if feedback is not None:
                await OutboxMessage.create(
                    chat_id=feedback[0], kind=OutboxKind.TEXT, text=feedback[1], next_attempt_at=now, created_at=now
                )
        if feedback is not None:
            self._on_outbox()
        for listener in self._on_submit:
            try:
                await listener(score)
            except Exception:
                log.exception("a submit listener failed for score #%s", score.id)
        return score

    def _feedback(
        self, score: Score, checklist: Checklist, conversation: Conversation, corrected: bool,
        percent: float | None, critical_failed: bool,
    ) -> tuple[int, str] | None:
        """(chat, text) of the employee's private message, or None: the conversation's office
        turned it off, nobody to tell, or a calibration form (those are blind)."""
        if score.calibration_id is not None:  # type: ignore[attr-defined]
            return None
        office, employee = conversation.office, conversation.staff
        if not office.quality_feedback or employee is None or not employee.telegram_id or not employee.active:
            return None
        locale = employee.language or office.language
        return employee.telegram_id, self.feedback_text(
            score, checklist, conversation, _zone(office.timezone), locale, corrected, percent, critical_failed
        )

    def feedback_text(
        self, score: Score, checklist: Checklist, conversation: Conversation, zone: ZoneInfo, locale: str,
        corrected: bool = False, percent: float | None = None, critical_failed: bool | None = None,
    ) -> str:
        """The employee's message; ``percent``/``critical_failed`` default to the score's."""
        t = self._texts.t
        percent = score.result if percent is None else percent
        critical_failed = score.critical_failed if critical_failed is None else critical_failed
        when = self._texts.local(conversation.started_at, zone)
        title = (t(locale, "Your conversation of {when} was re-scored", when=when) if corrected
                 else t(locale, "Your conversation of {when} was scored", when=when))
        lines = [f"📋 <b>{title}</b>", f"{escape(checklist.name)}: <b>{_percent(percent)}</b>"]
        if critical_failed:
            lines.append("❗ " + t(locale, "A critical criterion was not met: the score is 0 %."))
        answers = score.answers or {}
        failed = [c for c in checklist.criteria if (answers.get(c.id) or {}).get("value") == "no"]
        if failed:
            lines += ["", t(locale, "Not met:")]
            for item in failed:
                lines.append(f"• {escape(item.text)}{' ❗' if item.critical else ''}{self._comment_suffix(answers.get(item.id), locale)}")
        else:
            lines += ["", "✅ " + t(locale, "Every criterion was met.")]
        comment = self._form_comment(score, locale)
        if comment:
            lines += ["", "💬 " + t(locale, "Comment") + f": {comment}"]
        return _fit("\n".join(lines))

    async def correct(self, specialist: Staff, score_id: int, revision: int | None = None) -> Score:
        """Back to a draft, answers kept, within 24 hours of the first submission; the
        submitted version goes to the history (``ScoreRevision``)."""
        score = await self._own(specialist, score_id)
        if score.status != ScoreStatus.SUBMITTED:
            raise DomainError(_("Only a submitted score can be corrected."))
        if revision is not None and score.revision != revision:
            raise DomainError(CHANGED)
        first = await ScoreRevision.filter(score_id=score.id).order_by("submitted_at", "id").first()
        since = first.submitted_at if first is not None and first.submitted_at else score.submitted_at
        now = self._clock.now()
        if since is None or now - since > CORRECTION_WINDOW:
            raise DomainError(_("A score can be corrected within 24 hours of its submission; this one no longer."))
        async with in_transaction():
            await ScoreRevision.create(
                score_id=score.id, answers=score.answers, comment=score.comment, result=score.result,
                submitted_at=score.submitted_at, replaced_at=now,
            )
            score = await self._store(score, status=ScoreStatus.DRAFT)
        return score

    async def history(self, score_id: int) -> list[ScoreRevision]:
        return await ScoreRevision.filter(score_id=score_id).order_by("id")

    # --- rendering --------------------------------------------------------------------------

    def form_text(
        self, score: Score, checklist: Checklist, locale: str, revision: int | None = None, sections: bool = False
    ) -> tuple[str, InlineKeyboardMarkup | None]:
        """The one message of the form: a criterion, or the summary once past the last one,
        or the submitted score. ``revision`` draws the buttons for a revision about to be
        stored (a re-sent form); ``sections`` shows the section menu instead of the answers."""
        rev = score.revision if revision is None else revision
        if score.status == ScoreStatus.SUBMITTED:
            return self._submitted(score, checklist, locale, rev)
        if score.position >= len(checklist.criteria):
            text, keyboard = self._summary(score, checklist, locale, rev)
        else:
            text, keyboard = self._criterion_view(score, checklist, locale, rev)
        if sections:
            keyboard = self._sections_keyboard(score, checklist, locale, rev)
        return text, keyboard

    def _header(self, score: Score, checklist: Checklist, locale: str) -> str:
        staff = getattr(score, "staff", None)
        who = f" · {escape(staff.name)}" if isinstance(staff, Staff) else ""
        number = self._texts.t(locale, "conversation #{id}", id=score.conversation_id)  # type: ignore[attr-defined]
        return f"📋 <b>{escape(checklist.name)}</b> · {number}{who}"

    def _running(self, score: Score, checklist: Checklist, locale: str) -> str:
        t = self._texts.t
        values = answer_values(score.answers)
        result = checklists.score(checklist, values)
        answered = len(checklist.criteria) - len(result.unanswered)
        line = t(locale, "Score so far: {percent} · answered {answered} of {total}",
                 percent=_percent(result.percent), answered=answered, total=len(checklist.criteria))
        if result.critical_failed:
            line += " · ❗ " + t(locale, "critical criterion failed")
        return line

    def _value_label(self, value: str | None, locale: str) -> str:
        t = self._texts.t
        return {"yes": t(locale, "Yes"), "no": t(locale, "No"), "na": t(locale, "N/A")}.get(value or "", "—")

    def _comment_suffix(self, entry: Mapping[str, Any] | None, locale: str) -> str:
        if not entry:
            return ""
        if entry.get("comment"):
            return f" — 💬 {escape(entry['comment'])}"
        if entry.get("voice"):
            return " — 💬 " + self._texts.t(locale, "(voice message)")
        return ""

    def _form_comment(self, score: Score, locale: str) -> str:
        if score.comment:
            return escape(score.comment)
        if ((score.answers or {}).get(META) or {}).get("voice"):
            return self._texts.t(locale, "(voice message)")
        return ""

    def _criterion_view(self, score: Score, checklist: Checklist, locale: str, rev: int) -> tuple[str, InlineKeyboardMarkup]:
        t = self._texts.t
        index = score.position
        item = checklist.criteria[index]
        section = next(s for s in checklist.sections if item in s.criteria)
        entry = (score.answers or {}).get(item.id) or {}
        value, auto = entry.get("value"), entry.get("auto")
        lines = [
            self._header(score, checklist, locale),
            t(locale, "Criterion {number} of {total} · section «{section}»",
              number=index + 1, total=len(checklist.criteria), section=escape(section.name)),
            "",
            f"<b>{escape(item.text)}</b>",
        ]
        traits = [t(locale, "{points} pt.", points=item.points)]
        if item.critical:
            traits.append("❗ " + t(locale, "critical"))
        if item.auto is not None:
            traits.append("🤖 " + t(locale, "automatic"))
        lines.append("<i>" + " · ".join(traits) + "</i>")
        if value is not None and auto is not None and value == auto:
            lines.append("🤖 " + t(locale, "From the transcript: {value}", value=self._value_label(auto, locale)))
        elif value is not None and auto is not None:
            lines.append("✏️ " + t(locale, "Answer: {value} (changed by hand; automatic: {auto})",
                                   value=self._value_label(value, locale), auto=self._value_label(auto, locale)))
        elif value is not None:
            lines.append(t(locale, "Answer: {value}", value=self._value_label(value, locale)))
        comment = self._comment_suffix(entry, locale)
        if comment:
            lines.append(comment.removeprefix(" — "))
        lines += ["", self._running(score, checklist, locale)]

        def cb(action: str, c: int = index) -> str:
            return ScoreCb(a=action, s=score.id, r=rev, c=c).pack()

        def mark(label: str, answer: str) -> str:
            return f"✅ {label}" if value == answer else label

        answers_row = [
            InlineKeyboardButton(text=mark(t(locale, "Yes"), "yes"), callback_data=cb("y")),
            InlineKeyboardButton(text=mark(t(locale, "No"), "no"), callback_data=cb("n")),
        ]
        if item.na:
            answers_row.append(InlineKeyboardButton(text=mark(t(locale, "N/A"), "na"), callback_data=cb("a")))
        nav = []
        if index > 0:
            nav.append(InlineKeyboardButton(text="⬅️ " + t(locale, "Back"), callback_data=cb("b")))
        nav.append(InlineKeyboardButton(text="⏭ " + t(locale, "To section…"), callback_data=cb("k")))
        if value is not None:
            nav.append(InlineKeyboardButton(text="➡️ " + t(locale, "Next"), callback_data=cb("j", index + 1)))
        rows = [answers_row, nav, [InlineKeyboardButton(text="💬 " + t(locale, "Comment"), callback_data=cb("m"))]]
        return _fit("\n".join(lines)), InlineKeyboardMarkup(inline_keyboard=rows)

    def _summary_lines(self, score: Score, checklist: Checklist, locale: str) -> tuple[list[str], Any]:
        t = self._texts.t
        answers = score.answers or {}
        result = checklists.score(checklist, answer_values(answers))
        icons = {"yes": "✅", "no": "❌", "na": "➖"}
        lines: list[str] = []
        number = 0
        for section, section_score in zip(checklist.sections, result.sections, strict=True):
            lines.append(f"<b>{escape(section.name)}</b> ({section.weight:g} %): {_percent(section_score.percent)}")
            for item in section.criteria:
                number += 1
                entry = answers.get(item.id) or {}
                value = entry.get("value")
                text = item.text if len(item.text) <= SUMMARY_TEXT_LIMIT else item.text[: SUMMARY_TEXT_LIMIT - 1] + "…"
                marks = ""
                if entry.get("auto") is not None:
                    marks += " 🤖" if value == entry.get("auto") else " ✏️"
                if item.critical:
                    marks += " ❗"
                lines.append(f"{icons.get(value or '', '▫️')} {number}. {escape(text)}{marks}{self._comment_suffix(entry, locale)}")
        lines.append("")
        total = t(locale, "Score: {percent}", percent=_percent(result.percent))
        lines.append(f"<b>{total}</b>")
        if result.critical_failed:
            lines.append("❗ " + t(locale, "A critical criterion was not met: the score is 0 %."))
        comment = self._form_comment(score, locale)
        if comment:
            lines.append("💬 " + t(locale, "Comment") + f": {comment}")
        return lines, result

    def _summary(self, score: Score, checklist: Checklist, locale: str, rev: int) -> tuple[str, InlineKeyboardMarkup]:
        t = self._texts.t
        body, result = self._summary_lines(score, checklist, locale)
        lines = [self._header(score, checklist, locale), t(locale, "Summary: check and submit"), "", *body]
        total = len(checklist.criteria)

        def cb(action: str, c: int = total) -> str:
            return ScoreCb(a=action, s=score.id, r=rev, c=c).pack()

        rows: list[list[InlineKeyboardButton]] = []
        if result.unanswered:
            first = checklist.criteria.index(checklist.criterion(result.unanswered[0]))
            lines.append("⚠️ " + t(locale, "{count} criteria have no answer yet (the first is No. {number}).",
                                   count=len(result.unanswered), number=first + 1))
            rows.append([InlineKeyboardButton(text="➡️ " + t(locale, "To the first unanswered"), callback_data=cb("j", first))])
        else:
            rows.append([InlineKeyboardButton(text="✅ " + t(locale, "Submit"), callback_data=cb("s"))])
        rows.append([
            InlineKeyboardButton(text="⬅️ " + t(locale, "Back"), callback_data=cb("b")),
            InlineKeyboardButton(text="⏭ " + t(locale, "To section…"), callback_data=cb("k")),
        ])
        rows.append([InlineKeyboardButton(text="💬 " + t(locale, "Comment on the whole form"), callback_data=cb("f"))])
        return _fit("\n".join(lines)), InlineKeyboardMarkup(inline_keyboard=rows)

    def _submitted(self, score: Score, checklist: Checklist, locale: str, rev: int) -> tuple[str, InlineKeyboardMarkup | None]:
        t = self._texts.t
        body, _result = self._summary_lines(score, checklist, locale)
        done = t(locale, "Submitted: {percent}", percent=_percent(score.result))
        lines = [self._header(score, checklist, locale), f"✅ <b>{done}</b>", "", *body, "",
                 t(locale, "Next conversation: /score")]
        keyboard = None
        if score.submitted_at is not None and self._clock.now() - score.submitted_at <= CORRECTION_WINDOW:
            button = InlineKeyboardButton(
                text="✏️ " + t(locale, "Correct (24 h)"), callback_data=ScoreCb(a="e", s=score.id, r=rev).pack()
            )
            keyboard = InlineKeyboardMarkup(inline_keyboard=[[button]])
        return _fit("\n".join(lines)), keyboard

    def _sections_keyboard(self, score: Score, checklist: Checklist, locale: str, rev: int) -> InlineKeyboardMarkup:
        t = self._texts.t
        answers = answer_values(score.answers)
        rows = []
        for n, section in enumerate(checklist.sections):
            done = sum(1 for c in section.criteria if c.id in answers)
            icon = "✅" if done == len(section.criteria) else "▫️"
            rows.append([InlineKeyboardButton(
                text=f"{icon} {section.name} {done}/{len(section.criteria)}",
                callback_data=ScoreCb(a="g", s=score.id, r=rev, c=n).pack(),
            )])
        total = len(checklist.criteria)
        rows.append([
            InlineKeyboardButton(text="📋 " + t(locale, "Summary"), callback_data=ScoreCb(a="j", s=score.id, r=rev, c=total).pack()),
            InlineKeyboardButton(text="✖️ " + t(locale, "Close"), callback_data=ScoreCb(a="x", s=score.id, r=rev, c=score.position).pack()),
        ])
        return InlineKeyboardMarkup(inline_keyboard=rows)


def _criterion(checklist: Checklist, criterion: str | int) -> tuple[int, Criterion]:
    items = checklist.criteria
    if isinstance(criterion, int):
        if not 0 <= criterion < len(items):
            raise DomainError(CHANGED)
        return criterion, items[criterion]
    for index, item in enumerate(items):
        if item.id == criterion:
            return index, item
    raise DomainError(CHANGED)


async def _conversation(conversation_id: int) -> Conversation:
    return await Conversation.get(id=conversation_id).select_related("office", "staff")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else DEFAULT_ZONE
    except (KeyError, ValueError):
        return DEFAULT_ZONE


def _month(at: datetime, timezone: str | None) -> date:
    local = at.astimezone(_zone(timezone))
    return date(local.year, local.month, 1)


def _percent(value: float | None) -> str:
    """Whole percent, halves rounded up (77.5 → 78, 82.5 → 83), as people round."""
    return "—" if value is None else f"{int(Decimal(repr(value)).quantize(Decimal(1), ROUND_HALF_UP))} %"


def _fit(text: str) -> str:
    """Within Telegram's limit: a very long checklist loses the end of its summary, not the message."""
    if len(text) <= TELEGRAM_TEXT_LIMIT:
        return text
    lines, out, size = text.split("\n"), [], 0
    for line in lines:
        if size + len(line) + 1 > TELEGRAM_TEXT_LIMIT - 2:
            out.append("…")
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out)
