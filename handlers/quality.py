"""/queue, /sample and /calibrate: the quality service's monthly plan and calibrations.

Thin: parse what was typed, ask ``SamplingService``/``CalibrationService`` (which check the
role and the offices on every call), render the answer.
"""

from __future__ import annotations

import re
from datetime import date
from html import escape

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.errors import DomainError
from bot.models import Role, Staff
from bot.sampling import MAX_PER_STAFF, CalibrationService, PlanReport, QueueLine, SamplingService, parse_month
from bot.speech_service import split_message
from handlers.common import explain, refusal

MONTH = re.compile(r"\d{4}-\d{1,2}")
NEGATIVE_WORDS = {"negatives", "negative", "neg", "негативы", "негативные", "негатив"}


def _month_label(month: date) -> str:
    return f"{month:%m.%Y}"


def _queue_messages(month: date, lines: list[QueueLine]) -> list[str]:
    header = "🗂 <b>" + _("Scoring queue for {month}").format(month=_month_label(month)) + "</b>"
    if not lines:
        return [header + "\n" + _("Nothing is planned: no employee has conversations with audio this month yet.")]
    body: list[str] = []
    office = None
    for line in lines:
        if line.office != office:
            office = line.office
            body += ["", f"<b>{escape(office)}</b>"]
        mark = "✅" if line.left == 0 else "▫️"
        body.append(f"{mark} {escape(line.staff)}: " + _("{left} left, {done} done").format(left=line.left, done=line.done))
    left, done = sum(x.left for x in lines), sum(x.done for x in lines)
    body += ["", _("Left: {left} of {total}. Next conversation: /score").format(left=left, total=left + done)]
    return split_message(header, body)


def _plan_text(report: PlanReport) -> str:
    lines = [
        _("Plan for {month}: {added} conversations added; {total} in the plan, {per_staff} per employee.").format(
            month=_month_label(report.month), added=report.added, total=report.total, per_staff=report.per_staff
        )
    ]
    if report.short:
        lines.append(_("Fewer conversations with audio than planned:"))
        lines += [f"• {escape(name)}: {count}" for name, count in report.short]
    return "\n".join(lines)


async def queue(message: Message, command: CommandObject, staff: Staff | None, sampling: SamplingService) -> None:
    """``/queue [YYYY-MM]``: who is left; the current month is planned on first use."""
    if staff is None:
        await message.answer(refusal())
        return
    try:
        office_ids = sampling.office_ids(staff)
        current = sampling.current_month(staff)
        month = parse_month(command.args) if command.args else current
        if month == current and not await sampling.has_plan(month, office_ids):
            await sampling.plan(month, office_ids=office_ids)
        lines = await sampling.queue(staff, month)
    except DomainError as error:
        await message.answer(explain(error))
        return
    for text in _queue_messages(month, lines):
        await message.answer(text, parse_mode="HTML")


async def sample(message: Message, command: CommandObject, staff: Staff | None, sampling: SamplingService) -> None:
    """``/sample [YYYY-MM] [N] [negatives]``: plan or top up a month explicitly."""
    if staff is None:
        await message.answer(refusal())
        return
    if staff.role != Role.QUALITY:
        await message.answer(_("Planning the sample is for the quality service."))
        return
    month, per_staff, negatives = None, None, None
    for word in (command.args or "").split():
        if MONTH.fullmatch(word) and month is None:
            month = word
        elif word.isdigit() and per_staff is None:
            per_staff = int(word)
        elif word.lower() in NEGATIVE_WORDS:
            negatives = True
        else:
            await message.answer(_("Write it as /sample [YYYY-MM] [N] [negatives], e.g. /sample 2026-11 6 negatives "
                                   "(N from 1 to {max}; negatives: conversations around negative ratings first).")
                                 .format(max=MAX_PER_STAFF))
            return
    try:
        office_ids = sampling.office_ids(staff)
        target = parse_month(month) if month else sampling.current_month(staff)
        report = await sampling.plan(target, per_staff=per_staff, negatives_first=negatives, office_ids=office_ids)
        lines = await sampling.queue(staff, target)
    except DomainError as error:
        await message.answer(explain(error))
        return
    await message.answer(_plan_text(report), parse_mode="HTML")
    for text in _queue_messages(report.month, lines):
        await message.answer(text, parse_mode="HTML")


async def calibrate(message: Message, command: CommandObject, staff: Staff | None, calibration: CalibrationService) -> None:
    """``/calibrate CONVERSATION_ID``: every quality specialist scores it blind."""
    if staff is None:
        await message.answer(refusal())
        return
    args = (command.args or "").strip().lstrip("#")
    if not args.isdigit():
        await message.answer(_("Write it as /calibrate CONVERSATION_ID, e.g. /calibrate 1234: the conversation's number "
                               "is in its caption when it is scored."))
        return
    try:
        started = await calibration.start(staff, int(args))
    except DomainError as error:
        await message.answer(explain(error))
        return
    await message.answer(
        _("Calibration #{id} of conversation #{conversation} started: {names} each got a form of their own. "
          "The result comes to everyone when all have submitted.").format(
            id=started.calibration_id, conversation=started.conversation_id, names=", ".join(started.participants)
        )
    )


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="quality")
    router.message.register(queue, Command("queue"))
    router.message.register(sample, Command("sample"))
    router.message.register(calibrate, Command("calibrate"))
    return router
