"""Desk audio: checking and indexing segments as they arrive, and cutting a negative's snippet."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bot.clock import Clock
from bot.directory import Directory
from bot.models import AudioSegment
from devices.contract import AudioEvent
from speech.audio import AudioError, AudioInfo, decode_pcm, probe
from speech.store import SegmentStore

log = logging.getLogger(__name__)

VOICE_MAX_SECONDS = 600.0  # a kiosk voice comment: 1 MiB of Opus is minutes, nobody talks that long at a kiosk


@dataclass(slots=True)
class AudioOutcome:
    stored: bool
    reason: str | None = None
    detail: str | None = None
    path: str | None = None  # where the file is (a customer's voice comment)


class AudioService:
    """Probes each segment off the event loop, writes it to the store and indexes it."""

    def __init__(self, store: SegmentStore, clock: Clock, directory: Callable[[], Directory], retention: timedelta) -> None:
        self.store = store
        # kiosk customers' voice comments: beside the segments, never indexed as one (retention
        # keeps them by the rating's time, like a negative's snippet; the segment cap ignores them)
        self.voices = SegmentStore(store.root / "customer")
        self._clock = clock
        self._directory = directory
        self._retention = retention

    async def save(self, event: AudioEvent, source: str = "mqtt") -> AudioOutcome:
        point = self._directory().points.get((event.site, event.point))
        if point is None:
            return AudioOutcome(False, "unknown_point", f"point {event.site}/{event.point} is not in the org")
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(None, probe, event.payload)
        except AudioError as error:
            return AudioOutcome(False, "bad_audio", f"{error.reason}: {error.detail}")
        stored = await loop.run_in_executor(
            None, self.store.write, event.site, event.point, event.started_at, info.codec, event.payload
        )
        ended_at = event.started_at + timedelta(seconds=info.duration_s)
        now = self._clock.now()
        _, created = await AudioSegment.get_or_create(
            point_id=point.id,
            started_at=event.started_at,
            digest=stored.digest,
            defaults=dict(
                ended_at=ended_at, path=str(stored.path), codec=info.codec, size_bytes=stored.size_bytes,
                source=source, received_at=now, keep_until=now + self._retention,
            ),
        )
        return AudioOutcome(created, None if created else "duplicate")

    async def save_voice(self, site: str, point: str, ts: datetime, data: bytes) -> AudioOutcome:
        """A customer's voice comment from the kiosk: probed and decoded (``bad_audio`` if not), then kept as a file."""
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(None, _check_voice, data)
        except AudioError as error:
            return AudioOutcome(False, "bad_audio", f"voice comment: {error.reason}: {error.detail}")
        stored = await loop.run_in_executor(None, self.voices.write, site, point, ts, info.codec, data)
        return AudioOutcome(True, path=str(stored.path))

    async def segments_between(self, point_id: int, start: datetime, end: datetime) -> list[AudioSegment]:
        return await AudioSegment.filter(point_id=point_id, started_at__lt=end, ended_at__gt=start).order_by("started_at")


def _check_voice(data: bytes) -> AudioInfo:
    """Headers and every packet: a voice comment is small, and the transcript must not fail later."""
    info = probe(data, max_duration_s=VOICE_MAX_SECONDS)
    decode_pcm(data, max_duration_s=VOICE_MAX_SECONDS)
    return info


def read_file(path: str) -> bytes:
    return Path(path).read_bytes()
