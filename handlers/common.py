"""/start (with an invitation token), /help, and the polite refusal for strangers."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.errors import DomainError
from bot.models import Staff
from bot.staff import StaffService



def explain(error: DomainError) -> str:
    text = _(error.message)
    return text.format(**error.params) if error.params else text


async def accept_invite(message: Message, command: CommandObject, staff_service: StaffService) -> None:
    token = (command.args or "")[4:]
    user = message.from_user
    assert user is not None
    try:
        staff = await staff_service.accept_invite(token, user.id, user.language_code)
    except DomainError as error:
        await message.answer(explain(error))
        return
    await message.answer(_("Welcome, {name}! Your account is linked. Use /shift to pick your desk.").format(name=staff.name))


async def start(message: Message, staff: Staff | None) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    await message.answer(
        _(
            "Commands:\n/shift — pick the desk you work at now\n/shift off — end your shift\n/me — my figures\n"
            "/report — KPI report with charts (managers)\n/score, /queue — scoring conversations (quality service)\n"
            "Reply to a negative's message (text or voice) to comment it."
        )
    )


def refusal() -> str:
    return _("Sorry, I only work with the staff of our offices. Ask your manager for an invitation link.")


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="common")
    router.message.register(accept_invite, CommandStart(deep_link=True, magic=F.args.startswith("inv_")), F.chat.type == "private")
    router.message.register(start, CommandStart())
    router.message.register(start, Command("help"))
    return router
