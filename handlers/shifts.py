"""/shift: the desk a staff member works at now, picked from an inline keyboard."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.callbacks import ShiftCb
from bot.errors import DomainError
from bot.models import Staff
from bot.staff import StaffService
from handlers.common import explain, refusal



async def shift(message: Message, command: CommandObject, staff: Staff | None, staff_service: StaffService) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    if (command.args or "").strip().lower() in ("off", "end", "stop"):
        point = await staff_service.end_shift(staff)
        await message.answer(
            _("Shift at {point} ended.").format(point=point.name) if point else _("You have no open shift.")
        )
        return
    try:
        points = await staff_service.shift_points(staff)
    except DomainError as error:
        await message.answer(explain(error))
        return
    current = await staff_service.current_shift(staff)
    builder = InlineKeyboardBuilder()
    for point in points:
        mark = "✅ " if current and current.point.id == point.id else ""
        builder.button(text=f"{mark}{point.code} · {point.name}", callback_data=ShiftCb(point_id=point.id))
    builder.adjust(2)
    await message.answer(_("Where do you work now?"), reply_markup=builder.as_markup())


async def pick_point(query: CallbackQuery, callback_data: ShiftCb, staff: Staff | None, staff_service: StaffService) -> None:
    if staff is None:
        await query.answer(refusal(), show_alert=True)
        return
    try:
        point = await staff_service.start_shift(staff, callback_data.point_id)
    except DomainError as error:
        await query.answer(explain(error), show_alert=True)
        return
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.edit_text(
            _("{name}, your shift at {point} has started. Ratings there are now yours.").format(name=staff.name, point=point.name)
        )


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="shifts")
    router.message.register(shift, Command("shift"))
    router.callback_query.register(pick_point, ShiftCb.filter())
    return router
