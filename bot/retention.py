"""Retention for desk audio: what nobody needs any more goes, and the segment store keeps to its cap.

Every pass applies three rules, in this order:

1. A segment whose ``keep_until`` has passed is deleted, row and file. ``AudioService.save``
   sets it to receipt + ``AUDIO_RETENTION_HOURS``; ``SpeechService`` moves it to
   cut + ``AUDIO_KEEP_DAYS`` for the segments a negative's snippet was cut from.
2. A conversation (phone call) whose ``keep_until`` has passed loses its audio file; the row
   and its transcript stay, because reports and the quality service still refer to them.
   A kiosk customer's voice comment (``Rating.customer_voice_path``, under ``customer/``)
   goes the same way ``AUDIO_KEEP_DAYS`` after the rating; its transcript stays.
3. If the store holds more than ``AUDIO_DISK_CAP_MB`` by the index (segments, plus the call
   recordings that ``bot.uploads`` writes into the same store), the oldest segments (by
   ``started_at``) are evicted: first the ones no negative refers to, then, only if that is not
   enough, the rest, with a warning because that breaks the promised keep. A negative's snippet
   is a file of its own outside the segment store, so the negative's message keeps its audio
   either way. Call recordings count towards the cap but are never evicted: they are kept
   for scoring until their own ``keep_until``.

A segment counts as *referenced* while its ``keep_until`` lies beyond now +
``AUDIO_RETENTION_HOURS``. ``save`` never sets it that far (receipt is never after now), so
only the extension for a negative does. One consequence: a referenced segment in the last
retention window before it expires counts as unreferenced, since it goes soon anyway. A
segment with no ``keep_until`` has no promised keep. Rule 1 never deletes it, and for the cap
it counts as unreferenced.

Rows are deleted before their files. A crash in between leaves a file the index does not know
(wasted disk that ``loyalty check`` shows), never an index row that points at nothing. Deletes
of segments that may have been extended meanwhile are conditional, so a snippet being cut
right now does not lose its audio to a pass that read the row a moment earlier.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Sum

from bot.clock import Clock, wait_first
from bot.models import AudioSegment, Conversation, NegativeCase, Rating
from bot.settings import Settings
from speech.store import SegmentStore

__all__ = ["RetentionReport", "RetentionService", "StoreUsage", "measure", "remove_files"]

log = logging.getLogger(__name__)

BATCH = 500  # rows per DELETE: well under SQLite's bound-parameter limit, and short transactions
MIB = 1_048_576

_Row = tuple[int, str, int]  # a segment: id, path, size_bytes


@dataclass(slots=True)
class RetentionReport:
    """What one pass did. ``usage_bytes`` is the store's size by the index after the pass."""

    expired: int = 0              # segments past keep_until, deleted
    evicted: int = 0              # segments deleted to get under the cap
    evicted_referenced: int = 0   # of those, segments a negative refers to
    conversations: int = 0        # conversations whose audio file was removed
    snippets: int = 0             # negatives whose snippet and voice comment files were removed
    customer_voices: int = 0      # kiosk ratings whose customer's voice comment file was removed
    bytes_freed: int = 0          # bytes of the files actually removed from disk
    missing_files: int = 0        # files that were already gone
    usage_bytes: int = 0
    cap_bytes: int = 0

    @property
    def removed_anything(self) -> bool:
        return bool(self.expired or self.evicted or self.conversations or self.snippets or self.customer_voices)

    def describe(self) -> str:
        parts = [f"{self.expired} expired segments", f"{self.evicted} evicted"]
        if self.evicted_referenced:
            parts[-1] += f" ({self.evicted_referenced} that negatives refer to)"
        parts.append(f"{self.conversations} call recordings")
        parts.append(f"{self.snippets} negatives' snippets")
        if self.customer_voices:
            parts.append(f"{self.customer_voices} customers' voice comments")
        text = ", ".join(parts) + f" removed; {self.bytes_freed / MIB:.1f} MiB freed"
        if self.missing_files:
            text += f", {self.missing_files} files were already missing"
        return text + f"; store now {self.usage_bytes / MIB:.1f} of {self.cap_bytes // MIB} MiB"


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """What the audio folder holds on disk (segments, snippets, calls) against the segment cap."""

    root: Path
    size_bytes: int
    files: int
    cap_bytes: int

    @property
    def share(self) -> float:
        return self.size_bytes / self.cap_bytes if self.cap_bytes else 0.0

    @property
    def over_cap(self) -> bool:
        return self.size_bytes > self.cap_bytes

    def describe(self) -> str:
        files = f"{self.files} file" + ("" if self.files == 1 else "s")
        return (
            f"{self.root}: {self.size_bytes / MIB:.1f} MiB in {files}, "
            f"{self.share * 100:.1f} % of the {self.cap_bytes // MIB} MiB cap"
        )


class RetentionService:
    """Runs the three retention rules on a timer. The database decides, the disk follows."""

    def __init__(self, settings: Settings, clock: Clock, store: SegmentStore) -> None:
        self._settings = settings
        self._clock = clock
        self._store = store
        self._retention = timedelta(hours=settings.audio_retention_hours)
        self._cap = settings.audio_disk_cap_mb * MIB
        self._interval = settings.retention_interval_seconds

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                report = await self.run_once()
            except Exception:
                log.exception("retention pass failed")
            else:
                if report.removed_anything:
                    log.info("retention: %s", report.describe())
            await wait_first(self._clock.sleep(self._interval), stop.wait())

    async def run_once(self) -> RetentionReport:
        now = self._clock.now()
        report = RetentionReport(cap_bytes=self._cap)
        await self._expire_segments(now, report)
        await self._expire_conversations(now, report)
        await self._expire_snippets(now, report)
        await self._expire_customer_voices(now, report)
        await self._enforce_cap(now, report)
        report.usage_bytes = await self._index_bytes()
        return report

    def usage(self) -> StoreUsage:
        """Walks the audio folder: blocking, so callers on the event loop run it in an executor."""
        return measure(self._settings.audio_dir, self._cap)

    async def _expire_segments(self, now: datetime, report: RetentionReport) -> None:
        last_id = 0
        while True:
            rows = _rows(
                await AudioSegment.filter(keep_until__lt=now, id__gt=last_id)
                .order_by("id").limit(BATCH).values_list("id", "path", "size_bytes")
            )
            if not rows:
                return
            last_id = rows[-1][0]
            report.expired += len(await self._delete_segments(rows, Q(keep_until__lt=now), report))
            if len(rows) < BATCH:
                return

    async def _expire_conversations(self, now: datetime, report: RetentionReport) -> None:
        last_id = 0
        while True:
            found = await Conversation.filter(keep_until__lt=now, audio_path__isnull=False, id__gt=last_id).order_by(
                "id"
            ).limit(BATCH).values_list("id", "audio_path")
            if not found:
                return
            rows = [(int(id_), str(path)) for id_, path in found]
            last_id = rows[-1][0]
            ids = [id_ for id_, _ in rows]
            # Conditional: a conversation scored meanwhile (keep_until moved on) keeps its audio.
            cleared = await Conversation.filter(id__in=ids, keep_until__lt=now, audio_path__isnull=False).update(
                audio_path=None
            )
            if cleared < len(ids):
                kept = set(await Conversation.filter(id__in=ids, audio_path__isnull=False).values_list("id", flat=True))
                rows = [row for row in rows if row[0] not in kept]
            report.conversations += len(rows)
            await self._remove_files([path for _, path in rows], report)
            if len(found) < BATCH:
                return

    async def _expire_snippets(self, now: datetime, report: RetentionReport) -> None:
        """A negative's snippet and voice comment are kept ``AUDIO_KEEP_DAYS`` after the press, then go.

        The row keeps its transcripts; the snippet path is cleared so nothing offers a file
        that is gone.
        """
        before = now - timedelta(days=self._settings.audio_keep_days)
        while True:
            found = await (
                NegativeCase.filter(snippet_path__isnull=False, rating__ts__lt=before)
                # a scored conversation moved its own keep_until on: its snippet stays until then
                .filter(Q(conversation__keep_until__isnull=True) | Q(conversation__keep_until__lt=now))
                .order_by("id").limit(BATCH).values_list("id", "snippet_path")
            )
            if not found:
                return
            ids = [int(id_) for id_, _ in found]
            await NegativeCase.filter(id__in=ids).update(snippet_path=None)
            comments = self._settings.audio_dir / "comments"
            paths = [str(path) for _, path in found] + [str(comments / f"case-{id_}.ogg") for id_ in ids]
            report.snippets += len(ids)
            freed, _ = await asyncio.get_running_loop().run_in_executor(None, remove_files, paths)
            report.bytes_freed += freed  # a negative without a voice comment has no comment file: not "missing"
            if len(found) < BATCH:
                return

    async def _expire_customer_voices(self, now: datetime, report: RetentionReport) -> None:
        """A kiosk customer's voice comment is kept ``AUDIO_KEEP_DAYS`` after the rating, like a
        negative's voice comment; the transcript stays. It lives outside the segment index, so
        neither rule 1 nor the cap ever takes it early."""
        before = now - timedelta(days=self._settings.audio_keep_days)
        while True:
            found = await Rating.filter(customer_voice_path__isnull=False, ts__lt=before).order_by("id").limit(BATCH).values_list(
                "id", "customer_voice_path"
            )
            if not found:
                return
            await Rating.filter(id__in=[int(id_) for id_, _ in found]).update(customer_voice_path=None)  # rows first
            report.customer_voices += len(found)
            await self._remove_files([str(path) for _, path in found], report)
            if len(found) < BATCH:
                return

    async def _enforce_cap(self, now: datetime, report: RetentionReport) -> None:
        usage = await self._index_bytes()
        if usage <= self._cap:
            return
        horizon = now + self._retention
        unreferenced = Q(keep_until__isnull=True) | Q(keep_until__lte=horizon)
        count, _ = await self._evict(usage - self._cap, unreferenced, unreferenced, report)
        report.evicted += count
        usage = await self._index_bytes()  # recounted: segments may have arrived meanwhile
        if usage <= self._cap:
            return
        count, freed = await self._evict(usage - self._cap, Q(keep_until__gt=horizon), None, report)
        report.evicted += count
        report.evicted_referenced += count
        if count:
            log.warning(
                "audio store over its %d MiB cap with no unreferenced segments left: evicted %d segments "
                "(%.1f MiB) that negatives refer to, before their keep ended; their snippets stay. "
                "Raise AUDIO_DISK_CAP_MB or lower AUDIO_KEEP_DAYS",
                self._cap // MIB, count, freed / MIB,
            )

    async def _evict(self, excess: int, which: Q, guard: Q | None, report: RetentionReport) -> tuple[int, int]:
        """Delete the oldest segments matching ``which`` until ``excess`` bytes (by the index) are gone."""
        count = evicted = 0
        after: tuple[datetime, int] | None = None
        while evicted < excess:
            query = AudioSegment.filter(which)
            if after is not None:  # keyset paging: deletes do not shift it, unlike OFFSET
                query = query.filter(Q(started_at__gt=after[0]) | Q(started_at=after[0], id__gt=after[1]))
            found = await query.order_by("started_at", "id").limit(BATCH).values_list(
                "id", "path", "size_bytes", "started_at"
            )
            if not found:
                break
            batch: list[_Row] = []
            need = excess - evicted
            for id_, path, size, started_at in found:
                if need <= 0:
                    break
                batch.append((int(id_), str(path), int(size)))
                need -= int(size)
                after = (started_at, int(id_))
            gone = await self._delete_segments(batch, guard, report)
            count += len(gone)
            evicted += sum(size for _, _, size in gone)
        return count, evicted

    async def _delete_segments(self, rows: list[_Row], guard: Q | None, report: RetentionReport) -> list[_Row]:
        """One DELETE for the batch, then its files. Returns the rows really deleted."""
        ids = [row[0] for row in rows]
        query = AudioSegment.filter(id__in=ids)
        if guard is not None:
            query = query.filter(guard)
        deleted = await query.delete()
        if deleted < len(ids):  # some no longer qualify, e.g. a snippet was just cut from them
            kept = set(await AudioSegment.filter(id__in=ids).values_list("id", flat=True))
            rows = [row for row in rows if row[0] not in kept]
        await self._remove_files([path for _, path, _ in rows], report)
        return rows

    async def _remove_files(self, paths: list[str], report: RetentionReport) -> None:
        if not paths:
            return
        # Day folders from yesterday on are left alone even when empty: a recorder may be
        # writing into one right now (mkdir, then the file), and removing it would fail that write.
        spare_from = (self._clock.now() - timedelta(days=1)).strftime("%Y-%m-%d")
        freed, missing = await asyncio.get_running_loop().run_in_executor(
            None, remove_files, paths, self._store.root, spare_from
        )
        report.bytes_freed += freed
        report.missing_files += missing

    async def _index_bytes(self) -> int:
        """The store's size by the index: a SUM per table instead of walking the disk every pass."""
        segments = await AudioSegment.all().annotate(total=Sum("size_bytes")).values_list("total", flat=True)
        calls = await Conversation.filter(audio_path__isnull=False).annotate(total=Sum("size_bytes")).values_list(
            "total", flat=True
        )
        return sum(int(found[0] or 0) for found in (segments, calls) if found)


def _rows(found: list[Any]) -> list[_Row]:
    return [(int(id_), str(path), int(size)) for id_, path, size in found]


def remove_files(paths: list[str], prune_below: Path | None = None, spare_from: str = "") -> tuple[int, int]:
    """Delete files (blocking: run it in an executor). Returns (bytes freed, files already missing).

    A missing file is fine: an earlier pass may have died between row and file, or someone
    cleaned up by hand. Other errors are logged and skipped, because the row is gone anyway.
    With ``prune_below``, folders left empty beneath it (the day, then the point) go too, so
    the store does not collect years of empty day folders; day folders named ``spare_from``
    (``YYYY-MM-DD``) or later stay, since new segments may still land in them.
    """
    freed = missing = 0
    root = os.path.abspath(prune_below) if prune_below is not None else None
    for name in paths:
        path = Path(name)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            missing += 1
            continue
        except OSError as error:
            log.warning("could not remove %s: %s", path, error)
            continue
        freed += size
        if root is not None and not (spare_from and path.parent.name >= spare_from):
            _prune_empty(os.path.abspath(path.parent), root)
    return freed, missing


def _prune_empty(folder: str, root: str) -> None:
    while folder != root and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)  # refuses a folder that is not empty, so nothing is checked first
        except OSError:
            return
        folder = os.path.dirname(folder)


def measure(root: Path, cap_bytes: int) -> StoreUsage:
    """Bytes and files under ``root`` on disk (blocking). This is the truth that the index only estimates."""
    size = files = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while we walked
                continue
            files += 1
    return StoreUsage(root, size, files, cap_bytes)
