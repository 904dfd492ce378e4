"""/qr POINT and /qr staff CODE: a printable table tent with the survey QR code.

Thin: ``SurveyService.table_tent`` checks who may print what and words the card in the
office's language; the PDF and its PNG preview are drawn off the event loop.
"""

from __future__ import annotations

import asyncio
from functools import partial

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import gettext as _

from bot.errors import DomainError
from bot.models import Staff
from bot.surveys import SurveyService
from charts.qr import render_table_tent
from handlers.common import explain, refusal


async def qr(message: Message, command: CommandObject, staff: Staff | None, surveys: SurveyService, bot: Bot) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    try:
        tent = await surveys.table_tent(staff, (command.args or "").split())
    except DomainError as error:
        await message.answer(explain(error))
        return
    render = partial(render_table_tent, tent.url, title=tent.title, call_to_action=tent.call_to_action,
                     point_label=tent.point_label, office_name=tent.office_name)
    pdf, png = await asyncio.get_running_loop().run_in_executor(None, lambda: (render(fmt="pdf"), render(fmt="png")))
    await bot.send_document(
        message.chat.id, BufferedInputFile(pdf, filename=f"{tent.filename}.pdf"),
        caption=_("Table tent for {label}: print on A4 and fold along the dashed line.\n{url}").format(
            label=tent.point_label, url=tent.url
        ),
    )
    await bot.send_photo(message.chat.id, BufferedInputFile(png, filename=f"{tent.filename}.png"), caption=tent.url)


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="qr")
    router.message.register(qr, Command("qr"))
    return router
