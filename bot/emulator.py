"""In-process Telegram Bot API emulator: end-to-end tests and ``loyalty demo`` use it.

A real ``aiogram.Bot`` talks to it over HTTP (``AiohttpSession(api=TelegramAPIServer.from_base(url))``),
so form/multipart serialisation, ``attach://`` uploads, error mapping (TelegramRetryAfter,
TelegramBadRequest, ...) and long polling run exactly as in production, with no network.
Error descriptions are Telegram's own strings because handlers match on them.
``loyalty demo`` (bot/demo.py) shows its chats in a browser: :meth:`BotApiEmulator.add_listener`
tells it about every message added, edited or deleted.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import math
import mimetypes
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

if TYPE_CHECKING:
    from aiogram import Bot

T = TypeVar("T")
log = logging.getLogger(__name__)

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
# Methods that fail_next/fail_for hit by default: outbound traffic, never polling or getMe.
SEND_EDIT_METHODS = frozenset({"sendmessage", "sendvoice", "sendphoto", "senddocument", "sendmediagroup",
                               "editmessagetext", "editmessagereplymarkup", "editmessagecaption"})
_FAULT_TEXT = {
    400: "Bad Request: emulated failure", 401: "Unauthorized", 404: "Not Found",
    403: "Forbidden: bot was blocked by the user", 500: "Internal Server Error", 502: "Bad Gateway",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    503: "Service Unavailable", 504: "Gateway Timeout",
}
_JSON_FIELDS = frozenset({"reply_markup", "reply_parameters", "media", "commands", "allowed_updates",
                          "scope", "entities", "caption_entities", "link_preview_options"})
_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}
_HTML_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d{1,7}|#x[0-9a-fA-F]{1,6});")
_ATTR = re.compile(r"""([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_BUTTON_ACTIONS = ("callback_data", "url", "web_app", "login_url", "switch_inline_query",
                   "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
                   "copy_text", "callback_game", "pay")


class ApiError(Exception):
    """A Telegram error answer; raised inside method handlers, turned into JSON by the router."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.retry_after = status, description, retry_after


def _u16(text: str) -> int:
    """Telegram measures offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _decode_entity(m: re.Match[str]) -> str:
    name = m.group(1)
    if name.startswith("#x"):
        return chr(int(name[2:], 16))
    if name.startswith("#"):
        return chr(int(name[1:]))
    return {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}[name]


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Mimic Telegram's HTML parse_mode: returns plain text + entities or raises its exact error."""

    def fail(msg: str, pos: int | None = None) -> ApiError:
        where = f" at byte offset {len(src[:pos].encode())}" if pos is not None else ""
        return ApiError(400, f"Bad Request: can't parse entities: {msg}{where}")

    out: list[str] = []
    pos16 = 0
    stack: list[tuple[str, int, str | None, dict[str, Any]]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    while i < len(src):
        ch = src[i]
        if ch == "<":
            end = src.find(">", i)
            if end < 0:
                raise fail("Unclosed start tag", i)
            body = src[i + 1 : end]
            if body.startswith("/"):
                name = body[1:].strip().lower()
                if not stack:
                    raise fail("Unexpected end tag", i)
                top, start, closed_type, closed_extra = stack.pop()
                if name != top:
                    raise fail(f'Unmatched end tag at byte offset {len(src[:i].encode())}, '
                               f'expected "</{top}>", found "</{name}>"')
                if closed_type and pos16 > start:
                    entities.append({"type": closed_type, "offset": start, "length": pos16 - start,
                                     **closed_extra})
            else:
                m = re.match(r"([a-zA-Z][a-zA-Z0-9-]*)", body)
                name = m.group(1).lower() if m else ""
                if name not in _HTML_TAGS:
                    raise fail(f'Unsupported start tag "{name}"', i)
                attrs = {a.lower(): (q1 or q2 or bare or "") for a, q1, q2, bare in
                         _ATTR.findall(body[len(name):])}
                etype: str | None = _HTML_TAGS[name]
                extra: dict[str, Any] = {}
                if name == "span" and attrs.get("class") != "tg-spoiler":
                    raise fail(f'Tag "span" must have class "tg-spoiler"', i)
                if name == "a":
                    extra["url"] = _HTML_ENTITY.sub(_decode_entity, attrs.get("href", ""))
                if name == "blockquote" and "expandable" in attrs:
                    etype = "expandable_blockquote"
                if name == "tg-emoji":
                    extra["custom_emoji_id"] = attrs.get("emoji-id", "")
                if name == "code" and stack and stack[-1][0] == "pre":
                    etype = None  # <pre><code class="language-x"> is one pre entity
                    lang = attrs.get("class", "")
                    if lang.startswith("language-"):
                        stack[-1][3]["language"] = lang[len("language-"):]
                stack.append((name, pos16, etype, extra))
            i = end + 1
            continue
        if ch == "&" and (em := _HTML_ENTITY.match(src, i)):
            chunk, i = _decode_entity(em), em.end()
        else:
            nxt = min((p for p in (src.find("<", i), src.find("&", i + 1)) if p >= 0), default=len(src))
            chunk, i = src[i:nxt], nxt
        out.append(chunk)
        pos16 += _u16(chunk)
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _image_size(data: bytes) -> tuple[int, int]:
    """Width/height from PNG or JPEG headers so PhotoSize looks real; (0, 0) if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, seg = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + seg
    return 0, 0


@dataclass
class StoredFile:
    """A file known to the emulator, uploaded by the bot or sent by a user."""

    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    mime_type: str | None = None
    file_name: str | None = None


@dataclass
class SentRecord:
    """A successful bot send/edit; ``at`` is time.monotonic() so tests can check pacing."""

    method: str
    chat_id: int
    message_id: int
    at: float


@dataclass
class RequestRecord:
    """Any API call (failed ones included) with the HTTP status the emulator answered."""

    method: str
    params: dict[str, Any]
    status: int
    description: str | None
    at: float


@dataclass
class _Fault:
    status: int
    retry_after: int
    methods: frozenset[str]
    description: str | None
    remaining: int | None = None
    until: float | None = None

    def active(self, now: float) -> bool:
        return (self.remaining is None or self.remaining > 0) and (self.until is None or now < self.until)


@dataclass
class _Chat:
    info: dict[str, Any]
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 1
    window: deque[float] = field(default_factory=deque)  # bot send times for the group limiter


@dataclass
class _Params:
    """Request fields as Telegram sees them: strings (JSON for nested values) plus uploaded parts."""

    fields: dict[str, str]
    files: dict[str, tuple[str, bytes, str | None]]

    def text(self, name: str) -> str | None:
        return self.fields.get(name)

    def integer(self, name: str) -> int | None:
        raw = self.fields.get(name)
        try:
            return int(raw) if raw not in (None, "") else None
        except ValueError:
            raise ApiError(400, f"Bad Request: invalid {name} specified") from None

    def flag(self, name: str) -> bool:
        return (self.fields.get(name) or "").lower() in ("true", "1")

    def json(self, name: str) -> Any:
        raw = self.fields.get(name)
        if raw in (None, ""):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None

    def loggable(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.fields.items():
            try:
                out[k] = self.json(k) if k in _JSON_FIELDS else v
            except ApiError:
                out[k] = v
        return out


class BotApiEmulator:
    """Fake Telegram Bot API server with a test-side API to act as users and inspect chats."""

    def __init__(self, token: str = "123456:TEST", bot_id: int = 123456,
                 bot_username: str = "loyalty_test_bot", group_messages_per_minute: int | None = None,
                 auto_create_chats: bool = True) -> None:
        self.token, self.bot_id, self.bot_username = token, bot_id, bot_username
        self.group_messages_per_minute = group_messages_per_minute
        self.auto_create_chats = auto_create_chats
        self.bot_user: dict[str, Any] = {"id": bot_id, "is_bot": True, "first_name": "Test Bot",
                                         "username": bot_username}
        self.sent_log: list[SentRecord] = []
        self.requests_log: list[RequestRecord] = []
        self.answered_callbacks: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.limit_violations = 0
        self.url: str | None = None
        self._users: dict[int, dict[str, Any]] = {}
        self._chats: dict[int, _Chat] = {}
        self._members: dict[tuple[int, int], str] = {}
        self._files: dict[str, StoredFile] = {}
        self._paths: dict[str, StoredFile] = {}
        self._faults: list[_Fault] = []
        self._updates: list[dict[str, Any]] = []
        self._allowed_updates: list[str] = []
        self._pending_callbacks: set[str] = set()
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1)
        self._poll_generation = 0
        self._closing = False
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._listeners: list[Callable[[str, int, dict[str, Any]], None]] = []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Bind 127.0.0.1 on a free port; returns the base URL for TelegramAPIServer.from_base."""
        app = web.Application(client_max_size=60 * 1024 * 1024)  # Telegram's upload cap is 50 MB
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._closing = False
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        """Release pending long polls first so shutdown does not wait for their timeout."""
        self._closing = True
        self._touch()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def make_bot(self, **kwargs: Any) -> Bot:
        """A real aiogram Bot wired to this emulator (call after start())."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        assert self.url, "start() the emulator first"
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.url))
        return Bot(self.token, session=session, **kwargs)

    def add_listener(self, listener: Callable[[str, int, dict[str, Any]], None]) -> Callable[[], None]:
        """``listener(kind, chat_id, message)`` on every change: kind ``new``, ``edit`` or ``delete``
        (``message`` is a copy). Returns the function that removes the listener."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, kind: str, chat_id: int, msg: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, chat_id, copy.deepcopy(msg))
            except Exception:  # a listener's bug must not break the Bot API
                log.exception("emulator listener failed")

    def chats(self) -> list[dict[str, Any]]:
        """Every known chat's info, in the order they were added."""
        return [dict(c.info) for c in self._chats.values()]

    def stored_file(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    # ------------------------------------------------------------------ test-side setup
    def add_chat(self, chat_id: int, type: str = "group", title: str | None = None) -> dict[str, Any]:
        """Register a chat (needed when auto_create_chats is False)."""
        if type == "private":
            info = self._private_info(chat_id)
        else:
            info = {"id": chat_id, "type": type, "title": title or f"Chat {chat_id}"}
        if chat_id in self._chats:
            self._chats[chat_id].info = info
        else:
            self._chats[chat_id] = _Chat(info)
        self._touch()
        return dict(info)

    def add_user(self, user_id: int, first_name: str, username: str | None = None,
                 language_code: str = "ru") -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name,
                                "language_code": language_code}
        if username:
            user["username"] = username
        self._users[user_id] = user
        if user_id in self._chats:
            self._chats[user_id].info = self._private_info(user_id)
        return dict(user)

    def set_chat_member(self, chat_id: int, user_id: int, status: str) -> None:
        """What getChatMember answers, e.g. to test admin-only commands."""
        if status not in ("creator", "administrator", "member", "left", "kicked"):
            raise ValueError(f"unsupported chat member status {status!r}")
        self._members[(chat_id, user_id)] = status

    def fail_next(self, count: int, status: int = 429, retry_after: int = 1,
                  methods: Iterable[str] | None = None, description: str | None = None) -> None:
        """The next ``count`` matching calls (default: sends/edits) answer with this error."""
        self._faults.append(_Fault(status, retry_after, self._method_set(methods), description,
                                   remaining=count))

    def fail_for(self, seconds: float, status: int = 429, retry_after: int = 1,
                 methods: Iterable[str] | None = None, description: str | None = None) -> None:
        """Matching calls fail for the next ``seconds`` (an outage rather than a single hiccup)."""
        self._faults.append(_Fault(status, retry_after, self._method_set(methods), description,
                                   until=time.monotonic() + seconds))

    # ------------------------------------------------------------------ test-side user actions
    async def user_message(self, chat_id: int, user_id: int, text: str,
                           reply_to_message_id: int | None = None) -> dict[str, Any]:
        """A user writes ``text``; a leading /command gets a bot_command entity like Telegram adds."""
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            cmd = text.split(maxsplit=1)[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": _u16(cmd)}]
        return self._user_post(chat_id, user_id, content, reply_to_message_id)

    async def user_voice(self, chat_id: int, user_id: int, ogg_bytes: bytes, duration: int,
                         reply_to_message_id: int | None = None) -> dict[str, Any]:
        """A user records a voice note; the bytes are downloadable via getFile like real ones."""
        f = self._store_file("voice", ogg_bytes, "voice.oga", "audio/ogg")
        voice = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "duration": duration,
                 "mime_type": "audio/ogg", "file_size": len(ogg_bytes)}
        return self._user_post(chat_id, user_id, {"voice": voice}, reply_to_message_id)

    async def press_button(
        self, chat_id: int, user_id: int, message_id: int, callback_data: str, *, forged: bool = False
    ) -> str:
        """A user taps an inline button that must exist on the message right now; returns query id.

        ``forged=True`` sends the callback data even if no such button exists, as a modified
        client can."""
        user = self._user(user_id)
        msg = self._chat_or_create(chat_id).messages.get(message_id)
        if msg is None:
            raise AssertionError(f"no message {message_id} in chat {chat_id}\n{self.dump()}")
        buttons = [b for row in msg.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
        if not forged and not any(b.get("callback_data") == callback_data for b in buttons):
            raise AssertionError(f"message {message_id} has no button with data {callback_data!r}; "
                                 f"buttons: {buttons}")
        query_id = str(4_000_000_000_000 + next(self._ids))
        self._pending_callbacks.add(query_id)
        self._push_update("callback_query", {
            "id": query_id, "from": user, "message": copy.deepcopy(msg),
            "chat_instance": str(abs(chat_id) * 7919), "data": callback_data})
        return query_id

    # ------------------------------------------------------------------ test-side reading
    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        """Current messages of the chat in order, edits applied, deleted ones gone."""
        chat = self._chats.get(chat_id)
        return [copy.deepcopy(m) for m in chat.messages.values()] if chat else []

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.messages(chat_id) if m["from"]["id"] == self.bot_id]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        chat = self._chats.get(chat_id)
        msg = chat.messages.get(message_id) if chat else None
        return copy.deepcopy(msg) if msg else None

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    def chat(self, chat_id: int) -> dict[str, Any] | None:
        chat = self._chats.get(chat_id)
        return dict(chat.info) if chat else None

    async def wait_for(self, predicate: Callable[[], T | None | bool], timeout: float = 10.0,
                       what: str = "condition") -> T:
        """Re-check ``predicate`` on every state change; returns its first truthy result."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result  # type: ignore[return-value]
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.dump()}")
            await self._wait_change(remaining)

    async def wait_for_bot_message(self, chat_id: int, contains: str | None = None,
                                   timeout: float = 10, newer_than: int = 0) -> dict[str, Any]:
        """Newest bot message in the chat (id > newer_than) whose text/caption contains ``contains``."""

        def find() -> dict[str, Any] | None:
            msg: dict[str, Any]
            for msg in reversed(self.bot_messages(chat_id)):
                body: str = msg.get("text") or msg.get("caption") or ""
                if msg["message_id"] > newer_than and (contains is None or contains in body):
                    return msg
            return None

        return await self.wait_for(find, timeout, f"bot message in {chat_id} containing {contains!r}")

    def dump(self) -> str:
        """Human-readable state for assertion messages."""
        lines: list[str] = []
        for chat in self._chats.values():
            info = chat.info
            lines.append(f"chat {info['id']} ({info['type']}) {info.get('title') or info.get('first_name', '')}")
            for m in chat.messages.values():
                who = "BOT" if m["from"]["id"] == self.bot_id else m["from"].get("username") or m["from"]["first_name"]
                body = m.get("text") or m.get("caption") or next(
                    (f"[{k}]" for k in ("voice", "photo", "document") if k in m), "")
                kb = [b["text"] for row in m.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
                extra = (f" kb={kb}" if kb else "") + (" (edited)" if "edit_date" in m else "")
                if "reply_to_message" in m:
                    extra += f" (reply to #{m['reply_to_message']['message_id']})"
                lines.append(f"  #{m['message_id']} {who}: {body!r}{extra}")
        failed = [r for r in self.requests_log if r.status != 200][-10:]
        lines += [f"failed {r.method} -> {r.status} {r.description}" for r in failed]
        return "\n".join(lines) or "(no chats)"

    # ------------------------------------------------------------------ internals: state
    def _touch(self) -> None:
        """Wake every waiter (getUpdates, wait_for); they re-check their own condition."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    @staticmethod
    def _method_set(methods: Iterable[str] | None) -> frozenset[str]:
        return frozenset(m.lower() for m in methods) if methods is not None else SEND_EDIT_METHODS

    def _user(self, user_id: int) -> dict[str, Any]:
        if user_id not in self._users:
            self.add_user(user_id, f"User{user_id}")
        return self._users[user_id]

    def _private_info(self, user_id: int) -> dict[str, Any]:
        user = self._user(user_id)
        info = {"id": user_id, "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            info["username"] = user["username"]
        return info

    def _chat_or_create(self, chat_id: int) -> _Chat:
        if chat_id not in self._chats:
            kind = "private" if chat_id > 0 else "supergroup" if str(chat_id).startswith("-100") else "group"
            self.add_chat(chat_id, kind)
        return self._chats[chat_id]

    def _resolve_chat(self, raw: Any) -> _Chat:
        """Bot-side chat lookup; unknown chats are created unless auto_create_chats is off."""
        if isinstance(raw, str) and raw.startswith("@"):
            for chat in self._chats.values():
                if chat.info.get("username") == raw[1:]:
                    return chat
            raise ApiError(400, "Bad Request: chat not found")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if chat_id not in self._chats and not self.auto_create_chats:
            raise ApiError(400, "Bad Request: chat not found")
        return self._chat_or_create(chat_id)

    def _store_file(self, kind: str, data: bytes, filename: str | None, mime: str | None) -> StoredFile:
        n = next(self._ids)
        ext = (filename or "").rpartition(".")[2] if "." in (filename or "") else "bin"
        f = StoredFile(f"{kind[:2].upper()}AgAD{n:06d}", f"AQAD{n:06d}",
                       f"{kind}/file_{n}.{ext}", data, mime, filename)
        self._files[f.file_id] = self._paths[f.file_path] = f
        return f

    def _add_message(self, chat: _Chat, sender: dict[str, Any], content: dict[str, Any],
                     reply_to: dict[str, Any] | None = None, markup: dict[str, Any] | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"message_id": chat.next_id, "from": copy.deepcopy(sender),
                               "chat": dict(chat.info), "date": int(time.time()), **content}
        chat.next_id += 1
        if reply_to is not None:
            msg["reply_to_message"] = {k: v for k, v in copy.deepcopy(reply_to).items() if k != "reply_to_message"}
        if markup is not None:
            msg["reply_markup"] = markup
        chat.messages[msg["message_id"]] = msg
        self._touch()
        self._notify("new", chat.info["id"], msg)
        return msg

    def _user_post(self, chat_id: int, user_id: int, content: dict[str, Any],
                   reply_to_message_id: int | None) -> dict[str, Any]:
        user = self._user(user_id)
        chat = self._chat_or_create(chat_id)
        reply = None
        if reply_to_message_id is not None:
            reply = chat.messages.get(reply_to_message_id)
            if reply is None:
                raise AssertionError(f"no message {reply_to_message_id} to reply to in chat {chat_id}")
        msg = self._add_message(chat, user, content, reply)
        self._push_update("message", msg)
        return copy.deepcopy(msg)

    def _push_update(self, kind: str, payload: dict[str, Any]) -> None:
        self._updates.append({"update_id": next(self._update_ids), kind: copy.deepcopy(payload)})
        self._touch()

    # ------------------------------------------------------------------ internals: HTTP
    async def _handle_api(self, request: web.Request) -> web.Response:
        """Route one Bot API call: auth, fault injection, dispatch, logging, JSON envelope."""
        method = request.match_info["method"]
        params = await self._read_params(request)
        status, description, retry_after, result = 200, None, None, None
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = getattr(self, f"_api_{method.lower()}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            self._apply_faults(method.lower())
            result = await handler(params, method)
        except ApiError as e:
            status, description, retry_after = e.status, e.description, e.retry_after
        except Exception as e:  # an emulator bug must surface in the log, not as a hung client
            log.exception("emulator bug in %s", method)
            status, description = 500, f"Internal Server Error: emulator bug {e!r}"
        self.requests_log.append(RequestRecord(method, params.loggable(), status, description, time.monotonic()))
        self._touch()
        if status == 200:
            return web.json_response({"ok": True, "result": result})
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        f = self._paths.get(request.match_info["path"])
        if request.match_info["token"] != self.token or f is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=f.data, content_type=f.mime_type or "application/octet-stream")

    @staticmethod
    async def _read_params(request: web.Request) -> _Params:
        fields: dict[str, str] = dict(request.query)
        files: dict[str, tuple[str, bytes, str | None]] = {}
        if request.content_type == "application/json" and request.can_read_body:
            for k, v in (await request.json()).items():
                fields[k] = v if isinstance(v, str) else json.dumps(v)
        elif request.can_read_body:
            for k, v in (await request.post()).items():
                if isinstance(v, web.FileField):
                    files[k] = (v.filename, v.file.read(), v.content_type)
                else:
                    fields[k] = v if isinstance(v, str) else bytes(v).decode()
        return _Params(fields, files)

    def _apply_faults(self, method: str) -> None:
        now = time.monotonic()
        self._faults = [f for f in self._faults if f.active(now)]
        for f in self._faults:
            if method in f.methods:
                if f.remaining is not None:
                    f.remaining -= 1
                if f.status == 429:
                    raise ApiError(429, f.description or f"Too Many Requests: retry after {f.retry_after}",
                                   f.retry_after)
                raise ApiError(f.status, f.description or _FAULT_TEXT.get(f.status, "Bad Request: emulated failure"))

    # ------------------------------------------------------------------ internals: validation
    def _formatted(self, p: _Params, key: str, entities_key: str, limit: int,
                   too_long: str) -> tuple[str, list[dict[str, Any]]]:
        raw = p.text(key) or ""
        mode = (p.text("parse_mode") or "").lower()
        text, entities = parse_html(raw) if mode == "html" else (raw, p.json(entities_key) or [])
        if _u16(text) > limit:
            raise ApiError(400, too_long)
        return text, entities

    def _text_content(self, p: _Params) -> dict[str, Any]:
        text, entities = self._formatted(p, "text", "entities", 4096, "Bad Request: message is too long")
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        return {"text": text, **({"entities": entities} if entities else {})}

    def _caption(self, p: _Params) -> dict[str, Any]:
        if not p.text("caption"):
            return {}
        text, entities = self._formatted(p, "caption", "caption_entities", 1024,
                                         "Bad Request: message caption is too long")
        return {"caption": text, **({"caption_entities": entities} if entities else {})}

    def _markup(self, p: _Params) -> dict[str, Any] | None:
        """Validate inline keyboards like Telegram; other keyboards are accepted but not echoed."""
        markup = p.json("reply_markup")
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            return None
        for row in markup["inline_keyboard"]:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if not any(k in button for k in _BUTTON_ACTIONS):
                    raise ApiError(400, "Bad Request: can't parse inline keyboard button: "
                                        "Text buttons are unallowed in the inline keyboard")
        return markup if any(markup["inline_keyboard"]) else None

    def _reply_target(self, p: _Params, chat: _Chat) -> dict[str, Any] | None:
        """reply_parameters (current aiogram) and legacy reply_to_message_id both work."""
        rp = p.json("reply_parameters") or {}
        mid = rp.get("message_id") or p.integer("reply_to_message_id")
        if not mid:
            return None
        target_chat = self._resolve_chat(rp["chat_id"]) if rp.get("chat_id") else chat
        msg = target_chat.messages.get(int(mid))
        if msg is None:
            if rp.get("allow_sending_without_reply", p.flag("allow_sending_without_reply")):
                return None
            raise ApiError(400, "Bad Request: message to be replied not found")
        return msg

    def _check_group_limit(self, chat: _Chat, count: int) -> None:
        """Sliding 60 s window per group, answering 429 with the wait until a slot frees up."""
        limit = self.group_messages_per_minute
        if limit is None or chat.info["id"] >= 0:
            return
        now = time.monotonic()
        while chat.window and chat.window[0] <= now - 60:
            chat.window.popleft()
        if len(chat.window) + count > limit:
            self.limit_violations += 1
            idx = len(chat.window) + count - limit - 1
            wait = chat.window[idx] + 60 - now if count <= limit else 60
            retry = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry}", retry)

    def _input_file(self, p: _Params, value: str | None, kind: str) -> StoredFile:
        """attach://<part> uploads are stored; a known file_id is reused as Telegram does."""
        if not value:
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        if value.startswith("attach://"):
            part = p.files.get(value[len("attach://"):])
            if part is None:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            name, data, mime = part
            if not data:
                raise ApiError(400, "Bad Request: file must be non-empty")
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(name)[0] or mime
            return self._store_file(kind, data, name, mime)
        if value in self._files:
            return self._files[value]
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    def _media(self, f: StoredFile, kind: str, p: _Params | None = None) -> dict[str, Any]:
        base = {"file_id": f.file_id, "file_unique_id": f.file_unique_id, "file_size": len(f.data)}
        if kind == "photo":
            w, h = _image_size(f.data)
            return {"photo": [{**base, "width": w, "height": h}]}
        if kind == "voice":
            duration = p.integer("duration") if p else None
            return {"voice": {**base, "duration": duration or 0, "mime_type": "audio/ogg"}}
        doc = {**base, "file_name": f.file_name or "file", "mime_type": f.mime_type or "application/octet-stream"}
        return {kind: doc}

    # ------------------------------------------------------------------ internals: sends
    def _send(self, p: _Params, method: str, content_fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Common send path: validate everything, check the group limit, then store and log."""
        chat = self._resolve_chat(p.text("chat_id"))
        content = content_fn()
        markup = self._markup(p)
        reply = self._reply_target(p, chat)
        self._check_group_limit(chat, 1)
        msg = self._add_message(chat, self.bot_user, content, reply, markup)
        self._record_sent(method, chat, [msg])
        return copy.deepcopy(msg)

    def _record_sent(self, method: str, chat: _Chat, msgs: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for m in msgs:
            if chat.info["id"] < 0 and method.lower().startswith("send"):
                chat.window.append(now)
            self.sent_log.append(SentRecord(method, chat.info["id"], m["message_id"], now))

    async def _api_sendmessage(self, p: _Params, method: str) -> dict[str, Any]:
        return self._send(p, method, lambda: self._text_content(p))

    async def _api_sendvoice(self, p: _Params, method: str) -> dict[str, Any]:
        return self._send(p, method, lambda: {
            **self._caption(p), **self._media(self._input_file(p, p.text("voice"), "voice"), "voice", p)})

    async def _api_sendphoto(self, p: _Params, method: str) -> dict[str, Any]:
        return self._send(p, method, lambda: {
            **self._caption(p), **self._media(self._input_file(p, p.text("photo"), "photo"), "photo")})

    async def _api_senddocument(self, p: _Params, method: str) -> dict[str, Any]:
        return self._send(p, method, lambda: {
            **self._caption(p), **self._media(self._input_file(p, p.text("document"), "document"), "document")})

    async def _api_sendmediagroup(self, p: _Params, method: str) -> list[dict[str, Any]]:
        chat = self._resolve_chat(p.text("chat_id"))
        items = p.json("media")
        if not isinstance(items, list) or not 2 <= len(items) <= 10:
            raise ApiError(400, "Bad Request: wrong number of messages in the media group; must be 2-10")
        contents = []
        for item in items:
            kind = item.get("type")
            if kind not in ("photo", "document"):
                raise ApiError(400, "Bad Request: unsupported media type in the media group")
            sub = _Params({"caption": item.get("caption") or "", "parse_mode": item.get("parse_mode") or "",
                           "caption_entities": json.dumps(item.get("caption_entities") or [])}, p.files)
            contents.append({**self._caption(sub), **self._media(self._input_file(p, item.get("media"), kind), kind)})
        reply = self._reply_target(p, chat)
        self._check_group_limit(chat, len(contents))
        group_id = str(10**17 + next(self._ids))
        msgs = [self._add_message(chat, self.bot_user, {**c, "media_group_id": group_id}, reply) for c in contents]
        self._record_sent(method, chat, msgs)
        return copy.deepcopy(msgs)

    # ------------------------------------------------------------------ internals: edits
    def _editable(self, p: _Params) -> tuple[_Chat, dict[str, Any]]:
        if p.text("inline_message_id"):
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat = self._resolve_chat(p.text("chat_id"))
        msg = chat.messages.get(p.integer("message_id") or 0)
        if msg is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if msg["from"]["id"] != self.bot_id:
            raise ApiError(400, "Bad Request: message can't be edited")
        return chat, msg

    def _apply_edit(self, method: str, chat: _Chat, msg: dict[str, Any], content: dict[str, Any],
                    drop: tuple[str, ...], markup: dict[str, Any] | None) -> dict[str, Any]:
        """Omitting reply_markup on an edit removes the keyboard, exactly like Telegram."""
        same = all(msg.get(k) == content.get(k) for k in drop) and msg.get("reply_markup") == markup
        if same:
            raise ApiError(400, NOT_MODIFIED)
        for k in drop:
            msg.pop(k, None)
        msg.update(content)
        msg.pop("reply_markup", None)
        if markup is not None:
            msg["reply_markup"] = markup
        msg["edit_date"] = int(time.time())
        self._record_sent(method, chat, [msg])
        self._touch()
        self._notify("edit", chat.info["id"], msg)
        return copy.deepcopy(msg)

    async def _api_editmessagetext(self, p: _Params, method: str) -> dict[str, Any]:
        chat, msg = self._editable(p)
        if "text" not in msg:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        return self._apply_edit(method, chat, msg, self._text_content(p), ("text", "entities"), self._markup(p))

    async def _api_editmessagecaption(self, p: _Params, method: str) -> dict[str, Any]:
        chat, msg = self._editable(p)
        if "text" in msg:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        return self._apply_edit(method, chat, msg, self._caption(p), ("caption", "caption_entities"), self._markup(p))

    async def _api_editmessagereplymarkup(self, p: _Params, method: str) -> dict[str, Any]:
        chat, msg = self._editable(p)
        return self._apply_edit(method, chat, msg, {}, (), self._markup(p))

    async def _api_deletemessage(self, p: _Params, method: str) -> bool:
        chat = self._resolve_chat(p.text("chat_id"))
        gone = chat.messages.pop(p.integer("message_id") or 0, None)
        if gone is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        self._notify("delete", chat.info["id"], gone)
        return True

    # ------------------------------------------------------------------ internals: other methods
    async def _api_getme(self, p: _Params, method: str) -> dict[str, Any]:
        return {**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False}

    async def _api_deletewebhook(self, p: _Params, method: str) -> bool:
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _api_setmycommands(self, p: _Params, method: str) -> bool:
        self.commands = p.json("commands") or []
        return True

    async def _api_getmycommands(self, p: _Params, method: str) -> list[dict[str, Any]]:
        return self.commands

    async def _api_getchat(self, p: _Params, method: str) -> dict[str, Any]:
        chat = self._resolve_chat(p.text("chat_id"))
        gifts = dict.fromkeys(("unlimited_gifts", "limited_gifts", "unique_gifts",
                               "premium_subscription", "gifts_from_channels"), False)
        return {**chat.info, "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts}

    async def _api_getchatmember(self, p: _Params, method: str) -> dict[str, Any]:
        chat = self._resolve_chat(p.text("chat_id"))
        user_id = p.integer("user_id") or 0
        user = self.bot_user if user_id == self.bot_id else self._user(user_id)
        status = self._members.get((chat.info["id"], user_id), "member")
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(dict.fromkeys((
                "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
                "can_promote_members", "can_change_info", "can_invite_users", "can_post_stories",
                "can_edit_stories", "can_delete_stories", "can_send_welcome_messages",
                "can_pin_messages"), True), can_be_edited=False, is_anonymous=False)
        elif status == "kicked":
            member["until_date"] = 0
        return member

    async def _api_answercallbackquery(self, p: _Params, method: str) -> bool:
        query_id = p.text("callback_query_id") or ""
        if query_id not in self._pending_callbacks:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self._pending_callbacks.discard(query_id)
        self.answered_callbacks.append({"id": query_id, "text": p.text("text"),
                                        "show_alert": p.flag("show_alert"), "url": p.text("url")})
        return True

    async def _api_getfile(self, p: _Params, method: str) -> dict[str, Any]:
        f = self._files.get(p.text("file_id") or "")
        if f is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {"file_id": f.file_id, "file_unique_id": f.file_unique_id,
                "file_size": len(f.data), "file_path": f.file_path}

    async def _api_getupdates(self, p: _Params, method: str) -> list[dict[str, Any]]:
        """Long poll: answer at once if updates are queued, else wait for a change or the timeout.

        A newer getUpdates ends an older pending one with 409, as Telegram does, so an
        abandoned poll (client cancelled) never lingers until its timeout.
        """
        self._poll_generation += 1
        generation = self._poll_generation
        self._touch()
        allowed = p.json("allowed_updates")
        if allowed is not None:
            self._allowed_updates = list(allowed)
        offset, limit = p.integer("offset"), min(max(p.integer("limit") or 100, 1), 100)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (p.integer("timeout") or 0)
        while True:
            if offset:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if self._allowed_updates:
                self._updates = [u for u in self._updates if set(u) - {"update_id"} <= set(self._allowed_updates)]
            if self._updates:
                return copy.deepcopy(self._updates[:limit])
            if self._closing:
                return []
            if generation != self._poll_generation:
                raise ApiError(409, _FAULT_TEXT[409])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await self._wait_change(remaining)
