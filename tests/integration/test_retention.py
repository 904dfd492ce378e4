"""Audio retention on a real database (SQLite and PostgreSQL) and real files: what goes, what stays."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.models import AudioSegment, Conversation, ConversationKind, NegativeCase, Office, Point, Rating, RatingValue
from bot.retention import RetentionReport, RetentionService
from bot.settings import Settings, load_settings
from speech.store import SegmentStore

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RETENTION = timedelta(hours=72)
KEEP = timedelta(days=180)
MIB = 1_048_576
BIG = 300_000  # five of these overflow the 1 MiB cap by 451,424 bytes: two must go


@dataclass
class World:
    settings: Settings
    clock: FakeClock
    store: SegmentStore
    service: RetentionService
    point: Point

    async def segment(
        self, started_at: datetime, size: int = 1000, *, received_at: datetime | None = None, referenced: bool = False
    ) -> AudioSegment:
        """A segment as AudioService stores it; ``referenced`` moves keep_until as SpeechService does."""
        data = started_at.isoformat().encode().ljust(size, b"\0")
        stored = self.store.write("MSK-1", "W1", started_at, "opus", data)
        received = received_at or started_at + timedelta(minutes=1)
        return await AudioSegment.create(
            point=self.point, started_at=started_at, ended_at=started_at + timedelta(minutes=1), path=str(stored.path),
            codec="opus", size_bytes=stored.size_bytes, digest=stored.digest, received_at=received,
            keep_until=NOW + KEEP if referenced else received + RETENTION,
        )

    async def call(self, name: str, size: int, keep_until: datetime) -> Conversation:
        """A phone call as bot.uploads stores it: in the segment store, kept for AUDIO_KEEP_DAYS."""
        started = keep_until - KEEP
        stored = self.store.write("MSK-1", "W1", started, "opus", name.encode().ljust(size, b"\1"))
        return await Conversation.create(
            office_id=self.point.office_id, point=self.point, started_at=started,  # type: ignore[attr-defined]
            ended_at=started + timedelta(minutes=3), audio_path=str(stored.path), codec="opus", size_bytes=size,
            digest=stored.digest, received_at=started, keep_until=keep_until, transcript=f"transcript of {name}",
        )


@pytest.fixture
async def world(database: str, tmp_path: Path) -> World:
    settings = load_settings(
        audio_dir=tmp_path / "audio", audio_disk_cap_mb=1, audio_retention_hours=72, audio_keep_days=180,
        retention_interval_seconds=600,
    )
    office = await Office.create(code="MSK-1", name="Москва, Тверская 1")
    point = await Point.create(office=office, code="W1", name="Окно 1")
    clock = FakeClock(NOW)
    store = SegmentStore(settings.audio_dir)
    return World(settings, clock, store, RetentionService(settings, clock, store), point)


async def remaining() -> list[int]:
    return list(await AudioSegment.all().order_by("started_at").values_list("id", flat=True))


def hours_ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


async def test_expired_unreferenced_segments_go_with_their_files(world: World) -> None:
    old = await world.segment(hours_ago(80))
    fresh = await world.segment(hours_ago(10))
    report = await world.service.run_once()
    assert await remaining() == [fresh.id]
    assert (Path(old.path).exists(), Path(fresh.path).exists()) == (False, True)
    assert (report.expired, report.evicted, report.bytes_freed) == (1, 0, 1000)


async def test_segments_a_negative_refers_to_outlive_the_retention_window(world: World) -> None:
    kept = await world.segment(hours_ago(100), referenced=True)
    report = await world.service.run_once()
    assert await remaining() == [kept.id]
    assert Path(kept.path).read_bytes().startswith(hours_ago(100).isoformat().encode())
    assert report.expired == 0


async def test_over_the_cap_the_oldest_segments_are_evicted_first(world: World) -> None:
    segments = [await world.segment(hours_ago(50 - i), BIG) for i in range(5)]
    report = await world.service.run_once()
    assert await remaining() == [s.id for s in segments[2:]]
    assert [Path(s.path).exists() for s in segments] == [False, False, True, True, True]
    assert (report.evicted, report.evicted_referenced, report.usage_bytes, report.cap_bytes) == (2, 0, 3 * BIG, MIB)


async def test_unreferenced_segments_are_evicted_before_older_referenced_ones(world: World) -> None:
    referenced = [await world.segment(hours_ago(50 - i), BIG, referenced=True) for i in range(2)]
    unreferenced = [await world.segment(hours_ago(40 - i), BIG) for i in range(2)]
    report = await world.service.run_once()
    assert await remaining() == [referenced[0].id, referenced[1].id, unreferenced[1].id]
    assert (report.evicted, report.evicted_referenced) == (1, 0)


async def test_referenced_segments_go_only_when_the_rest_is_not_enough_and_with_a_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    referenced = [await world.segment(hours_ago(50 - i), BIG, referenced=True) for i in range(4)]
    newest = await world.segment(hours_ago(1), BIG)
    with caplog.at_level(logging.WARNING, logger="bot.retention"):
        report = await world.service.run_once()
    assert await remaining() == [s.id for s in referenced[1:]]
    assert (Path(newest.path).exists(), Path(referenced[0].path).exists()) == (False, False)
    assert (report.evicted, report.evicted_referenced, report.usage_bytes) == (2, 1, 3 * BIG)
    assert [r.levelno for r in caplog.records if "negatives refer to" in r.getMessage()] == [logging.WARNING]


async def test_conversation_audio_past_keep_until_goes_but_the_row_and_transcript_stay(world: World) -> None:
    old = await world.call("old.ogg", 2000, NOW - timedelta(minutes=1))
    current = await world.call("current.ogg", 3000, NOW + timedelta(days=1))
    report = await world.service.run_once()
    rows = dict(await Conversation.all().values_list("id", "audio_path"))
    assert rows == {old.id: None, current.id: current.audio_path}
    assert await Conversation.get(id=old.id).values_list("transcript", flat=True) == "transcript of old.ogg"
    assert (Path(str(old.audio_path)).exists(), Path(str(current.audio_path)).exists()) == (False, True)
    assert (report.conversations, report.bytes_freed) == (1, 2000)


async def test_a_negatives_snippet_and_voice_comment_go_after_the_keep_days(world: World) -> None:
    snippets = world.settings.audio_dir / "snippets"
    comments = world.settings.audio_dir / "comments"
    snippets.mkdir(parents=True)
    comments.mkdir(parents=True)
    cases = []
    for n, pressed in enumerate((NOW - KEEP - timedelta(hours=1), NOW - KEEP + timedelta(hours=1))):
        rating = await Rating.create(
            event_uid=f"r{n}", device_id="btn", office_id=world.point.office_id, point=world.point,  # type: ignore[attr-defined]
            value=RatingValue.BAD, ts=pressed, received_at=pressed,
        )
        snippet = snippets / f"case-{n}.ogg"
        snippet.write_bytes(b"s" * 700)
        case = await NegativeCase.create(rating=rating, office_id=rating.office_id, snippet_path=str(snippet), transcript="t")  # type: ignore[attr-defined]
        (comments / f"case-{case.id}.ogg").write_bytes(b"c" * 300)
        cases.append(case)
    # a third, as old as the first, whose conversation was scored: kept as long as the conversation
    scored_rating = await Rating.create(
        event_uid="r-scored", device_id="btn", office_id=world.point.office_id, point=world.point,  # type: ignore[attr-defined]
        value=RatingValue.BAD, ts=NOW - KEEP - timedelta(hours=2), received_at=NOW - KEEP,
    )
    scored_snippet = snippets / "case-scored.ogg"
    scored_snippet.write_bytes(b"k" * 100)
    scored = await NegativeCase.create(rating=scored_rating, office_id=scored_rating.office_id, snippet_path=str(scored_snippet))  # type: ignore[attr-defined]
    await Conversation.create(
        kind=ConversationKind.NEGATIVE, case=scored, office_id=world.point.office_id, point=world.point,  # type: ignore[attr-defined]
        started_at=scored_rating.ts, ended_at=scored_rating.ts, audio_path=str(scored_snippet), codec="opus",
        size_bytes=100, digest="d", received_at=NOW - KEEP, keep_until=NOW + timedelta(days=30),
    )
    report = await world.service.run_once()
    assert (await NegativeCase.get(id=scored.id)).snippet_path == str(scored_snippet) and scored_snippet.exists()
    old, recent = [await NegativeCase.get(id=c.id) for c in cases]
    assert (old.snippet_path, old.transcript) == (None, "t")
    assert recent.snippet_path == cases[1].snippet_path and Path(recent.snippet_path).exists()
    assert sorted(p.name for p in snippets.iterdir()) == ["case-1.ogg", "case-scored.ogg"]
    assert sorted(p.name for p in comments.iterdir()) == [f"case-{recent.id}.ogg"]
    assert (report.snippets, report.bytes_freed) == (1, 1000)


async def test_call_recordings_count_towards_the_cap_but_only_segments_are_evicted(world: World) -> None:
    call = await world.call("kept.ogg", 2 * BIG, NOW + timedelta(days=30))
    segments = [await world.segment(hours_ago(50 - i), BIG) for i in range(2)]
    report = await world.service.run_once()
    assert await remaining() == [segments[1].id]
    assert Path(str(call.audio_path)).exists()
    assert (report.evicted, report.conversations, report.usage_bytes) == (1, 0, 3 * BIG)


async def test_a_missing_file_does_not_break_the_run(world: World) -> None:
    lost = await world.segment(hours_ago(90), 700)
    other = await world.segment(hours_ago(80), 1000)
    Path(lost.path).unlink()
    report = await world.service.run_once()
    assert await remaining() == []
    assert not Path(other.path).exists()
    assert (report.expired, report.missing_files, report.bytes_freed) == (2, 1, 1000)


async def test_day_folders_left_empty_are_removed(world: World) -> None:
    expired = await world.segment(datetime(2026, 3, 6, 9, 0, tzinfo=UTC))
    kept = await world.segment(datetime(2026, 3, 8, 9, 0, tzinfo=UTC))
    await world.service.run_once()
    assert not Path(expired.path).parent.exists()
    assert sorted(p.name for p in Path(kept.path).parent.parent.iterdir()) == ["2026-03-08"]


async def test_todays_folder_stays_even_when_empty_as_recorders_write_into_it(world: World) -> None:
    today = await world.segment(NOW - timedelta(minutes=10), MIB + 1)
    report = await world.service.run_once()
    assert report.evicted == 1
    assert (Path(today.path).exists(), Path(today.path).parent.is_dir()) == (False, True)


async def test_the_report_adds_up_over_all_three_rules(world: World) -> None:
    await world.segment(hours_ago(80), 1000)
    await world.call("old.ogg", 2000, NOW - timedelta(seconds=1))
    for i in range(5):
        await world.segment(hours_ago(50 - i), BIG)
    report = await world.service.run_once()
    assert report == RetentionReport(
        expired=1, evicted=2, evicted_referenced=0, conversations=1, bytes_freed=1000 + 2000 + 2 * BIG,
        missing_files=0, usage_bytes=3 * BIG, cap_bytes=MIB,
    )


async def test_a_second_pass_finds_nothing_more_to_do(world: World) -> None:
    await world.segment(hours_ago(80))
    for i in range(5):
        await world.segment(hours_ago(50 - i), BIG)
    await world.service.run_once()
    again = await world.service.run_once()
    assert (again.expired, again.evicted, again.conversations, again.bytes_freed) == (0, 0, 0, 0)


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _stopped(task: Awaitable[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_the_loop_runs_a_pass_every_interval_until_stopped(world: World) -> None:
    soon = await world.segment(NOW - RETENTION + timedelta(minutes=4))  # received a minute later: expires at NOW + 5 min
    stop = asyncio.Event()
    task = asyncio.create_task(world.service.run(stop))
    await _until(lambda: world.clock.sleepers == 1)
    assert await remaining() == [soon.id]
    world.clock.advance(600)
    await _until(lambda: world.clock.sleepers == 1)
    assert await remaining() == []
    await _stopped(task, stop)
    assert task.done() and task.exception() is None


async def test_a_failed_pass_is_logged_and_the_loop_goes_on(world: World, caplog: pytest.LogCaptureFixture) -> None:
    passes: list[str] = []
    real = world.service.run_once

    async def flaky() -> RetentionReport:
        passes.append("pass")
        if len(passes) == 1:
            raise RuntimeError("disk on fire")
        return await real()

    world.service.run_once = flaky  # type: ignore[method-assign]
    await world.segment(hours_ago(80))
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="bot.retention"):
        task = asyncio.create_task(world.service.run(stop))
        await _until(lambda: world.clock.sleepers == 1)
        world.clock.advance(600)
        await _until(lambda: len(passes) == 2 and world.clock.sleepers == 1)
        await _stopped(task, stop)
    assert [r.getMessage() for r in caplog.records] == ["retention pass failed"]
    assert await remaining() == []


def test_usage_counts_every_file_under_the_audio_folder(tmp_path: Path) -> None:
    settings = load_settings(audio_dir=tmp_path / "audio", audio_disk_cap_mb=20)
    store = SegmentStore(settings.audio_dir)
    store.write("MSK-1", "W1", NOW, "opus", b"\0" * MIB)
    (settings.audio_dir / "snippets").mkdir()
    (settings.audio_dir / "snippets" / "case-1.ogg").write_bytes(b"\0" * (MIB // 2))
    usage = RetentionService(settings, FakeClock(NOW), store).usage()
    assert (usage.size_bytes, usage.files, usage.cap_bytes, usage.over_cap) == (MIB + MIB // 2, 2, 20 * MIB, False)
    assert usage.describe() == f"{settings.audio_dir}: 1.5 MiB in 2 files, 7.5 % of the 20 MiB cap"
