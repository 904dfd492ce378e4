"""/devices: every device with its point, state, battery and when it was last seen."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot.device_health import DeviceHealthService
from bot.models import Role, Staff
from handlers.common import refusal


async def list_devices(message: Message, staff: Staff | None, device_health: DeviceHealthService) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    if staff.role == Role.MANAGER and staff.office_id is None:  # type: ignore[attr-defined]
        await message.answer(_("You are not attached to an office; ask an admin."))
        return
    chunks = await device_health.device_list(staff, get_i18n().current_locale)
    if chunks is None:
        await message.answer(_("The device list is for admins and office managers."))
        return
    for chunk in chunks:
        await message.answer(chunk)


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="devices")
    router.message.register(list_devices, Command("devices"))
    return router
