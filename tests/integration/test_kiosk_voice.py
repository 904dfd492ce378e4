"""A kiosk customer's voice comment on a real database (SQLite and PostgreSQL): stored as a file
before its rating row, transcribed by the speech worker (the real packaged Whisper on espeak-ng
speech), shown on the negative's card, and removed with the other negatives' audio."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from bot.audio import AudioService
from bot.clock import FakeClock
from bot.directory import Directory
from bot.models import DeadLetter, NegativeCase, OutboxKind, OutboxMessage, Rating, SpeechStatus
from bot.org import import_org, load_org_file
from bot.outbox import load_case_views
from bot.ratings import RatingService, Received
from bot.retention import RetentionService
from bot.settings import Settings, load_settings
from bot.speech_service import SpeechService
from bot.texts import Texts, make_i18n
from devices.contract import InboundMessage, PayloadError
from devices.routing import TopicRouter
from speech.audio import encode_wav
from speech.store import SegmentStore
from speech.transcriber import Segment, Transcript, TranscriptionError

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
TUE_1200 = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)
TOPIC = "loyalty/v1/MSK-1/kiosk/kiosk-msk-1/feedback"
TONE = encode_wav((0.3 * np.sin(np.arange(16_000) * 2 * np.pi * 440 / 16_000)).astype(np.float32))  # 1 s of A4


class FixedTranscriber:
    """Says the same words every time, or fails every time (the model is tested below for real)."""

    def __init__(self, text: str | None) -> None:
        self.text, self.calls = text, 0

    async def transcribe(self, audio: object, language: str | None = "ru") -> Transcript:
        self.calls += 1
        if self.text is None:
            raise TranscriptionError("failed", "the model broke")
        return Transcript(language or "ru", 1.0, [Segment(0.0, 1.0, self.text)], self.text)


class Kiosk:
    def __init__(self, settings: Settings, directory: Directory, clock: FakeClock) -> None:
        self.settings, self.directory, self.clock = settings, directory, clock
        self.router = TopicRouter("loyalty/v1", directory.devices, directory.points.keys())
        self.audio = AudioService(SegmentStore(settings.audio_dir), clock, lambda: directory, timedelta(hours=72))
        self.texts = Texts(make_i18n())
        self.service = RatingService(settings, clock, self.texts, lambda: directory, audio=self.audio)

    async def send(self, event_id: str, value: str = "bad", voice: bytes | str | None = None, **extra: object):
        body: dict[str, object] = {"id": event_id, "ts": self.clock.now().isoformat(), "kind": "rating", "value": value, **extra}
        if voice is not None:
            body["voice"] = voice if isinstance(voice, str) else base64.b64encode(voice).decode()
        message = InboundMessage(TOPIC, json.dumps(body).encode(), False, self.clock.now())
        try:
            received = Received(message, self.router.parse(message))
        except PayloadError as exc:
            received = Received(message, error=exc)
        return await self.service.store_batch([received])

    def speech(self, transcriber: object) -> SpeechService:
        return SpeechService(self.settings, self.clock, self.texts, lambda: self.directory, self.audio, transcriber)  # type: ignore[arg-type]


@pytest.fixture
async def kiosk(database: str, tmp_path: Path) -> Kiosk:
    await import_org(load_org_file(ORG))
    settings = load_settings(audio_dir=tmp_path / "audio", audio_keep_days=180, whisper_model="packaged:base")
    return Kiosk(settings, await Directory.load(), FakeClock(TUE_1200))


def rating_of(event_id: str):
    return Rating.get(event_uid=f"kiosk:MSK-1:kiosk-msk-1:{event_id}")


async def test_a_voice_comment_is_stored_as_a_file_and_waits_for_its_transcript(kiosk: Kiosk) -> None:
    result = await kiosk.send("v1", voice=TONE, text="Долго")
    assert (result.ratings, result.negatives, result.dead_letters) == (1, 1, 0)
    rating = await rating_of("v1")
    assert rating.customer_speech_status == SpeechStatus.PENDING and rating.customer_transcript is None
    path = Path(rating.customer_voice_path or "")
    assert path.read_bytes() == TONE
    assert path.is_relative_to(kiosk.settings.audio_dir / "customer") and path.suffix == ".wav"
    [view] = await load_case_views([(await NegativeCase.get(rating_id=rating.id)).id], kiosk.directory)
    text, _ = kiosk.texts.case_post("ru", [view])
    assert "🗣 Клиент: <i>Долго</i>" in text
    assert "🗣 Клиент (голосом): (голосовое сообщение, расшифровка готовится)" in text


async def test_audio_that_does_not_decode_is_dead_lettered_and_the_rating_kept(kiosk: Kiosk) -> None:
    result = await kiosk.send("v2", voice=b"OggS this is not audio at all", reasons=["wait"])
    assert (result.ratings, result.dead_letters) == (1, 1)
    rating = await rating_of("v2")
    assert (rating.customer_voice_path, rating.customer_speech_status) == (None, None)
    letter = await DeadLetter.get(reason="bad_audio")
    assert letter.topic == TOPIC and "kiosk:MSK-1:kiosk-msk-1:v2" in letter.detail and "rating was kept" in letter.detail
    assert not (kiosk.settings.audio_dir / "customer").exists()


async def test_bad_base64_dead_letters_the_whole_message(kiosk: Kiosk) -> None:
    result = await kiosk.send("v3", voice="%%% not base64 %%%")
    assert (result.ratings, result.dead_letters) == (0, 1)
    assert (await DeadLetter.get(reason="bad_field")).detail.startswith("'voice' is not valid base64")


async def test_the_transcript_is_stored_and_the_negatives_card_refreshed(kiosk: Kiosk) -> None:
    await kiosk.send("v4", voice=TONE)
    await kiosk.send("v5", value="good", voice=TONE)
    transcriber = FixedTranscriber(" Ждали двадцать минут ")
    assert await kiosk.speech(transcriber).run_once() is True
    bad, good = await rating_of("v4"), await rating_of("v5")
    assert (bad.customer_speech_status, bad.customer_transcript) == (SpeechStatus.DONE, "Ждали двадцать минут")
    assert (good.customer_speech_status, good.customer_transcript) == (SpeechStatus.DONE, "Ждали двадцать минут")
    case = await NegativeCase.get(rating_id=bad.id)
    refreshes = await OutboxMessage.filter(kind=OutboxKind.CASE_REFRESH).values_list("case_id", "chat_id")
    assert refreshes == [(case.id, -1001000000001)]  # the positive has no card
    [view] = await load_case_views([case.id], kiosk.directory)
    assert "🗣 Клиент (голосом): <i>Ждали двадцать минут</i>" in kiosk.texts.case_post("ru", [view])[0]
    assert await kiosk.speech(transcriber).run_once() is False and transcriber.calls == 2  # nothing left to do


async def test_a_voice_that_keeps_failing_is_marked_failed_after_three_attempts(kiosk: Kiosk) -> None:
    await kiosk.send("v6", voice=TONE)
    speech = kiosk.speech(FixedTranscriber(None))
    for _ in range(2):
        await speech.run_once()
        assert (await rating_of("v6")).customer_speech_status == SpeechStatus.PENDING
    await speech.run_once()
    rating = await rating_of("v6")
    assert (rating.customer_speech_status, rating.customer_transcript) == (SpeechStatus.FAILED, None)
    case = await NegativeCase.get(rating_id=rating.id)
    assert await OutboxMessage.filter(kind=OutboxKind.CASE_REFRESH, case_id=case.id).count() == 1
    [view] = await load_case_views([case.id], kiosk.directory)
    assert "🗣 Клиент (голосом): (голосовое сообщение)" in kiosk.texts.case_post("ru", [view])[0]


async def test_the_voice_file_is_kept_for_the_keep_days_then_removed_and_the_transcript_stays(kiosk: Kiosk) -> None:
    await kiosk.send("old", voice=TONE)
    await kiosk.speech(FixedTranscriber("старое")).run_once()
    kiosk.clock.advance(timedelta(days=100))
    await kiosk.send("new", voice=encode_wav(np.zeros(8000, dtype=np.float32)))
    retention = RetentionService(kiosk.settings, kiosk.clock, kiosk.audio.store)
    assert (await retention.run_once()).customer_voices == 0  # neither is unreferenced audio: both stay
    old, new = await rating_of("old"), await rating_of("new")
    assert Path(old.customer_voice_path or "").exists() and Path(new.customer_voice_path or "").exists()
    kiosk.clock.advance(timedelta(days=81))  # the first is 181 days old, the second 81
    report = await retention.run_once()
    assert (report.customer_voices, report.missing_files) == (1, 0)
    old_after, new_after = await rating_of("old"), await rating_of("new")
    assert (old_after.customer_voice_path, old_after.customer_transcript) == (None, "старое")
    assert not Path(old.customer_voice_path or "").exists()
    assert new_after.customer_voice_path == new.customer_voice_path and Path(new.customer_voice_path or "").exists()


# --- the real model on espeak-ng speech ---------------------------------------------------


async def test_the_worker_transcribes_espeak_speech_with_the_packaged_model(kiosk: Kiosk, tmp_path: Path) -> None:
    from speech.rules import RuleSet
    from speech.transcriber import WhisperTranscriber
    from tests.integration.test_transcriber import HAVE_BASE
    from tests.speech_samples import desk_clip

    if not HAVE_BASE:
        pytest.skip("the packaged base model is not installed")
    words = RuleSet.from_config({"required": {"спасибо": ["спасибо"], "хорошо": ["хорош*"]}})
    voice = desk_clip([0.3, "Спасибо, хорошо.", 0.3], "ru", fmt="ogg")  # skips without espeak-ng
    await kiosk.send("real", voice=voice)
    async with WhisperTranscriber("packaged:base", tmp_path.parent / "whisper-cache") as transcriber:
        await kiosk.speech(transcriber).run_once()
    rating = await rating_of("real")
    assert rating.customer_speech_status == SpeechStatus.DONE, rating.customer_speech_status
    assert any(words.check(rating.customer_transcript or "").required_found.values()), rating.customer_transcript
