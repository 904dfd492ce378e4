"""Comments on negatives: a reply to the bot's post (text or voice), or the «Comment» button."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.types import CallbackQuery, ForceReply, Message
from aiogram.utils.i18n import gettext as _

from bot.callbacks import CommentCb
from bot.comments import CommentService
from bot.errors import DomainError
from bot.models import Staff
from handlers.common import explain, refusal



async def comment_button(query: CallbackQuery, callback_data: CommentCb, staff: Staff | None, comments: CommentService) -> None:
    if staff is None:
        await query.answer(refusal(), show_alert=True)
        return
    try:
        case = await comments.case_for_button(staff, callback_data.case_id)
    except DomainError as error:
        await query.answer(explain(error), show_alert=True)
        return
    await query.answer()
    if not isinstance(query.message, Message):
        return
    prompt = await query.message.answer(
        _("{name}, write your comment on negative #{case} as a reply to this message (text or voice).").format(
            name=staff.name, case=case.id
        ),
        reply_markup=ForceReply(selective=True, input_field_placeholder=_("Comment")),
    )
    await comments.remember_prompt(staff, case, prompt.chat.id, prompt.message_id)


async def comment_by_reply(message: Message, staff: Staff | None, comments: CommentService) -> None:
    replied = message.reply_to_message
    assert replied is not None
    if replied.from_user is None or replied.from_user.id != message.bot.id:  # type: ignore[union-attr]
        raise SkipHandler
    if message.text and message.text.startswith("/"):
        raise SkipHandler
    if staff is None:
        await message.reply(refusal())
        return
    try:
        case = await comments.find_case_for_reply(staff, message.chat.id, replied.message_id)
        if case is None:
            raise SkipHandler
        result = await comments.add_comment(
            staff, case, message.text or message.caption, message.voice.file_id if message.voice else None
        )
    except DomainError as error:
        await message.reply(explain(error))
        return
    notice = _("Comment saved.") if not result.late else _("Comment saved; it came after the deadline.")
    await message.reply(notice)


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="group_comments")
    router.callback_query.register(comment_button, CommentCb.filter())
    router.message.register(comment_by_reply, F.reply_to_message, F.text | F.voice)
    return router
