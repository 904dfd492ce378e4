"""The quality service's monthly sampling plan (which conversations get scored, who is left)
and calibration (several specialists score one conversation blind, then compare).

Each month every employee gets ``per_staff`` conversations (default 6) picked at random among
their conversations *with audio* (``Conversation.audio_path`` is set) of that month. A
month is the office's local calendar month: the conversation's ``started_at`` is compared
with the UTC bounds of local midnight on the 1st in each office's own time zone, so a call at
00:30 MSK on 1 December belongs to December even though it is still November in UTC.

``plan`` is an idempotent top-up, never a redraw: an employee who already has N items keeps
them; one with fewer (new conversations since, a new employee, a larger N) gets the
difference from the conversations not yet in the month's sample. A conversation is in a
month's sample at most once (``SampleItem`` is unique on month and conversation). With
``negatives_first`` an employee's conversations cut around a negative rating
(``ConversationKind.NEGATIVE``) are drawn before the others. Randomness comes in from outside:
with a ``seed`` the draw for (month, employee) is reproducible and independent of everyone
else's; without one it is not.

A plan's items are counted as done when the sample item is ``done`` (the scoring service
marks it when a score of that conversation is submitted) or when a submitted score that is
not a calibration's exists for its conversation, whichever the scoring service records.

Calibration (``CalibrationService``): see its docstring; the per-criterion agreement and the
"differs by more than 10 %" flag are defined on ``CriterionAgreement``.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from html import escape
from zoneinfo import ZoneInfo

from tortoise.expressions import Q
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from bot import checklists
from bot.checklists import ANSWERS, Checklist, Criterion
from bot.clock import Clock
from bot.errors import AccessDenied, DomainError, NotFound
from bot.models import (
    Calibration,
    Conversation,
    ConversationKind,
    Office,
    OutboxKind,
    OutboxMessage,
    Role,
    SampleItem,
    SampleStatus,
    Score,
    ScoreStatus,
    Staff,
)
from bot.scoring import ScoreService, answer_values
from bot.speech_service import split_message
from bot.texts import Texts, _

__all__ = [
    "CalibrationParticipant",
    "CalibrationResult",
    "CalibrationService",
    "CalibrationStarted",
    "CriterionAgreement",
    "DEFAULT_PER_STAFF",
    "MAX_PER_STAFF",
    "PlanReport",
    "QueueLine",
    "SamplingService",
    "agreement_of",
    "month_bounds",
    "month_start",
    "next_month",
    "parse_month",
]

DEFAULT_PER_STAFF = 6
MAX_PER_STAFF = 100
DEFAULT_ZONE = ZoneInfo("Europe/Moscow")
QUEUE_ROLES = (Role.QUALITY, Role.MANAGER, Role.ADMIN)


# --- months -------------------------------------------------------------------------------


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + 1, 1, 1) if month.month == 12 else date(month.year, month.month + 1, 1)


def month_bounds(month: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[from, to)``: local midnight on the 1st of ``month`` to that of the next, in ``tz``."""
    first = month_start(month)
    return datetime.combine(first, time(), tz), datetime.combine(next_month(first), time(), tz)


def parse_month(text: str) -> date:
    """``2026-11`` → 1 November 2026; raises ``DomainError`` with what to type otherwise."""
    try:
        year, month = (int(part) for part in text.strip().split("-"))
        return date(year, month, 1)
    except ValueError:
        raise DomainError(_("{text} is not a month; write it as YYYY-MM, e.g. 2026-11."), text=text.strip()) from None


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueLine:
    """One employee's part of a month's plan in one office: how many are still to score."""

    staff_id: int
    staff: str  # the employee's name
    office: str  # the office's code
    left: int  # queued or taken, not scored yet
    done: int


@dataclass(slots=True)
class PlanReport:
    """What ``plan`` did; ``short`` lists employees who had fewer conversations with audio than N."""

    month: date
    per_staff: int
    added: int = 0
    total: int = 0  # items in the month's plan (in the offices planned) after the top-up
    employees: int = 0  # employees with conversations with audio in the month
    short: list[tuple[str, int]] = field(default_factory=list)  # (name, items they have) below N


# --- the service --------------------------------------------------------------------------


class SamplingService:
    def __init__(self, clock: Clock, per_staff: int = DEFAULT_PER_STAFF, negatives_first: bool = False,
                 seed: int | str | None = None) -> None:
        if not 1 <= per_staff <= MAX_PER_STAFF:
            raise ValueError(f"per_staff must be 1..{MAX_PER_STAFF}, got {per_staff}")
        self._clock = clock
        self.per_staff = per_staff
        self.negatives_first = negatives_first
        self._seed = seed
        self._random = random.Random(seed)

    # --- who and when ---

    def current_month(self, staff: Staff | None = None) -> date:
        """The month it is now in ``staff``'s office (Moscow when they have none)."""
        office = getattr(staff, "office", None) if staff is not None else None
        tz = ZoneInfo(office.timezone) if isinstance(office, Office) else DEFAULT_ZONE
        return month_start(self._clock.now().astimezone(tz).date())

    @staticmethod
    def office_ids(staff: Staff) -> tuple[int, ...] | None:
        """The offices whose plan ``staff`` sees: ``None`` is all of them.

        The quality service and admins without an office see every office; with an office,
        and a manager always, their own. Front staff see none (``AccessDenied``).
        """
        if staff.role not in QUEUE_ROLES:
            raise AccessDenied(_("The scoring queue is for the quality service and managers."))
        office_id = staff.office_id  # type: ignore[attr-defined]
        if office_id is None:
            if staff.role == Role.MANAGER:
                raise AccessDenied(_("You are not attached to an office; ask an admin."))
            return None
        return (office_id,)

    def _rng(self, month: date, staff_id: int) -> random.Random:
        if self._seed is None:
            return self._random
        return random.Random(f"{self._seed}:{month.isoformat()}:{staff_id}")

    # --- the plan ---

    async def plan(self, month: date, *, per_staff: int | None = None, negatives_first: bool | None = None,
                   office_ids: Sequence[int] | None = None) -> PlanReport:
        """Top the month's plan up to ``per_staff`` items per employee (idempotent).

        Only active employees' conversations with audio count. ``office_ids`` limits the
        top-up to those offices' conversations (a specialist bound to an office plans only
        theirs); an employee's quota is per month whatever the office, so items they already
        have anywhere in the month count towards it. Runs in one transaction that locks the
        employees' rows (PostgreSQL), so two top-ups at once cannot both fill the same quota.
        """
        month = month_start(month)
        n = self.per_staff if per_staff is None else per_staff
        if not 1 <= n <= MAX_PER_STAFF:
            raise DomainError(_("N must be a whole number from 1 to {max}."), max=MAX_PER_STAFF)
        first = self.negatives_first if negatives_first is None else negatives_first
        report = PlanReport(month=month, per_staff=n)
        offices = await (Office.filter(id__in=list(office_ids)) if office_ids is not None else Office.all()).values_list(
            "id", "timezone"
        )
        if not offices:
            return report
        in_month = Q(
            *[
                # in UTC: SQLite compares the stored text, and that is UTC
                Q(office_id=office_id, started_at__gte=begin.astimezone(UTC), started_at__lt=after.astimezone(UTC))
                for office_id, zone in offices
                for begin, after in [month_bounds(month, ZoneInfo(zone))]
            ],
            join_type=Q.OR,
        )
        async with in_transaction():
            rows = await (
                Conversation.filter(in_month, audio_path__isnull=False, staff_id__isnull=False, staff__active=True)
                .order_by("id")
                .values_list("id", "staff_id", "office_id", "kind")
            )
            candidates: dict[int, list[tuple[int, int, bool]]] = defaultdict(list)
            for conversation_id, staff_id, office_id, kind in rows:
                candidates[staff_id].append((conversation_id, office_id, kind == ConversationKind.NEGATIVE))
            if not candidates:
                return report
            staff_ids = sorted(candidates)
            # serialise top-ups of the same employees; SQLite serialises writers anyway
            names = {s.id: s.name for s in await Staff.filter(id__in=staff_ids).select_for_update().order_by("id")}
            have = dict(
                await SampleItem.filter(month=month, staff_id__in=staff_ids)
                .annotate(n=Count("id"))
                .group_by("staff_id")
                .values_list("staff_id", "n")
            )
            taken = set(
                await SampleItem.filter(month=month, conversation_id__in=[r[0] for r in rows]).values_list(
                    "conversation_id", flat=True
                )
            )
            now = self._clock.now()
            new: list[SampleItem] = []
            for staff_id in staff_ids:
                need = n - have.get(staff_id, 0)
                pool = [c for c in candidates[staff_id] if c[0] not in taken]
                if need > 0 and pool:
                    for conversation_id, office_id, negative in self._draw(pool, need, first, self._rng(month, staff_id)):
                        new.append(SampleItem(
                            month=month, staff_id=staff_id, office_id=office_id, conversation_id=conversation_id,
                            negative=negative, status=SampleStatus.QUEUED, created_at=now,
                        ))
                        have[staff_id] = have.get(staff_id, 0) + 1
                if have.get(staff_id, 0) < n:
                    report.short.append((names.get(staff_id, str(staff_id)), have.get(staff_id, 0)))
            if new:
                await SampleItem.bulk_create(new)
        report.added = len(new)
        report.employees = len(staff_ids)
        planned = SampleItem.filter(month=month)
        if office_ids is not None:
            planned = planned.filter(office_id__in=list(office_ids))
        report.total = await planned.count()
        report.short.sort()
        return report

    @staticmethod
    def _draw(pool: list[tuple[int, int, bool]], need: int, negatives_first: bool,
              rng: random.Random) -> list[tuple[int, int, bool]]:
        """``need`` of ``pool`` (sorted by id) at random; negatives before the rest if asked."""
        if not negatives_first:
            return rng.sample(pool, min(need, len(pool)))
        negatives = [c for c in pool if c[2]]
        others = [c for c in pool if not c[2]]
        picked = rng.sample(negatives, min(need, len(negatives)))
        return picked + rng.sample(others, min(need - len(picked), len(others)))

    async def has_plan(self, month: date, office_ids: Sequence[int] | None = None) -> bool:
        query = SampleItem.filter(month=month_start(month))
        if office_ids is not None:
            query = query.filter(office_id__in=list(office_ids))
        return await query.exists()

    # --- the queue ---

    async def queue(self, specialist: Staff, month: date) -> list[QueueLine]:
        """Per employee and office of the specialist's offices: items left and done, by office then name.

        An item is done when it is marked ``done`` or its conversation has a submitted score
        that is not a calibration's; everything else (queued, or taken by someone who has
        not submitted yet) is left.
        """
        office_ids = self.office_ids(specialist)
        month = month_start(month)
        items = SampleItem.filter(month=month)
        if office_ids is not None:
            items = items.filter(office_id__in=list(office_ids))
        rows = (
            await items.annotate(n=Count("id"))
            .group_by("staff_id", "staff__name", "office__code", "status")
            .values_list("staff_id", "staff__name", "office__code", "status", "n")
        )
        counts: dict[tuple[int, str, str], list[int]] = {}
        for staff_id, name, office, status, n in rows:
            left_done = counts.setdefault((staff_id, name, office), [0, 0])
            left_done[1 if status == SampleStatus.DONE else 0] += n
        open_items = await items.filter(status__not=SampleStatus.DONE).values_list(
            "conversation_id", "staff_id", "staff__name", "office__code"
        )
        if open_items:
            # items not marked done whose conversation was scored anyway (a month's sample is small)
            scored = set(
                await Score.filter(
                    status=ScoreStatus.SUBMITTED, calibration_id__isnull=True,
                    conversation_id__in=[item[0] for item in open_items],
                ).values_list("conversation_id", flat=True)
            )
            for conversation_id, staff_id, name, office in open_items:
                if conversation_id in scored:
                    left_done = counts[(staff_id, name, office)]
                    left_done[0] -= 1
                    left_done[1] += 1
        lines = [QueueLine(staff_id, name, office, left, done) for (staff_id, name, office), (left, done) in counts.items()]
        lines.sort(key=lambda line: (line.office, line.staff, line.staff_id))
        return lines


# --- calibration --------------------------------------------------------------------------

TOTAL_SPREAD_NOTE = 10.0  # percentage points between the highest and lowest total worth a look
FLAG_SPREAD = 0.10  # a criterion whose points share differs by more than this is flagged
_EPSILON = 1e-9  # 0.6 − 0.5 is 0.0999…9 in floats: "more than 10 %" must not catch exactly 10 %


@dataclass(frozen=True, slots=True)
class CalibrationStarted:
    calibration_id: int
    conversation_id: int
    participants: list[str]  # names, in the order they were asked


@dataclass(frozen=True, slots=True)
class CalibrationParticipant:
    staff_id: int
    name: str
    score_id: int
    result: float | None  # the total, 0–100
    critical_failed: bool


@dataclass(frozen=True, slots=True)
class CriterionAgreement:
    """How the specialists answered one criterion; tuples are in participant order.

    - ``agreement``: the share of specialists who gave the modal answer (yes/no/N/A; a tie
      takes the first of yes, no, N/A), 1.0 when everyone agrees;
    - ``shares``: each specialist's points share of the criterion, earned / applicable
      points (yes 1.0, no 0.0; N/A is ``None``: the criterion did not apply for them);
    - ``spread``: max − min of the shares that are not ``None`` (``None`` when nobody
      applied it);
    - ``flagged``: ``spread`` > 10 % (0.10), or the specialists disagree on whether it applies
      at all (some N/A, some not), which moves the totals just as much.
    """

    criterion_id: str
    text: str
    critical: bool
    answers: tuple[str | None, ...]
    modal: str | None
    agreement: float
    shares: tuple[float | None, ...]
    spread: float | None
    applicability_differs: bool

    @property
    def flagged(self) -> bool:
        return self.applicability_differs or (self.spread is not None and self.spread > FLAG_SPREAD + _EPSILON)


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    calibration_id: int
    conversation_id: int
    checklist: str  # its name
    participants: tuple[CalibrationParticipant, ...]
    criteria: tuple[CriterionAgreement, ...]

    @property
    def flagged(self) -> list[CriterionAgreement]:
        return [c for c in self.criteria if c.flagged]

    @property
    def agreement(self) -> float:
        """Mean agreement over the criteria, 0…1."""
        return sum(c.agreement for c in self.criteria) / len(self.criteria) if self.criteria else 1.0

    @property
    def total_spread(self) -> float | None:
        """Highest minus lowest total, in percentage points (``None`` when no total exists)."""
        totals = [p.result for p in self.participants if p.result is not None]
        return max(totals) - min(totals) if totals else None

    @property
    def mean_total(self) -> float | None:
        totals = [p.result for p in self.participants if p.result is not None]
        return sum(totals) / len(totals) if totals else None


def agreement_of(checklist: Checklist, answers: Sequence[Mapping[str, str]]) -> list[CriterionAgreement]:
    """Per criterion of ``checklist`` (form order): ``answers[i]`` is participant i's ``{id: yes|no|na}``."""
    out = []
    order = {answer: n for n, answer in enumerate(ANSWERS)}
    for criterion in checklist.criteria:
        given = tuple(values.get(criterion.id) for values in answers)
        counts = Counter(a for a in given if a is not None)
        modal = min(counts, key=lambda a: (-counts[a], order.get(a, 99))) if counts else None
        agreement = counts[modal] / len(given) if modal is not None and given else 0.0
        shares = tuple(_share(criterion, answer) for answer in given)
        applied = [s for s in shares if s is not None]
        out.append(CriterionAgreement(
            criterion_id=criterion.id, text=criterion.text, critical=criterion.critical, answers=given, modal=modal,
            agreement=agreement, shares=shares, spread=max(applied) - min(applied) if applied else None,
            applicability_differs=bool(applied) and len(applied) < len(shares),
        ))
    return out


def _share(criterion: Criterion, answer: str | None) -> float | None:
    """Earned / applicable points of one criterion: yes → 1, no → 0, N/A or none → not applicable."""
    if answer not in ("yes", "no"):
        return None
    earned = criterion.points if answer == "yes" else 0
    return earned / criterion.points


class CalibrationService:
    """``/calibrate``: several specialists score the same conversation blind.

    Each participant gets their own DRAFT ``Score`` tied to the calibration (``ScoreService.open``
    with ``calibration=…``) and a private message asking them to run ``/score``, which
    resumes drafts first. Nobody sees anyone else's answers: a form shows only its own
    specialist's answers, and the result exists only once every participant has submitted;
    then ``maybe_report`` (called after each submit) sends it to everyone once. Calibration
    scores never count in the KPI, the sample or the employee's feedback.
    """

    def __init__(self, clock: Clock, texts: Texts, score_service: ScoreService,
                 on_outbox: Callable[[], None] = lambda: None, checklist_code: str = "desk-sales") -> None:
        self._clock = clock
        self._texts = texts
        self._scores = score_service
        self._on_outbox = on_outbox
        self._code = checklist_code

    async def start(self, specialist: Staff, conversation_id: int,
                    participants: Sequence[Staff] | None = None) -> CalibrationStarted:
        """Open a calibration of a conversation with audio; the participants default to every
        active quality specialist with a Telegram account who covers its office (at least two)."""
        if specialist.role != Role.QUALITY or not specialist.active:
            raise AccessDenied(_("Calibration is for the quality service."))
        conversation = await Conversation.get_or_none(id=conversation_id)
        office_id = conversation.office_id if conversation is not None else None  # type: ignore[attr-defined]
        if conversation is None or not _covers(specialist, office_id):
            raise NotFound(_("No conversation #{id} in your offices."), id=conversation_id)
        if conversation.audio_path is None:
            raise DomainError(_("Conversation #{id} has no recording any more; pick another one."), id=conversation_id)
        if participants is None:
            people = await Staff.filter(role=Role.QUALITY, active=True, telegram_id__isnull=False).order_by("name", "id")
        else:
            people = list(participants)
        chosen: dict[int, Staff] = {}
        for person in people:
            if person.role == Role.QUALITY and person.active and person.telegram_id and _covers(person, office_id):
                chosen.setdefault(person.id, person)
            elif participants is not None:
                raise DomainError(_("{name} cannot take part: a calibration is for active quality specialists with "
                                    "a Telegram account who cover the conversation's office."), name=person.name)
        if len(chosen) < 2:
            raise DomainError(_("A calibration needs at least two quality specialists; found {count}."), count=len(chosen))
        checklist = await checklists.latest(self._code)
        if checklist is None or checklist.template_id is None:
            raise NotFound(_("No checklist is loaded yet: an admin imports one with: loyalty checklists import FILE"))
        office = await Office.get(id=office_id)
        now = self._clock.now()
        async with in_transaction():
            calibration = await Calibration.create(
                conversation_id=conversation.id, template_id=checklist.template_id, created_by_id=specialist.id,
                created_at=now,
            )
            for person in chosen.values():
                await self._scores.open(person, conversation, calibration=calibration)
                locale = person.language or office.language
                text = self._texts.t(
                    locale,
                    "🎯 Calibration #{calibration}: please score conversation #{conversation} on your own. Nobody sees "
                    "the others' answers until everyone has submitted. Send /score to open the form.",
                    calibration=calibration.id, conversation=conversation.id,
                )
                await OutboxMessage.create(
                    chat_id=person.telegram_id, kind=OutboxKind.TEXT, text=text, next_attempt_at=now, created_at=now
                )
        self._on_outbox()
        return CalibrationStarted(calibration.id, conversation.id, [p.name for p in chosen.values()])

    async def result(self, calibration_id: int) -> CalibrationResult:
        """The agreement, once every participant has submitted; ``DomainError`` before that."""
        calibration = await Calibration.get_or_none(id=calibration_id)
        if calibration is None:
            raise NotFound(_("No calibration #{id}."), id=calibration_id)
        scores = await Score.filter(calibration_id=calibration_id).select_related("specialist").order_by("specialist__name", "id")
        submitted = [s for s in scores if s.status == ScoreStatus.SUBMITTED]
        if not scores or len(submitted) < len(scores):
            raise DomainError(_("Calibration #{id}: {done} of {total} specialists have submitted; the result comes "
                                "when everyone has."), id=calibration_id, done=len(submitted), total=len(scores))
        checklist = await checklists.by_template_id(calibration.template_id)  # type: ignore[attr-defined]
        participants = tuple(
            CalibrationParticipant(s.specialist.id, s.specialist.name, s.id, s.result, s.critical_failed) for s in scores
        )
        criteria = agreement_of(checklist, [answer_values(s.answers) for s in scores])
        return CalibrationResult(calibration.id, calibration.conversation_id, checklist.name, participants, tuple(criteria))  # type: ignore[attr-defined]

    async def maybe_report(self, calibration_id: int | None) -> bool:
        """After a submit: once everyone has submitted, send the result to every participant
        (and whoever started it) exactly once. ``Calibration.reported_at`` is claimed with a
        conditional update, so two last submits at once, or a retry, report once."""
        if calibration_id is None:
            return False
        try:
            result = await self.result(calibration_id)
        except DomainError:
            return False
        calibration = await Calibration.get(id=calibration_id).select_related("created_by", "conversation__office")
        office = calibration.conversation.office
        people = {p.staff_id for p in result.participants} | {calibration.created_by.id}
        recipients = await Staff.filter(id__in=list(people), telegram_id__isnull=False).values_list("telegram_id", "language")
        messages: dict[str, list[str]] = {}
        now = self._clock.now()
        async with in_transaction():
            claimed = await Calibration.filter(id=calibration_id, reported_at__isnull=True).update(reported_at=now)
            if not claimed:
                return False
            for chat_id, language in recipients:
                locale = language or office.language
                if locale not in messages:
                    messages[locale] = self.result_messages(result, locale)
                for text in messages[locale]:
                    await OutboxMessage.create(
                        chat_id=chat_id, kind=OutboxKind.TEXT, text=text, next_attempt_at=now, created_at=now
                    )
        self._on_outbox()
        return True

    def result_messages(self, result: CalibrationResult, locale: str) -> list[str]:
        """The result as HTML messages within Telegram's limit: totals, then the flagged criteria."""
        t = self._texts.t
        header = "🎯 <b>" + t(locale, "Calibration #{id}: result", id=result.calibration_id) + "</b>\n" + t(
            locale, "Conversation #{conversation} · {checklist}", conversation=result.conversation_id,
            checklist=escape(result.checklist),
        )
        lines = [""]
        for p in result.participants:
            mark = " ❗" if p.critical_failed else ""
            lines.append(f"• {escape(p.name)}: {_pct(p.result)}{mark}")
        spread = result.total_spread
        if spread is not None:
            warn = "⚠️ " if spread > TOTAL_SPREAD_NOTE + _EPSILON else ""
            lines.append(warn + t(locale, "Totals differ by {points} pp; mean {mean}.",
                                  points=f"{spread:.0f}", mean=_pct(result.mean_total)))
        lines.append(t(locale, "Agreement on criteria: {percent} on average.", percent=_pct(result.agreement * 100)))
        flagged = result.flagged
        lines.append("")
        if not flagged:
            lines.append("✅ " + t(locale, "No criterion differs by more than 10 %."))
        else:
            lines.append("❗ " + t(locale, "Criteria where the scores differ by more than 10 %: {count}", count=len(flagged)))
            labels = {"yes": t(locale, "Yes"), "no": t(locale, "No"), "na": t(locale, "N/A")}
            number = {c.criterion_id: n for n, c in enumerate(result.criteria, 1)}
            for c in flagged:
                lines.append("")
                lines.append(f"<b>{number[c.criterion_id]}. {escape(c.text)}</b>{' ❗' if c.critical else ''} — "
                             + t(locale, "agreement {percent}", percent=_pct(c.agreement * 100)))
                groups: dict[str, list[str]] = {}
                for p, answer in zip(result.participants, c.answers, strict=True):
                    groups.setdefault(labels.get(answer or "", "—"), []).append(escape(p.name))
                lines.append("   " + "; ".join(f"{label}: {', '.join(names)}" for label, names in groups.items()))
        return split_message(header, lines)


def _covers(staff: Staff, office_id: int | None) -> bool:
    own = staff.office_id  # type: ignore[attr-defined]
    return own is None or own == office_id


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} %"
