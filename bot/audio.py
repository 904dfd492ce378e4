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
from speech.audio import AudioError, probe
from speech.store import SegmentStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AudioOutcome:
    stored: bool
    reason: str | None = None
    detail: str | None = None


class AudioService:
    """Probes each segment off the event loop, writes it to the store and indexes it."""

    def __init__(self, store: SegmentStore, clock: Clock, directory: Callable[[], Directory], retention: timedelta) -> None:
        self.store = store
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

    async def segments_between(self, point_id: int, start: datetime, end: datetime) -> list[AudioSegment]:
        return await AudioSegment.filter(point_id=point_id, started_at__lt=end, ended_at__gt=start).order_by("started_at")


def read_file(path: str) -> bytes:
    return Path(path).read_bytes()
