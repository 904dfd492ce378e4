"""End-to-end checks of the Telegram Bot API emulator with a real aiogram Bot and Dispatcher.

These prove the emulator speaks the wire protocol aiogram expects, so other end-to-end
tests can trust what it reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter, TelegramServerError
from aiogram.filters import Command
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ChatMemberAdministrator,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    ReplyParameters,
)

from tests.telegram_emulator import NOT_MODIFIED, BotApiEmulator, parse_html

GROUP = -1001234567890
USER = 555001

# Smallest valid PNGs with distinct sizes so PhotoSize width/height can be checked.
PNG_2x3 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000030806000000b9ea"
    "de810000001049444154789c63f8cfc0f09f818101001ef203fd8c2b8e5c00"
    "00000049454e44ae426082"
)
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4"
    "890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
OGG = b"OggS\x00\x02" + bytes(range(256)) * 8


def kb(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d)] for t, d in pairs]
    )


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    async with BotApiEmulator() as emulator:
        emulator.add_chat(GROUP, "supergroup", "Front desk")
        emulator.add_user(USER, "Anna", "anna")
        yield emulator


@pytest_asyncio.fixture
async def bot(emu: BotApiEmulator) -> AsyncIterator[Bot]:
    assert emu.url
    session = AiohttpSession(api=TelegramAPIServer.from_base(emu.url))
    b = Bot(emu.token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    yield b
    await b.session.close()


@pytest.mark.asyncio
async def test_get_me_and_html_text_with_keyboard_round_trip(emu: BotApiEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (emu.bot_id, "loyalty_test_bot", True)

    sent = await bot.send_message(GROUP, "Rating <b>5</b> from &lt;desk 3&gt;",
                                  reply_markup=kb(("Take", "take:1"), ("Close", "close:1")))
    assert sent.text == "Rating 5 from <desk 3>"
    assert sent.entities and sent.entities[0].type == "bold"
    assert (sent.entities[0].offset, sent.entities[0].length) == (7, 1)
    assert sent.html_text == "Rating <b>5</b> from &lt;desk 3&gt;"
    assert sent.from_user and sent.from_user.id == emu.bot_id
    assert sent.chat.id == GROUP and sent.chat.title == "Front desk"

    stored = emu.message(GROUP, sent.message_id)
    assert stored is not None and stored["text"] == "Rating 5 from <desk 3>"
    assert [b["callback_data"] for row in stored["reply_markup"]["inline_keyboard"] for b in row] == [
        "take:1", "close:1"]
    second = await bot.send_message(GROUP, "next")
    assert second.message_id == sent.message_id + 1
    assert [m["text"] for m in emu.bot_messages(GROUP)] == ["Rating 5 from <desk 3>", "next"]
    assert [r.method for r in emu.sent_log] == ["sendMessage", "sendMessage"]
    assert emu.sent_log[0].at <= emu.sent_log[1].at


@pytest.mark.asyncio
async def test_edit_text_then_identical_edit_is_not_modified(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(GROUP, "Open", reply_markup=kb(("Take", "take:1")))
    edited = await bot.edit_message_text("Taken by <i>Anna</i>", chat_id=GROUP, message_id=sent.message_id,
                                         reply_markup=kb(("Close", "close:1")))
    assert isinstance(edited, Message)
    assert edited.text == "Taken by Anna" and edited.edit_date is not None
    current = emu.message(GROUP, sent.message_id)
    assert current and current["reply_markup"]["inline_keyboard"][0][0]["text"] == "Close"

    with pytest.raises(TelegramBadRequest) as err:
        await bot.edit_message_text("Taken by <i>Anna</i>", chat_id=GROUP, message_id=sent.message_id,
                                    reply_markup=kb(("Close", "close:1")))
    assert err.value.message == NOT_MODIFIED
    assert "message is not modified" in str(err.value)

    # Omitting the keyboard on a text edit removes it, as Telegram does.
    await bot.edit_message_text("Taken by <i>Anna</i>", chat_id=GROUP, message_id=sent.message_id)
    current = emu.message(GROUP, sent.message_id)
    assert current and current["text"] == "Taken by Anna" and "reply_markup" not in current

    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=GROUP, message_id=999)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=GROUP, message_id=sent.message_id)
    assert [r.status for r in emu.requests_log if r.method == "editMessageText"] == [200, 400, 200, 400]


@pytest.mark.asyncio
async def test_validation_errors_use_telegram_wording(emu: BotApiEmulator, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: BUTTON_DATA_INVALID"):
        await bot.send_message(GROUP, "x", reply_markup=kb(("Long", "x" * 65)))
    await bot.send_message(GROUP, "ok", reply_markup=kb(("Edge", "é" * 32)))  # exactly 64 bytes
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(GROUP, "   ")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(GROUP, "a" * 4097)
    with pytest.raises(TelegramBadRequest, match=r"can't parse entities: Can't find end tag .*\"b\""):
        await bot.send_message(GROUP, "<b>bold")
    with pytest.raises(TelegramBadRequest, match=r"can't parse entities: Unsupported start tag \"br\""):
        await bot.send_message(GROUP, "a<br>b")
    # Without parse_mode the same markup is just text.
    plain = await bot.send_message(GROUP, "<b>bold", parse_mode=None)
    assert plain.text == "<b>bold"
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_photo(GROUP, BufferedInputFile(PNG_1x1, "p.png"), caption="c" * 1025)
    assert [m["text"] for m in emu.bot_messages(GROUP)] == ["ok", "<b>bold"]
    assert sum(r.status == 400 for r in emu.requests_log) == 6


@pytest.mark.asyncio
async def test_chat_not_found_when_chats_must_be_registered(bot: Bot, emu: BotApiEmulator) -> None:
    await bot.send_message(-42, "auto-created")
    assert emu.chat(-42) == {"id": -42, "type": "group", "title": "Chat -42"}
    emu.auto_create_chats = False
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message(-43, "nope")
    chat = await bot.get_chat(GROUP)
    assert chat.title == "Front desk" and chat.type == "supergroup"


@pytest.mark.asyncio
async def test_replies_via_reply_parameters_and_legacy_id(emu: BotApiEmulator, bot: Bot) -> None:
    user_msg = await emu.user_message(GROUP, USER, "The coffee was cold")
    reply = await bot.send_message(GROUP, "Please tell us more", reply_markup=ForceReply(),
                                   reply_parameters=ReplyParameters(message_id=user_msg["message_id"]))
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.text == "The coffee was cold"
    assert reply.reply_to_message.from_user and reply.reply_to_message.from_user.id == USER
    forced = [r for r in emu.requests_log if r.method == "sendMessage"][-1]
    assert forced.params["reply_markup"]["force_reply"] is True

    legacy = await bot.send_message(GROUP, "legacy", reply_to_message_id=reply.message_id)
    assert legacy.reply_to_message and legacy.reply_to_message.message_id == reply.message_id

    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(GROUP, "x", reply_parameters=ReplyParameters(message_id=9999))

    answer = await emu.user_message(GROUP, USER, "It was at desk 3", reply_to_message_id=reply.message_id)
    assert answer["reply_to_message"]["message_id"] == reply.message_id
    assert [m["from"]["id"] for m in emu.messages(GROUP)] == [USER, emu.bot_id, emu.bot_id, USER]


@pytest.mark.asyncio
async def test_voice_upload_get_file_and_download_round_trip(emu: BotApiEmulator, bot: Bot) -> None:
    msg = await bot.send_voice(GROUP, BufferedInputFile(OGG, "note.ogg"), duration=7, caption="<b>Voice</b>")
    assert msg.voice is not None
    assert (msg.voice.duration, msg.voice.mime_type, msg.voice.file_size) == (7, "audio/ogg", len(OGG))
    assert msg.caption == "Voice" and msg.caption_entities and msg.caption_entities[0].type == "bold"

    file = await bot.get_file(msg.voice.file_id)
    assert file.file_path and file.file_size == len(OGG)
    downloaded = await bot.download(msg.voice)
    assert downloaded is not None and downloaded.read() == OGG
    assert emu.file_bytes(msg.voice.file_id) == OGG

    # Re-sending by file_id reuses the stored file.
    again = await bot.send_voice(GROUP, msg.voice.file_id)
    assert again.voice and again.voice.file_unique_id == msg.voice.file_unique_id

    # A user's voice note is downloadable the same way.
    user_voice = await emu.user_voice(GROUP, USER, b"OggS-user", duration=3)
    data = await bot.download(user_voice["voice"]["file_id"])
    assert data is not None and data.read() == b"OggS-user"
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("nope")


@pytest.mark.asyncio
async def test_photo_document_and_media_group(emu: BotApiEmulator, bot: Bot) -> None:
    photo = await bot.send_photo(GROUP, BufferedInputFile(PNG_2x3, "chart.png"), caption="Weekly")
    assert photo.photo and (photo.photo[-1].width, photo.photo[-1].height) == (2, 3)
    doc = await bot.send_document(GROUP, BufferedInputFile(b"a,b\n1,2\n", "report.csv"))
    assert doc.document and doc.document.file_name == "report.csv"
    assert doc.document.mime_type == "text/csv"

    album = await bot.send_media_group(GROUP, media=[
        InputMediaPhoto(media=BufferedInputFile(PNG_2x3, "a.png"), caption="<i>first</i>"),
        InputMediaPhoto(media=BufferedInputFile(PNG_1x1, "b.png")),
    ])
    assert len(album) == 2
    assert album[0].media_group_id and album[0].media_group_id == album[1].media_group_id
    assert album[0].caption == "first" and album[1].caption is None
    assert album[1].message_id == album[0].message_id + 1
    assert album[0].photo and emu.file_bytes(album[0].photo[-1].file_id) == PNG_2x3
    assert album[1].photo and emu.file_bytes(album[1].photo[-1].file_id) == PNG_1x1
    assert [r.method for r in emu.sent_log] == ["sendPhoto", "sendDocument", "sendMediaGroup", "sendMediaGroup"]

    await bot.delete_message(GROUP, doc.message_id)
    assert [m["message_id"] for m in emu.messages(GROUP)] == [
        photo.message_id, album[0].message_id, album[1].message_id]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(GROUP, doc.message_id)


@pytest.mark.asyncio
async def test_fail_next_429_and_500(emu: BotApiEmulator, bot: Bot) -> None:
    emu.fail_next(2, status=429, retry_after=7)
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as err:
            await bot.send_message(GROUP, "hi")
        assert err.value.retry_after == 7
    assert (await bot.send_message(GROUP, "hi")).text == "hi"

    emu.fail_next(1, status=500)
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.edit_message_text("edited", chat_id=GROUP, message_id=1)
    await bot.get_me()  # not a send/edit, so not affected

    emu.fail_next(1, status=429, retry_after=3, methods=["getChat"])
    await bot.send_message(GROUP, "unaffected")
    with pytest.raises(TelegramRetryAfter):
        await bot.get_chat(GROUP)

    emu.fail_for(0.3, status=502)
    with pytest.raises(TelegramServerError):
        await bot.send_message(GROUP, "down")
    await asyncio.sleep(0.35)
    await bot.send_message(GROUP, "up")

    assert [m["text"] for m in emu.bot_messages(GROUP)] == ["hi", "unaffected", "up"]
    statuses = [r.status for r in emu.requests_log if r.method in ("sendMessage", "editMessageText")]
    assert statuses == [429, 429, 200, 500, 200, 502, 200]


@pytest.mark.asyncio
async def test_group_limiter_counts_violations() -> None:
    async with BotApiEmulator(group_messages_per_minute=3) as emu:
        assert emu.url
        b = emu.make_bot()
        try:
            for i in range(3):
                await b.send_message(GROUP, f"m{i}")
            with pytest.raises(TelegramRetryAfter) as err:
                await b.send_message(GROUP, "too many")
            assert 58 <= err.value.retry_after <= 60
            await b.send_message(USER, "private chats are not limited")
            await b.edit_message_text("edits are not sends", chat_id=GROUP, message_id=1)
        finally:
            await b.session.close()
        assert emu.limit_violations == 1
        assert [m["text"] for m in emu.bot_messages(GROUP)] == ["edits are not sends", "m1", "m2"]


@pytest.mark.asyncio
async def test_get_chat_member_statuses(emu: BotApiEmulator, bot: Bot) -> None:
    emu.set_chat_member(GROUP, USER, "creator")
    emu.set_chat_member(GROUP, 777, "administrator")
    emu.set_chat_member(GROUP, 778, "kicked")
    assert (await bot.get_chat_member(GROUP, USER)).status == "creator"
    admin = await bot.get_chat_member(GROUP, 777)
    assert isinstance(admin, ChatMemberAdministrator) and admin.can_delete_messages is True
    assert (await bot.get_chat_member(GROUP, 778)).status == "kicked"
    member = await bot.get_chat_member(GROUP, 779)
    assert member.status == "member" and member.user.id == 779


@pytest.mark.asyncio
async def test_get_updates_long_poll_wakes_on_new_update(emu: BotApiEmulator, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=0) == []
    poll = asyncio.create_task(bot.get_updates(timeout=20))
    await asyncio.sleep(0.05)
    await emu.user_message(GROUP, USER, "hello")
    updates = await asyncio.wait_for(poll, 5)
    assert loop.time() - started < 5
    assert len(updates) == 1 and updates[0].message and updates[0].message.text == "hello"
    # Unconfirmed updates are redelivered; offset confirms them.
    assert [u.update_id for u in await bot.get_updates()] == [updates[0].update_id]
    assert await bot.get_updates(offset=updates[0].update_id + 1) == []
    await emu.user_message(GROUP, USER, "ignored")
    assert await bot.get_updates(allowed_updates=["callback_query"]) == []


@contextlib.asynccontextmanager
async def polling(dp: Dispatcher, bot: Bot) -> AsyncIterator[None]:
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False,
                                                polling_timeout=5))
    try:
        yield
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_dispatcher_handles_commands_text_and_callbacks(emu: BotApiEmulator, bot: Bot) -> None:
    router = Router()
    seen: list[str] = []

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer("Choose <b>rating</b>", reply_markup=kb(("Good", "rate:5"), ("Bad", "rate:1")))

    @router.message(F.text)
    async def echo(message: Message) -> None:
        seen.append(message.text or "")
        await message.reply(f"got {message.text}")

    @router.callback_query(F.data.startswith("rate:"))
    async def rate(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        await query.message.edit_text(f"Thanks for {query.data}")
        await query.answer("Saved", show_alert=True)

    dp = Dispatcher()
    dp.include_router(router)
    async with polling(dp, bot):
        await emu.user_message(USER, USER, "/start@loyalty_test_bot")
        menu = await emu.wait_for_bot_message(USER, contains="Choose")
        assert menu["text"] == "Choose rating"
        assert menu["chat"] == {"id": USER, "type": "private", "first_name": "Anna", "username": "anna"}

        query_id = await emu.press_button(USER, USER, menu["message_id"], "rate:5")
        await emu.wait_for(lambda: emu.answered_callbacks, what="callback answer")
        assert emu.answered_callbacks == [{"id": query_id, "text": "Saved", "show_alert": True, "url": None}]
        edited = emu.message(USER, menu["message_id"])
        assert edited and edited["text"] == "Thanks for rate:5" and "reply_markup" not in edited

        said = await emu.user_message(GROUP, USER, "cold coffee")
        reply = await emu.wait_for_bot_message(GROUP, contains="got")
        assert reply["text"] == "got cold coffee"
        assert reply["reply_to_message"]["message_id"] == said["message_id"]
        assert seen == ["cold coffee"]

    with pytest.raises(AssertionError, match="no button with data"):
        await emu.press_button(USER, USER, menu["message_id"], "rate:5")
    with pytest.raises(AssertionError, match="waiting for never"):
        await emu.wait_for(lambda: None, timeout=0.05, what="never")


def test_parse_html_entities_and_offsets() -> None:
    text, entities = parse_html('😀 <a href="https://x.y/?a=1&amp;b=2">link</a> <pre><code class="language-py">x</code></pre>')
    assert text == "😀 link x"
    assert entities == [
        {"type": "text_link", "offset": 3, "length": 4, "url": "https://x.y/?a=1&b=2"},
        {"type": "pre", "offset": 8, "length": 1, "language": "py"},
    ]
