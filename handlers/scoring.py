"""/score: the quality service scores a conversation on its checklist, in one message.

Thin: parse the command or the button, ask ``ScoreService`` (which decides who may press
what, on every press), render its answer. The form is one message edited in place; its
state lives in the database, so a restart changes nothing and ``/score`` resumes it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, FSInputFile, ForceReply, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from bot.errors import DomainError
from bot.models import Score, Staff
from bot.scoring import CHANGED, ScoreCb, ScoreService
from handlers.common import explain, refusal

log = logging.getLogger(__name__)

VOICE_CODECS = {"opus", "ogg", "oga"}


def _locale() -> str:
    return get_i18n().current_locale


async def score_command(message: Message, command: CommandObject, staff: Staff | None, scoring: ScoreService, bot: Bot) -> None:
    if staff is None:
        await message.answer(refusal())
        return
    if message.chat.type != "private":
        await message.answer(_("Use /score in a private chat with me."))
        return
    words = (command.args or "").split()
    try:
        if words and words[0].lower() in ("correct", "исправить"):
            number = words[1].lstrip("#") if len(words) == 2 else ""
            if not number.isdigit():
                await message.answer(_("Write it as /score correct ID, e.g. /score correct 17."))
                return
            score = await scoring.correct(staff, int(number))
            await _send_form(bot, message.chat.id, staff, scoring, score, materials=False)
            return
        score = await scoring.next_form(staff)
        resumed = score.message_id is not None  # its recording and transcript are already in the chat
        if resumed:
            await message.answer(_("Continuing your unfinished form."))
        await _send_form(bot, message.chat.id, staff, scoring, score, materials=not resumed)
    except DomainError as error:
        await message.answer(explain(error))


async def _send_form(bot: Bot, chat_id: int, staff: Staff, scoring: ScoreService, score: Score, materials: bool) -> None:
    """The recording, the transcript, then the form as a new message that becomes the form."""
    locale = _locale()
    if materials:
        m = await scoring.materials(staff, score.id, locale)
        if m.audio_path and Path(m.audio_path).is_file():
            if m.codec.lower() in VOICE_CODECS:
                await bot.send_voice(chat_id, FSInputFile(m.audio_path), caption=m.caption[:1024], parse_mode="HTML",
                                     duration=round(m.seconds) or None)
            else:
                await bot.send_document(chat_id, FSInputFile(m.audio_path), caption=m.caption[:1024], parse_mode="HTML")
        else:
            await bot.send_message(chat_id, m.caption + "\n" + _("The recording of this conversation is no longer kept."),
                                   parse_mode="HTML")
        for chunk in m.transcript:
            await bot.send_message(chat_id, chunk, parse_mode="HTML")
    checklist = await scoring.checklist_of(score)
    old = (score.chat_id, score.message_id)
    text, keyboard = scoring.form_text(score, checklist, locale, revision=score.revision + 1)
    sent = await bot.send_message(chat_id, text, parse_mode="HTML", reply_markup=keyboard)
    try:
        await scoring.attach_message(staff, score.id, score.revision, sent.chat.id, sent.message_id)
    except DomainError as error:  # changed meanwhile (another device): this copy's buttons are stale
        await _edit(bot, sent.chat.id, sent.message_id, f"{explain(error)} /score", None)
        return
    if old[1] is not None and old != (sent.chat.id, sent.message_id):
        try:  # the older copy's buttons would be refused anyway; take them away
            await bot.edit_message_reply_markup(chat_id=old[0], message_id=old[1], reply_markup=None)
        except TelegramBadRequest:
            pass


async def _edit(bot: Bot, chat_id: int, message_id: int, text: str, keyboard: object) -> None:
    try:
        await bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id, parse_mode="HTML",
                                    reply_markup=keyboard)  # type: ignore[arg-type]
    except TelegramBadRequest as error:
        if "message is not modified" not in error.message:
            log.warning("could not edit the form message %s/%s: %s", chat_id, message_id, error.message)


async def _render(bot: Bot, scoring: ScoreService, score: Score, fallback: Message | None, sections: bool = False) -> None:
    """Edit the form's message (the one stored on the score) to show its current state."""
    checklist = await scoring.checklist_of(score)
    text, keyboard = scoring.form_text(score, checklist, _locale(), sections=sections)
    chat_id = score.chat_id if score.chat_id is not None else (fallback.chat.id if fallback else None)
    message_id = score.message_id if score.message_id is not None else (fallback.message_id if fallback else None)
    if chat_id is None or message_id is None:
        return
    await _edit(bot, chat_id, message_id, text, keyboard)


async def on_button(query: CallbackQuery, callback_data: ScoreCb, staff: Staff | None, scoring: ScoreService, bot: Bot) -> None:
    if staff is None:
        await query.answer(refusal(), show_alert=True)
        return
    cb = callback_data
    message = query.message if isinstance(query.message, Message) else None
    sections = False
    notice = None
    try:
        if cb.a in ("y", "n", "a"):
            score = await scoring.answer(staff, cb.s, cb.r, cb.c, cb.a)
        elif cb.a == "b":
            score = await scoring.back(staff, cb.s, cb.r)
        elif cb.a == "g":
            score = await scoring.skip_to_section(staff, cb.s, cb.r, cb.c)
        elif cb.a == "j":
            score = await scoring.go_to(staff, cb.s, cb.r, cb.c)
        elif cb.a in ("k", "x"):
            score = await scoring.check(staff, cb.s, cb.r)
            sections = cb.a == "k"
        elif cb.a == "s":
            score = await scoring.submit(staff, cb.s, cb.r)
            notice = _("Submitted.")
        elif cb.a == "e":
            score = await scoring.correct(staff, cb.s, cb.r)
        elif cb.a in ("m", "f"):
            await _ask_comment(query, cb, staff, scoring, bot, message)
            return
        else:
            raise DomainError(CHANGED)
    except DomainError as error:
        await query.answer(explain(error), show_alert=True)
        return
    # both at once: the spinner stops and the form changes one round trip sooner
    await asyncio.gather(_answer(query, notice), _render(bot, scoring, score, message, sections=sections))


async def _answer(query: CallbackQuery, text: str | None) -> None:
    await query.answer(text)  # a TelegramMethod is awaitable but not a coroutine gather() can take


async def _ask_comment(query: CallbackQuery, cb: ScoreCb, staff: Staff, scoring: ScoreService, bot: Bot,
                       message: Message | None) -> None:
    score = await scoring.check(staff, cb.s, cb.r)
    if cb.a == "m":
        label = await scoring.criterion_label(score, cb.c)
        text = _("Your comment on criterion {criterion}: reply to this message with text or a voice message.").format(
            criterion=label)
    else:
        text = _("Your comment on the whole form: reply to this message with text or a voice message.")
    await query.answer()
    chat_id = message.chat.id if message else score.chat_id
    if chat_id is None:
        return
    prompt = await bot.send_message(
        chat_id, text, reply_markup=ForceReply(force_reply=True, input_field_placeholder=_("Comment"))
    )
    try:
        score = await scoring.remember_prompt(staff, cb.s, cb.r, cb.c if cb.a == "m" else None, prompt.chat.id, prompt.message_id)
    except DomainError as error:
        await bot.edit_message_text(explain(error), chat_id=prompt.chat.id, message_id=prompt.message_id)
        return
    await _render(bot, scoring, score, message)  # the form's buttons now carry the new revision


async def comment_reply(message: Message, staff: Staff | None, scoring: ScoreService, bot: Bot) -> None:
    replied = message.reply_to_message
    if staff is None or replied is None or replied.from_user is None or replied.from_user.id != bot.id:
        raise SkipHandler
    if message.text and message.text.startswith("/"):
        raise SkipHandler
    found = await scoring.find_prompt(staff, message.chat.id, replied.message_id)
    if found is None:
        raise SkipHandler
    score_id, criterion_id = found
    try:
        score = await scoring.set_comment(
            staff, score_id, criterion_id, message.text or message.caption, message.voice.file_id if message.voice else None
        )
    except DomainError as error:
        await message.reply(explain(error))
        return
    await _render(bot, scoring, score, None)  # first: when «saved» arrives, the form's buttons are current
    await message.reply(_("Comment saved."))


async def malformed(query: CallbackQuery) -> None:
    """``sc:`` data that does not even parse: a forged or truncated button."""
    await query.answer(_(CHANGED), show_alert=True)


def make_router() -> Router:
    """A fresh router per dispatcher: routers attach to one parent only."""
    router = Router(name="scoring")
    router.message.register(score_command, Command("score"))
    router.message.register(comment_reply, F.chat.type == "private", F.reply_to_message, F.text | F.voice)
    router.callback_query.register(on_button, ScoreCb.filter())
    router.callback_query.register(malformed, F.data.startswith("sc:"))
    return router


__all__ = ["make_router"]
