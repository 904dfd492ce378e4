"""/report, /me, /served and /digest: KPI figures and charts in two taps.

Thin: parse what the user typed or pressed, ask ``ReportService`` (which re-checks access on
every use), send the text, the export buttons and the chart album.
"""

from __future__ import annotations

from datetime import date

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, InputMediaPhoto, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ReportCb
from bot.digests import DigestService
from bot.errors import DomainError
from bot.kpi import Period
from bot.models import Role, Staff
from bot.reports import ReportService
from handlers.common import explain, refusal



def _periods() -> list[tuple[str, str]]:
    return [("today", _("Today")), ("yesterday", _("Yesterday")), ("7d", _("7 days")), ("30d", _("30 days")),
            ("month", _("This month")), ("last_month", _("Last month"))]

SCOPE_WORDS = {"company", "office", "point", "staff", "employee", "компания", "офис", "точка", "сотрудник"}


class ReportForm(StatesGroup):
    custom_period = State()


def _locale() -> str:
    return get_i18n().current_locale


def _period_key(period: Period) -> str:
    """Absolute dates, so a button pressed tomorrow still means the same days."""
    return f"{period.start:%Y%m%d}-{period.end:%Y%m%d}"


def _period_from_key(reports: ReportService, staff: Staff, key: str) -> Period:
    if len(key) == 17 and key[8] == "-":
        return reports.period(staff, f"{key[:4]}-{key[4:6]}-{key[6:8]}..{key[9:13]}-{key[13:15]}-{key[15:]}")
    return reports.period(staff, key)


async def report(message: Message, command: CommandObject, staff: Staff | None, reports: ReportService, state: FSMContext, bot: Bot) -> None:
    if staff is None or staff.role == Role.STAFF:
        await message.answer(_("Reports are for managers. Your own figures: /me") if staff else refusal())
        return
    words = (command.args or "").split()
    if not words:
        builder = InlineKeyboardBuilder()
        for key, label in _periods():
            builder.button(text=label, callback_data=ReportCb(step="p", period=key))
        builder.button(text=_("Custom period…"), callback_data=ReportCb(step="c", period="-"))
        builder.adjust(2)
        await message.answer(_("Report for which period?"), reply_markup=builder.as_markup())
        return
    try:
        key, period = await _parse_words(reports, staff, words)
    except DomainError as error:
        await message.answer(explain(error))
        return
    await _send_report(bot, message.chat.id, reports, staff, key, period)


async def _parse_words(reports: ReportService, staff: Staff, words: list[str]) -> tuple[str, Period]:
    """``7d``, ``office MSK-1 month``, ``staff ivanova 2026-11-01..2026-11-21`` in any order."""
    key, period_text = None, None
    i = 0
    while i < len(words):
        word = words[i]
        if word.lower() in SCOPE_WORDS:
            code = words[i + 1] if word.lower() not in ("company", "компания") and i + 1 < len(words) else ""
            key = await reports.key_from_words(staff, word, code)
            i += 2 if code else 1
        else:
            period_text = word if period_text is None else f"{period_text} {word}"
            i += 1
    return key or reports.default_key(staff), reports.period(staff, period_text or "7d")


async def pick_period(query: CallbackQuery, callback_data: ReportCb, staff: Staff | None, reports: ReportService,
                      state: FSMContext, bot: Bot) -> None:
    if staff is None or not isinstance(query.message, Message):
        await query.answer(refusal(), show_alert=True)
        return
    if callback_data.step == "c":
        await state.set_state(ReportForm.custom_period)
        await query.answer()
        await query.message.edit_text(_("Send the period as 2026-11-01..2026-11-21."))
        return
    try:
        period = _period_from_key(reports, staff, callback_data.period)
    except DomainError as error:
        await query.answer(explain(error), show_alert=True)
        return
    await query.answer()
    await _ask_scope(query.message, reports, staff, period, edit=True)


async def custom_period(message: Message, staff: Staff | None, reports: ReportService, state: FSMContext) -> None:
    if staff is None:
        await state.clear()
        return
    try:
        period = reports.period(staff, (message.text or "").strip())
    except DomainError as error:
        await message.answer(explain(error))
        return
    await state.clear()
    await _ask_scope(message, reports, staff, period, edit=False)


async def _ask_scope(message: Message, reports: ReportService, staff: Staff, period: Period, edit: bool) -> None:
    builder = InlineKeyboardBuilder()
    for choice in await reports.choices(staff):
        label = _(choice.label) if choice.key == "c" else choice.label
        builder.button(text=label, callback_data=ReportCb(step="s", period=_period_key(period), scope=choice.key))
    builder.adjust(2)
    text = _("Report for {period}: which scope?").format(period=period.label(_locale()))
    if edit:
        await message.edit_text(text, reply_markup=builder.as_markup())
    else:
        await message.answer(text, reply_markup=builder.as_markup())


async def pick_scope(query: CallbackQuery, callback_data: ReportCb, staff: Staff | None, reports: ReportService, bot: Bot) -> None:
    if staff is None or not isinstance(query.message, Message):
        await query.answer(refusal(), show_alert=True)
        return
    try:
        period = _period_from_key(reports, staff, callback_data.period)
        await reports.resolve(staff, callback_data.scope)
    except DomainError as error:
        await query.answer(explain(error), show_alert=True)
        return
    await query.answer()
    await query.message.edit_text(_("Preparing the report…"))
    await _send_report(bot, query.message.chat.id, reports, staff, callback_data.scope, period)


async def _send_report(bot: Bot, chat_id: int, reports: ReportService, staff: Staff, key: str, period: Period,
                       with_ranking: bool = True) -> None:
    try:
        result = await reports.build(staff, key, period, _locale(), with_ranking=with_ranking)
    except DomainError as error:
        await bot.send_message(chat_id, explain(error))
        return
    builder = InlineKeyboardBuilder()
    for fmt in ("csv", "xlsx"):
        builder.button(text=f"⬇️ {fmt.upper()}", callback_data=ReportCb(step="x", period=_period_key(period), scope=key, fmt=fmt))
    await bot.send_message(chat_id, result.text, parse_mode="HTML", reply_markup=builder.as_markup())
    photos = [BufferedInputFile(png, filename=f"chart-{n}.png") for n, png in enumerate(result.charts, 1)]
    if len(photos) == 1:
        await bot.send_photo(chat_id, photos[0])
    elif photos:
        await bot.send_media_group(chat_id, [InputMediaPhoto(media=p) for p in photos])


async def export(query: CallbackQuery, callback_data: ReportCb, staff: Staff | None, reports: ReportService, bot: Bot) -> None:
    if staff is None or not isinstance(query.message, Message):
        await query.answer(refusal(), show_alert=True)
        return
    try:
        period = _period_from_key(reports, staff, callback_data.period)
        name, data = await reports.export(staff, callback_data.scope, period, callback_data.fmt, _locale())
    except DomainError as error:
        await query.answer(explain(error), show_alert=True)
        return
    await query.answer()
    await bot.send_document(query.message.chat.id, BufferedInputFile(data, filename=name))


async def me(message: Message, command: CommandObject, staff: Staff | None, reports: ReportService, bot: Bot) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    try:
        period = reports.period(staff, (command.args or "30d").strip())
    except DomainError as error:
        await message.answer(explain(error))
        return
    await _send_report(bot, message.chat.id, reports, staff, f"s{staff.id}", period, with_ranking=False)
    for text in await reports.my_scores(staff, _locale()):  # the latest scores, with the specialists' comments
        await bot.send_message(message.chat.id, text, parse_mode="HTML")


async def served(message: Message, command: CommandObject, staff: Staff | None, reports: ReportService) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    words = (command.args or "").split()
    if len(words) != 3:
        await message.answer(_("Write it as /served OFFICE YYYY-MM-DD N, e.g. /served MSK-1 2026-11-20 140."))
        return
    try:
        office, day, clients = await reports.record_served(staff, *words)
    except DomainError as error:
        await message.answer(explain(error))
        return
    await message.answer(_("Saved: {office}, {day}: {clients} clients served.").format(
        office=office.code, day=date.strftime(day, "%d.%m.%Y"), clients=clients))


async def digest(message: Message, command: CommandObject, staff: Staff | None, digests: DigestService) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    wanted = (command.args or "").strip().lower()
    if wanted not in ("on", "off"):
        await message.answer(_("/digest off stops the morning digests, /digest on brings them back."))
        return
    await digests.subscribe(staff, wanted == "on")
    await message.answer(_("Digests are on.") if wanted == "on" else _("Digests are off. /digest on brings them back."))


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="reports")
    router.message.register(report, Command("report"))
    router.message.register(me, Command("me"))
    router.message.register(served, Command("served"))
    router.message.register(digest, Command("digest"))
    router.message.register(custom_period, StateFilter(ReportForm.custom_period), F.text)
    router.callback_query.register(pick_period, ReportCb.filter(F.step.in_({"p", "c"})))
    router.callback_query.register(pick_scope, ReportCb.filter(F.step == "s"))
    router.callback_query.register(export, ReportCb.filter(F.step == "x"))
    return router
