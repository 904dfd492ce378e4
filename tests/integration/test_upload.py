"""``POST /api/v1/audio`` end to end: a real aiohttp server on a free port, a real database
(SQLite and PostgreSQL), real audio files, and every refusal the issue lists."""

from __future__ import annotations

import asyncio
import sqlite3
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from bot.audio import AudioService
from bot.cli import main
from bot.clock import FakeClock
from bot.directory import Directory
from bot.models import AudioSegment, Conversation, Device, Point, SpeechStatus
from bot.org import import_org, load_org_file
from bot.settings import SettingsError
from bot.uploads import DeviceTokens, UploadService, token_digest
from devices.upload import UPLOAD_PATH, HttpServer, make_upload_app
from speech.audio import encode_ogg_opus, encode_wav
from speech.store import SegmentStore

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)
LIMIT = 1024 * 1024  # a small UPLOAD_MAX_MB so "too big" costs a megabyte, not 500
KEEP = timedelta(days=180)
RATE = 16_000


def tone(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


WAV_2S = encode_wav(tone(2.0))
CALL_3S = encode_ogg_opus(tone(3.0, 300.0))
TRUNCATED_OGG = encode_ogg_opus(tone(2.0))[:200]  # cut inside the headers: nothing to read
PNG = (
    b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    + b"\0" * 4 + b"\0\0\0\0IEND\xaeB`\x82"
)
BIG_WAV = encode_wav(tone(40.0))  # 1.28 MB: over LIMIT


def epoch_ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


@dataclass
class Rig:
    session: aiohttp.ClientSession
    server: HttpServer
    clock: FakeClock
    recorder: str  # token of rec-w1 (MSK-1/W1)
    pbx: str  # token of pbx-w2 (MSK-1/W2)
    audio_dir: Path

    async def post(
        self, token: str | None, data: bytes | None, filename: str = "a.wav", **fields: str
    ) -> tuple[int, dict[str, Any], CIMultiDictProxy[str]]:
        form = aiohttp.FormData(default_to_multipart=True)
        for name, value in fields.items():
            form.add_field(name, value)
        if data is not None:
            form.add_field("file", data, filename=filename, content_type="application/octet-stream")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.post(UPLOAD_PATH, data=form, headers=headers) as response:
            return response.status, await response.json(), response.headers

    async def post_chunked(self, token: str, data: bytes, **fields: str) -> tuple[int, dict[str, Any]]:
        """The same form as a chunked body (an async generator): no Content-Length to refuse by."""
        boundary = "loyalty-test-boundary"
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()

        async def body() -> AsyncIterator[bytes]:
            yield head
            for offset in range(0, len(data), 64 * 1024):
                yield data[offset : offset + 64 * 1024]
            yield f"\r\n--{boundary}--\r\n".encode()

        headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
        async with self.session.post(UPLOAD_PATH, data=body(), headers=headers) as response:
            assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
            return response.status, await response.json()

    async def raw_headers_only(self, token: str, content_length: int) -> bytes:
        """Announce a body with ``Expect: 100-continue`` and read the answer without sending it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        writer.write(
            (
                f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {content_length}\r\n"
                "Expect: 100-continue\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        finally:
            writer.close()


@pytest.fixture
async def rig(database: str, tmp_path: Path) -> AsyncIterator[Rig]:
    await import_org(load_org_file(ORG))
    await Device.create(id="rec-w1", kind="native", point=await Point.get(code="W1", office__code="MSK-1"))
    await Device.create(id="pbx-w2", kind="native", point=await Point.get(code="W2", office__code="MSK-1"))
    directory = await Directory.load()
    clock = FakeClock(NOW)
    audio = AudioService(SegmentStore(tmp_path / "audio"), clock, lambda: directory, timedelta(hours=72))
    tokens = DeviceTokens()
    recorder, pbx = await tokens.issue("rec-w1"), await tokens.issue("pbx-w2")
    app = make_upload_app(
        UploadService(audio, clock, KEEP), tokens, max_bytes=LIMIT, max_future=timedelta(minutes=5), clock=clock
    )
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url) as session:
            yield Rig(session, server, clock, recorder, pbx, tmp_path / "audio")
    finally:
        await server.stop()


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --------------------------------------------------------------------------- what is stored


async def test_segment_is_stored_and_indexed_like_an_mqtt_one(rig: Rig) -> None:
    start = NOW - timedelta(seconds=30)
    status, body, _ = await rig.post(rig.recorder, WAV_2S, started_at=epoch_ms(start))
    assert (status, body["status"], body["seconds"]) == (201, "stored", 2.0)
    segment = await AudioSegment.get(id=body["id"]).select_related("point")
    assert (segment.point.code, segment.source, segment.codec) == ("W1", "http", "pcm_s16le")
    assert (segment.started_at, segment.ended_at) == (start, start + timedelta(seconds=2))
    assert Path(segment.path).read_bytes() == WAV_2S


async def test_same_segment_again_is_a_duplicate(rig: Rig) -> None:
    fields = {"started_at": epoch_ms(NOW - timedelta(seconds=30)), "point": "MSK-1/W1"}
    first = await rig.post(rig.recorder, WAV_2S, **fields)
    again = await rig.post(rig.recorder, WAV_2S, **fields)
    assert (again[0], again[1]["status"], again[1]["id"]) == (200, "duplicate", first[1]["id"])
    assert await AudioSegment.all().count() == 1


async def test_call_becomes_a_conversation_for_the_speech_worker(rig: Rig) -> None:
    status, body, _ = await rig.post(
        rig.pbx, CALL_3S, filename="call.ogg", kind="call", started_at="2026-11-24T11:50:00+03:00",
        caller="+79990001122", staff="ivanova",
    )
    assert (status, body["status"], body["kind"]) == (201, "stored", "call")
    call = await Conversation.get(id=body["id"]).select_related("office", "point", "staff")
    start = datetime(2026, 11, 24, 11, 50, tzinfo=MSK)
    assert (call.office.code, call.point.code, call.staff.code, call.device_id) == ("MSK-1", "W2", "ivanova", "pbx-w2")  # type: ignore[attr-defined, union-attr]
    assert (call.caller, call.started_at, call.ended_at) == ("+79990001122", start, start + timedelta(seconds=3))
    assert (call.speech_status, call.speech_next_at, call.keep_until) == (SpeechStatus.PENDING, NOW, NOW + KEEP)
    assert call.audio_path is not None and Path(call.audio_path).read_bytes() == CALL_3S
    assert Path(call.audio_path).relative_to(rig.audio_dir).parts[:2] == ("MSK-1_W2", "calls")


async def test_call_without_staff_is_kept_with_nobody_responsible(rig: Rig) -> None:
    status, body, _ = await rig.post(rig.pbx, CALL_3S, kind="call", started_at=epoch_ms(NOW - timedelta(minutes=5)))
    assert status == 201
    assert (await Conversation.get(id=body["id"])).staff_id is None  # type: ignore[attr-defined]


async def test_same_call_again_is_a_duplicate(rig: Rig) -> None:
    fields = {"kind": "call", "started_at": epoch_ms(NOW - timedelta(minutes=5)), "caller": "+7999"}
    first = await rig.post(rig.pbx, CALL_3S, **fields)
    again = await rig.post(rig.pbx, CALL_3S, **fields)
    assert (again[0], again[1]["status"], again[1]["id"]) == (200, "duplicate", first[1]["id"])
    assert await Conversation.all().count() == 1


async def test_chunked_upload_within_the_limit_is_stored(rig: Rig) -> None:
    status, body = await rig.post_chunked(rig.recorder, WAV_2S, started_at=epoch_ms(NOW - timedelta(seconds=30)))
    assert (status, body["status"]) == (201, "stored")


# --------------------------------------------------------------------------- what is refused

Sender = Callable[[Rig], Awaitable[tuple[int, dict[str, Any]]]]
START = epoch_ms(NOW - timedelta(seconds=30))


def form(token: Callable[[Rig], str | None], data: bytes | None, **fields: str) -> Sender:
    async def send(rig: Rig) -> tuple[int, dict[str, Any]]:
        status, body, _ = await rig.post(token(rig), data, **fields)
        return status, body

    return send


def chunked(data: bytes, **fields: str) -> Sender:
    return lambda rig: rig.post_chunked(rig.recorder, data, **fields)


async def json_body(rig: Rig) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {rig.recorder}"}
    async with rig.session.post(UPLOAD_PATH, json={"started_at": START}, headers=headers) as response:
        return response.status, await response.json()


def recorder(rig: Rig) -> str:
    return rig.recorder


REFUSALS: dict[str, tuple[Sender, int, str]] = {
    "no token": (form(lambda rig: None, WAV_2S, started_at=START), 401, "unauthorized"),
    "wrong token": (form(lambda rig: "not-" + rig.recorder, WAV_2S, started_at=START), 401, "unauthorized"),
    "another device's point": (form(recorder, WAV_2S, started_at=START, point="W2"), 403, "wrong_point"),
    "unknown point": (form(recorder, WAV_2S, started_at=START, point="MSK-1/W9"), 422, "unknown_point"),
    "start in the future": (form(recorder, WAV_2S, started_at=epoch_ms(NOW + timedelta(minutes=10))), 422, "future_ts"),
    "start before 2000": (form(recorder, WAV_2S, started_at="1999-12-31T23:00:00+00:00"), 422, "bad_ts"),
    "no start": (form(recorder, WAV_2S), 400, "bad_form"),
    "no file": (form(recorder, None, started_at=START), 400, "bad_form"),
    "not a form": (json_body, 415, "not_multipart"),
    "truncated audio": (form(recorder, TRUNCATED_OGG, started_at=START), 422, "corrupt"),
    "random bytes": (form(recorder, bytes(range(256)) * 40, started_at=START), 422, "corrupt"),
    "an image": (form(recorder, PNG, started_at=START), 415, "unsupported_codec"),
    "unknown staff on a call": (
        form(lambda rig: rig.pbx, CALL_3S, kind="call", started_at=START, staff="smirnova"), 422, "unknown_staff"
    ),
    "over the limit, with Content-Length": (form(recorder, BIG_WAV, started_at=START), 413, "too_large"),
    "over the limit, chunked": (chunked(BIG_WAV, started_at=START), 413, "too_large"),
}


async def test_each_bad_upload_is_refused_with_its_status_and_reason(rig: Rig) -> None:
    answers = {}
    for case, (send, _, _) in REFUSALS.items():
        status, body = await send(rig)
        answers[case] = (status, body["error"]) if body.get("detail") else (status, "no detail")
    assert answers == {case: (status, reason) for case, (_, status, reason) in REFUSALS.items()}


async def test_refused_token_asks_for_bearer_auth(rig: Rig) -> None:
    _, _, headers = await rig.post("nope", WAV_2S, started_at=START)
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_huge_upload_is_refused_before_its_body_is_sent(rig: Rig) -> None:
    head = await rig.raw_headers_only(rig.recorder, 500 * 1024 * 1024)
    assert head.startswith(b"HTTP/1.1 413")


async def test_wrong_token_is_refused_before_the_body_is_sent(rig: Rig) -> None:
    head = await rig.raw_headers_only("nope", 10_000)
    assert head.startswith(b"HTTP/1.1 401")


async def test_after_every_refusal_a_good_upload_still_works(rig: Rig) -> None:
    for send, status, _ in REFUSALS.values():
        assert (await send(rig))[0] == status
    assert await AudioSegment.all().count() == 0 and await Conversation.all().count() == 0
    assert stored_files(rig.audio_dir) == []
    status, body, _ = await rig.post(rig.recorder, WAV_2S, started_at=START)
    assert (status, body["status"]) == (201, "stored")


async def test_a_taken_port_says_which_setting_to_change(rig: Rig) -> None:
    other = HttpServer(web.Application(), "127.0.0.1", rig.server.port)
    with pytest.raises(SettingsError, match="HTTP_PORT"):
        await other.start()


# --------------------------------------------------------------------------- tokens


async def test_a_new_token_replaces_the_old_one_and_only_its_hash_is_kept(rig: Rig) -> None:
    tokens = DeviceTokens()
    new = await tokens.issue("rec-w1")
    assert await tokens.verify(rig.recorder) is None
    assert (await tokens.verify(new)).id == "rec-w1"  # type: ignore[union-attr]
    assert (await Device.get(id="rec-w1")).token_hash == token_digest(new)


def test_cli_prints_a_token_that_is_stored_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no loyalty.env from the working copy
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{tmp_path}/cli.sqlite3")
    assert main(["org", "import", str(ORG)]) == 0
    capsys.readouterr()
    assert main(["device", "token", "btn-17"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[1].strip()
    assert f"Authorization: Bearer {token}" in out and "/api/v1/audio" in out
    with sqlite3.connect(tmp_path / "cli.sqlite3") as conn:
        (stored,) = conn.execute("SELECT token_hash FROM device WHERE id = 'btn-17'").fetchone()
    assert stored == token_digest(token)


def test_cli_token_for_an_unknown_device_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{tmp_path}/cli.sqlite3")
    assert main(["device", "token", "nope"]) == 2
    assert "org import" in capsys.readouterr().err
