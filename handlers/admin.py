"""Admin commands: /bind a group to an office, /invite a staff member."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.errors import DomainError
from bot.models import Staff
from bot.staff import StaffService
from handlers.common import explain, refusal



async def bind_group(message: Message, command: CommandObject, staff: Staff | None, staff_service: StaffService) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    if not command.args:
        await message.answer(_("Usage: /bind OFFICE_CODE (in the office's group)"))
        return
    try:
        office = await staff_service.bind_group(staff, message.chat.id, command.args)
    except DomainError as error:
        await message.answer(explain(error))
        return
    await message.answer(_("This group now receives the negatives of {office}.").format(office=f"{office.code} · {office.name}"))


async def invite(message: Message, command: CommandObject, staff: Staff | None, staff_service: StaffService, bot: Bot) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    if not command.args:
        await message.answer(_("Usage: /invite STAFF_CODE"))
        return
    me = await bot.me()
    try:
        link = await staff_service.create_invite(staff, command.args, me.username or "")
    except DomainError as error:
        await message.answer(explain(error))
        return
    await message.answer(
        _("One-time link for {name} (valid 7 days):\n{url}").format(name=link.staff.name, url=link.url)
    )


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="admin")
    router.message.register(bind_group, Command("bind"))
    router.message.register(invite, Command("invite"))
    return router
