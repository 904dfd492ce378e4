"""Audio that arrives over HTTP: device tokens, desk segments and whole phone calls.

Recorders and telephony systems that cannot speak MQTT upload the same audio through the
HTTP API (``devices.upload``). Which device is talking is decided by its bearer token, and
what it may upload follows from the device's point, never from what the request claims:

* **Tokens** are random and shown once; only their SHA-256 is stored (``Device.token_hash``),
  so a leaked database does not let anyone upload. A token is found by its hash, which makes
  the lookup's timing independent of how much of a guessed token is right.
* **Segments** take exactly the MQTT path (``AudioService.save``): one index, one store, one
  retention rule, whichever transport brought them.
* **Calls** become a ``Conversation`` (the quality service scores them, the speech worker
  transcribes them), stored in the same segment store under the device's point
  (``{site}_{point}/calls/{day}/``), so retention and the disk cap see them.

Bad input is an :class:`UploadRejected` with a short machine ``reason``; the transport turns
it into an HTTP status. Nothing here knows HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias, get_args

from bot.audio import AudioService
from bot.clock import Clock
from bot.models import (
    AudioSegment,
    Conversation,
    ConversationKind,
    Device,
    Point,
    SpeechStatus,
    Staff,
)
from devices.contract import AudioEvent
from speech.audio import AudioError, AudioInfo, probe

log = logging.getLogger(__name__)

UploadReason: TypeAlias = Literal[
    "wrong_point",        # the device tried to upload for a point that is not its own
    "unknown_point",      # the point named does not exist
    "unknown_staff",      # a call names a staff code that is not in the device's office
    "bad_field",          # a field's value cannot be stored (too long)
    "corrupt",            # speech.audio.AudioError reasons, passed through
    "unsupported_codec",
    "empty",
    "too_long",
]
UPLOAD_REASONS: Final[frozenset[str]] = frozenset(get_args(UploadReason))

TOKEN_BYTES: Final = 32
"""``secrets.token_urlsafe(32)``: 256 random bits, 43 characters."""
MAX_TOKEN: Final = 256
"""Longer ``Authorization`` values are not ours; they are not even hashed."""
MAX_CALLER: Final = 64  # Conversation.caller column width


class UploadRejected(Exception):
    """An upload that cannot be stored; ``reason`` is for machines, ``detail`` says what to fix."""

    def __init__(self, reason: UploadReason, detail: str) -> None:
        if reason not in UPLOAD_REASONS:
            raise ValueError(f"unknown UploadRejected reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason: UploadReason = reason
        self.detail = detail


class UnknownDevice(LookupError):
    """A token was asked for a device id that is not in the org."""


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What was stored (or was already there): the row's id and the audio's length."""

    kind: Literal["segment", "call"]
    id: int
    seconds: float
    duplicate: bool

    @property
    def status(self) -> Literal["stored", "duplicate"]:
        return "duplicate" if self.duplicate else "stored"


def token_digest(token: str) -> str:
    """The stored form of a token: SHA-256 hex (64 characters, ``Device.token_hash``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class DeviceTokens:
    """Issues and checks per-device upload tokens; the token itself is never stored."""

    def __init__(self, make_token: Callable[[], str] = lambda: secrets.token_urlsafe(TOKEN_BYTES)) -> None:
        self._make_token = make_token

    async def issue(self, device_id: str) -> str:
        """A new token for ``device_id``; the previous one stops working at once."""
        token = self._make_token()
        updated = await Device.filter(id=device_id).update(token_hash=token_digest(token))
        if not updated:
            raise UnknownDevice(device_id)
        return token

    async def verify(self, token: str) -> Device | None:
        """The device this token belongs to, or ``None``."""
        if not token or len(token) > MAX_TOKEN:
            return None
        digest = token_digest(token)
        device = await Device.get_or_none(token_hash=digest)
        if device is None or device.token_hash is None or not hmac.compare_digest(device.token_hash, digest):
            return None
        return device


@dataclass(frozen=True, slots=True)
class _Place:
    point_id: int
    point: str
    office_id: int
    site: str


class UploadService:
    """Stores uploaded audio for the device that sent it.

    ``keep`` is how long a call's audio is kept (``audio_keep_days``): calls are what the
    quality service scores, so they live as long as audio a negative refers to, not as
    long as the desk's rolling recording.
    """

    def __init__(self, audio: AudioService, clock: Clock, keep: timedelta) -> None:
        self._audio = audio
        self._clock = clock
        self._keep = keep

    async def save_segment(
        self, device: Device, point_code: str | None, site: str | None, started_at: datetime, data: bytes
    ) -> UploadResult:
        """One piece of the desk recording, indexed exactly like one that came over MQTT."""
        place = await self._place(device, point_code, site)
        await self._probe(data)  # the reason (corrupt vs unsupported) that AudioService folds into one
        outcome = await self._audio.save(AudioEvent(place.site, place.point, started_at, data), source="http")
        if not outcome.stored and outcome.reason != "duplicate":
            if outcome.reason == "unknown_point":  # the org snapshot does not have it yet
                raise UploadRejected("unknown_point", outcome.detail or f"point {place.site}/{place.point} is not loaded yet")
            raise UploadRejected("corrupt", outcome.detail or "the audio could not be stored")
        digest = await asyncio.get_running_loop().run_in_executor(None, _sha256, data)
        segment = await AudioSegment.get(point_id=place.point_id, started_at=started_at, digest=digest)
        seconds = (segment.ended_at - segment.started_at).total_seconds()
        return UploadResult("segment", segment.id, seconds, duplicate=not outcome.stored)

    async def save_call(
        self,
        device: Device,
        started_at: datetime,
        data: bytes,
        caller: str | None,
        staff_code: str | None,
        *,
        point_code: str | None = None,
        site: str | None = None,
    ) -> UploadResult:
        """A whole phone call: stored, and queued for the speech worker (``PENDING`` now)."""
        place = await self._place(device, point_code, site)
        if caller is not None and len(caller) > MAX_CALLER:
            raise UploadRejected("bad_field", f"caller is longer than {MAX_CALLER} characters")
        staff_id: int | None = None
        if staff_code:
            staff = await Staff.get_or_none(code=staff_code, office_id=place.office_id)
            if staff is None:
                raise UploadRejected("unknown_staff", f"no staff {staff_code[:64]!r} in office {place.site}")
            staff_id = staff.id
        info = await self._probe(data)
        # Beside the point's segments in a folder of their own ({site}_{point}/calls/{day}/): a
        # segment with the same bytes and start would otherwise share the file, and its
        # 72-hour retention would delete a call that is kept for months.
        loop = asyncio.get_running_loop()
        stored = await loop.run_in_executor(
            None, self._audio.store.write, place.site, f"{place.point}/calls", started_at, info.codec, data
        )
        now = self._clock.now()
        conversation, created = await Conversation.get_or_create(
            point_id=place.point_id,
            started_at=started_at,
            digest=stored.digest,
            defaults={
                "kind": ConversationKind.CALL,
                "office_id": place.office_id,
                "staff_id": staff_id,
                "device_id": device.id,
                "caller": caller,
                "ended_at": started_at + timedelta(seconds=info.duration_s),
                "audio_path": str(stored.path),
                "codec": info.codec,
                "size_bytes": stored.size_bytes,
                "received_at": now,
                "keep_until": now + self._keep,
                "speech_status": SpeechStatus.PENDING,
                "speech_next_at": now,
            },
        )
        seconds = (conversation.ended_at - conversation.started_at).total_seconds()
        return UploadResult("call", conversation.id, seconds, duplicate=not created)

    async def _place(self, device: Device, point_code: str | None, site: str | None) -> _Place:
        """The device's own point; a request that names another one is refused.

        A recorder sits at one desk: trusting the request's point would let one leaked token
        fill every desk's recording.
        """
        point = await Point.get(id=device.point_id).select_related("office")  # type: ignore[attr-defined]
        place = _Place(point.id, point.code, point.office.id, point.office.code)
        wanted_site = site or place.site
        wanted_point = point_code or place.point
        if (wanted_site, wanted_point) == (place.site, place.point):
            return place
        if not await Point.exists(code=wanted_point, office__code=wanted_site):
            raise UploadRejected("unknown_point", f"point {wanted_site[:32]}/{wanted_point[:32]} is not in the org")
        raise UploadRejected(
            "wrong_point", f"device {device.id} records {place.site}/{place.point}, not {wanted_site}/{wanted_point}"
        )

    @staticmethod
    async def _probe(data: bytes) -> AudioInfo:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, probe, data)
        except AudioError as error:
            raise UploadRejected(error.reason, error.detail) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "DeviceTokens",
    "UnknownDevice",
    "UploadReason",
    "UploadRejected",
    "UploadResult",
    "UploadService",
    "token_digest",
]
