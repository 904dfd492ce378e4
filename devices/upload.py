"""``POST /api/v1/audio``: the HTTP way in for recorders and telephony that cannot speak MQTT.

Transport only: authenticate, bound and parse the multipart form, hand the bytes to
:class:`bot.uploads.UploadService`, and turn every refusal into a status and a JSON body
``{"error": reason, "detail": "what to do"}``. The rules live in the service.

Why it reads the request the way it does:

* **Nothing big before we know who it is.** The token and ``Content-Length`` are checked from
  the headers, in the ``Expect: 100-continue`` handler when the client asks (curl does for
  bodies over 1 MB), so a refused 500 MB upload is never sent at all.
* **Bounded memory.** The file part is read in chunks and counted; a chunked body without a
  ``Content-Length`` is refused as soon as it passes the limit, not after it is buffered.
* **Cheap checks first.** Fields are checked as they arrive, so a start time in the future
  is refused before a file that follows it is read.

The routes go into an application that others may add pages to (:func:`add_upload_routes`);
:class:`HttpServer` runs it on ``http_host``/``http_port``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import aiohttp
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from bot.clock import Clock
from bot.models import Device
from bot.settings import SettingsError
from bot.uploads import DeviceTokens, UploadRejected, UploadResult, UploadService
from devices.adapters import parse_device_ts
from devices.contract import PayloadError

__all__ = [
    "FORM_OVERHEAD",
    "UPLOAD_PATH",
    "HttpServer",
    "add_upload_routes",
    "make_http_app",
    "make_upload_app",
]

log = logging.getLogger(__name__)

UPLOAD_PATH: Final = "/api/v1/audio"
FORM_OVERHEAD: Final = 64 * 1024
"""Room for the form's text fields and boundaries on top of the file limit."""
FIELD_LIMIT: Final = 1024  # bytes in one text field; nothing we take is near it
MAX_PARTS: Final = 16
CHUNK: Final = 256 * 1024
KINDS: Final = frozenset({"segment", "call"})
SHUTDOWN_SECONDS: Final = 10.0

STATUS: Final[dict[str, int]] = {
    "bad_form": 400,
    "bad_field": 400,
    "unauthorized": 401,
    "wrong_point": 403,
    "too_large": 413,
    "not_multipart": 415,
    "unsupported_codec": 415,
    "unknown_point": 422,
    "unknown_staff": 422,
    "future_ts": 422,
    "bad_ts": 422,
    "corrupt": 422,
    "empty": 422,
    "too_long": 422,
    "internal": 500,
}
_DEVICE: Final = web.RequestKey("loyalty_upload_device", Device)


class Refused(Exception):
    """A request we answer with an error; ``reason`` is a key of :data:`STATUS`."""

    def __init__(self, reason: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.headers = headers or {}


@dataclass(slots=True)
class _Form:
    kind: str = "segment"
    started_at: datetime | None = None
    site: str | None = None
    point: str | None = None
    caller: str | None = None
    staff: str | None = None
    data: bytes | None = None


class _UploadHandler:
    def __init__(
        self, uploads: UploadService, tokens: DeviceTokens, max_bytes: int, max_future: timedelta, clock: Clock
    ) -> None:
        self._uploads = uploads
        self._tokens = tokens
        self._max_bytes = max_bytes
        self._max_future = max_future
        self._clock = clock

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """Refuse from the headers before the client sends the body; else ``100 Continue``."""
        try:
            request[_DEVICE] = await self._admit(request)
        except Refused as refused:
            return _refuse(request, None, refused)
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version != aiohttp.HttpVersion11 or expect.lower() != "100-continue":
            return _error(417, "bad_form", f"Expect: {expect[:64]!r} is not supported; send 100-continue or none")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # what aiohttp's own handler does
        request.writer.output_size = 0
        return None

    async def post(self, request: web.Request) -> web.StreamResponse:
        device: Device | None = request.get(_DEVICE)
        try:
            if device is None:
                device = await self._admit(request)
            form = await self._read_form(request)
            result = await self._store(device, form)
        except Refused as refused:
            return _refuse(request, device, refused)
        except UploadRejected as rejected:
            return _refuse(request, device, Refused(rejected.reason, rejected.detail))
        except Exception:
            log.exception("upload from device %s failed", device.id if device else "-")
            return _error(500, "internal", "the upload was not stored; try again later")
        log.info(
            "upload from device %s: %s %s id=%d %.1f s", device.id, result.kind, result.status, result.id, result.seconds
        )
        body = {"status": result.status, "kind": result.kind, "id": result.id, "seconds": round(result.seconds, 3)}
        return web.json_response(body, status=200 if result.duplicate else 201)

    async def _admit(self, request: web.Request) -> Device:
        """Who is sending, and whether the headers already say the body is too big or not a form."""
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(
                "unauthorized",
                "send 'Authorization: Bearer <token>'; `loyalty device token DEVICE_ID` issues one",
                {hdrs.WWW_AUTHENTICATE: 'Bearer realm="loyalty"'},
            )
        device = await self._tokens.verify(token.strip())
        if device is None:
            raise Refused(
                "unauthorized",
                "the token is not valid (replaced or mistyped); issue a new one with `loyalty device token DEVICE_ID`",
                {hdrs.WWW_AUTHENTICATE: 'Bearer realm="loyalty", error="invalid_token"'},
            )
        request[_DEVICE] = device  # a refusal below is then logged with the device
        if request.content_length is not None and request.content_length > self._max_bytes + FORM_OVERHEAD:
            raise Refused("too_large", f"{request.content_length} bytes, the limit is {self._limit_text()}")
        if request.content_type != "multipart/form-data":
            raise Refused("not_multipart", f"send multipart/form-data, not {request.content_type or 'no body'}")
        return device

    async def _read_form(self, request: web.Request) -> _Form:
        form = _Form()
        try:
            reader = await request.multipart()
            parts = 0
            while (part := await reader.next()) is not None:
                parts += 1
                if parts > MAX_PARTS:
                    raise Refused("bad_form", f"more than {MAX_PARTS} form fields")
                if not isinstance(part, aiohttp.BodyPartReader):
                    raise Refused("bad_form", "nested multipart is not accepted")
                await self._read_part(part, form)
        except (ValueError, aiohttp.ClientError, HttpProcessingError) as exc:
            raise Refused("bad_form", f"the multipart body cannot be read ({exc.__class__.__name__})") from None
        if form.data is None:
            raise Refused("bad_form", "no 'file' field with the audio")
        if form.started_at is None:
            raise Refused("bad_form", "no 'started_at' field (epoch ms or ISO 8601 with an offset)")
        if form.kind == "segment" and (form.caller or form.staff):
            raise Refused("bad_form", "'caller' and 'staff' belong to a call: send kind=call")
        return form

    async def _read_part(self, part: aiohttp.BodyPartReader, form: _Form) -> None:
        name = part.name or ""
        if name == "file":
            if form.data is not None:
                raise Refused("bad_form", "one 'file' per upload")
            form.data = await self._read_file(part)
            return
        value = await _read_field(part, name)
        if name == "kind":
            if value not in KINDS:
                raise Refused("bad_field", f"kind must be segment or call, got {value[:32]!r}")
            form.kind = value
        elif name == "started_at":
            form.started_at = self._started_at(value)
        elif name == "point":
            site, _, point = value.rpartition("/")  # "W1" or "MSK-1/W1"
            form.point = point or None
            form.site = site or form.site
        elif name == "site":
            form.site = value or None
        elif name == "caller":
            form.caller = value or None
        elif name == "staff":
            form.staff = value or None
        # other fields are ignored: telephony systems send their own metadata too

    async def _read_file(self, part: aiohttp.BodyPartReader) -> bytes:
        data = bytearray()
        while chunk := await part.read_chunk(CHUNK):
            if len(data) + len(chunk) > self._max_bytes:
                raise Refused("too_large", f"the file is over the limit of {self._limit_text()}")
            data += chunk
        return bytes(data)

    def _started_at(self, value: str) -> datetime:
        raw: int | str = int(value) if value.isascii() and value.isdigit() and len(value) <= 15 else value
        try:
            return parse_device_ts(raw, self._clock.now(), self._max_future)
        except PayloadError as error:
            raise Refused(error.reason, error.detail.replace("'ts'", "started_at")) from None

    async def _store(self, device: Device, form: _Form) -> UploadResult:
        assert form.data is not None and form.started_at is not None
        if form.kind == "call":
            return await self._uploads.save_call(
                device, form.started_at, form.data, form.caller, form.staff, point_code=form.point, site=form.site
            )
        return await self._uploads.save_segment(device, form.point, form.site, form.started_at, form.data)

    def _limit_text(self) -> str:
        return f"{self._max_bytes / 1_048_576:g} MB (UPLOAD_MAX_MB)"


async def _read_field(part: aiohttp.BodyPartReader, name: str) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(FIELD_LIMIT + 1):
        data += chunk
        if len(data) > FIELD_LIMIT:
            raise Refused("bad_field", f"field {name[:32]!r} is longer than {FIELD_LIMIT} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Refused("bad_field", f"field {name[:32]!r} is not UTF-8 text") from None


def _error(status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason, "detail": detail}, status=status, headers=headers)


def _refuse(request: web.Request, device: Device | None, refused: Refused) -> web.Response:
    device = device or request.get(_DEVICE)
    log.warning(
        "upload refused: device %s (%s), %s: %s",
        device.id if device else "-", request.remote, refused.reason, refused.detail,
    )
    return _error(STATUS[refused.reason], refused.reason, refused.detail, refused.headers)


def make_http_app(max_bytes: int) -> web.Application:
    """The service's one aiohttp application; its body limit leaves room for the largest upload."""
    return web.Application(client_max_size=max_bytes + FORM_OVERHEAD)


def add_upload_routes(
    app: web.Application,
    uploads: UploadService,
    tokens: DeviceTokens,
    *,
    max_bytes: int,
    max_future: timedelta,
    clock: Clock,
) -> None:
    """``POST /api/v1/audio`` on ``app``; ``max_bytes`` caps the file, ``max_future`` the start time."""
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    handler = _UploadHandler(uploads, tokens, max_bytes, max_future, clock)
    app.router.add_post(UPLOAD_PATH, handler.post, expect_handler=handler.expect)


def make_upload_app(
    uploads: UploadService, tokens: DeviceTokens, *, max_bytes: int, max_future: timedelta, clock: Clock
) -> web.Application:
    """An application with the upload route only (tests, and a service with no other pages yet)."""
    app = make_http_app(max_bytes)
    add_upload_routes(app, uploads, tokens, max_bytes=max_bytes, max_future=max_future, clock=clock)
    return app


class HttpServer:
    """Runs one aiohttp application on ``host:port``; port 0 takes a free one (see :attr:`port`)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; a port that is taken is a ``SettingsError`` that names the setting to change."""
        # access_log=None: each upload and each refusal is logged by the handler, with its device.
        # A stop waits SHUTDOWN_SECONDS for uploads in flight; an interrupted one stored
        # nothing the client's retry will not complete.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._requested_port).start()
        except OSError as error:
            await runner.cleanup()
            raise SettingsError(
                f"HTTP_HOST/HTTP_PORT: cannot listen on {self.host}:{self._requested_port} ({error.strerror or error}); "
                "pick a free port (0 takes any) or stop what holds it"
            ) from error
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and finish the requests in flight (aiohttp's shutdown timeout)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the HTTP server has not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
