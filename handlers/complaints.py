"""Complaint cards' buttons: «Taken», and «Resolved», which asks for the resolution as a reply.

The «Resolved» prompt is a ForceReply message, as for the «Comment» button of negatives; the
complaint it is about waits in the FSM state of that person in that chat, and only a reply to
that prompt is taken as the resolution. The service checks every right again.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, ForceReply, Message
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ComplaintCb
from bot.complaints import ComplaintService
from bot.errors import DomainError
from bot.models import Staff
from handlers.common import explain, refusal


class ComplaintForm(StatesGroup):
    resolution = State()


async def complaint_button(
    query: CallbackQuery, callback_data: ComplaintCb, staff: Staff | None, complaints: ComplaintService, state: FSMContext
) -> None:
    if staff is None:
        await query.answer(refusal(), show_alert=True)
        return
    message = query.message if isinstance(query.message, Message) else None
    chat_id = message.chat.id if message is not None else None
    try:
        if callback_data.action == "t":
            complaint = await complaints.take(staff, callback_data.complaint_id, chat_id)
            await query.answer(_("Complaint #{id} is yours now.").format(id=complaint.id))
            return
        if callback_data.action != "r":
            await query.answer(_("This button is out of date."), show_alert=True)
            return
        complaint = await complaints.check_resolvable(staff, callback_data.complaint_id, chat_id)
    except DomainError as error:
        await query.answer(explain(error), show_alert=True)
        return
    await query.answer()
    if message is None:
        return
    prompt = await message.answer(
        _("{name}, write how complaint #{id} was resolved as a reply to this message.").format(name=staff.name, id=complaint.id),
        reply_markup=ForceReply(selective=True, input_field_placeholder=_("Resolution")),
    )
    await state.set_state(ComplaintForm.resolution)
    await state.update_data(complaint_id=complaint.id, prompt_id=prompt.message_id)


async def resolution_reply(message: Message, staff: Staff | None, complaints: ComplaintService, state: FSMContext) -> None:
    data = await state.get_data()
    replied = message.reply_to_message
    if replied is None or replied.message_id != data.get("prompt_id"):
        raise SkipHandler  # another reply: a comment on a negative, say
    if staff is None:
        await state.clear()
        await message.reply(refusal())
        return
    if message.text and message.text.startswith("/"):
        raise SkipHandler
    try:
        complaint = await complaints.resolve(staff, int(data["complaint_id"]), message.chat.id, message.text)
    except DomainError as error:
        await message.reply(explain(error))
        return
    await state.clear()
    await message.reply(_("Complaint #{id} is resolved.").format(id=complaint.id))


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="complaints")
    router.callback_query.register(complaint_button, ComplaintCb.filter())
    router.message.register(resolution_reply, ComplaintForm.resolution, F.reply_to_message)
    return router
