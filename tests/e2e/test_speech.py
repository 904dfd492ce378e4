"""Real speech: a desk recording on MQTT, a negative press, a voice message and its transcript."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime

import pytest

from bot.models import AudioSegment, DeadLetter, NegativeCase, SpeechStatus
from speech.audio import probe
from speech.rules import RuleSet
from tests.e2e.conftest import STAFF_CHAT, Harness

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

# words of the spoken sentences; synthetic Russian through base loses some, so two of four must come back
WORDS = RuleSet.from_config(
    {"required": {"скидка": ["скидк*"], "телефон": ["телефон*"], "спасибо": ["спасибо"], "хорошо": ["хорош*"]}}
)


async def test_negative_gets_the_conversation_as_voice_and_a_russian_transcript(harness: Harness) -> None:
    from tests.speech_samples import desk_clip

    emu = harness.emulator
    app = await harness.start(
        whisper_model="packaged:base", whisper_cache_dir=harness.tmp_path.parent / "whisper-cache",
        audio_dir=harness.tmp_path / "audio", snippet_before_seconds=24, snippet_after_seconds=0, snippet_wait_seconds=5,
    )
    press_ms = int(time.time() * 1000)
    first = desk_clip([2.0, "Сегодня скидка на телефон.", 2.0], "ru", fmt="ogg")
    second = desk_clip([1.0, "Спасибо, хорошо.", 1.0], "ru", fmt="ogg")
    first_s, second_s = probe(first).duration_s, probe(second).duration_s
    # two segments with a 2 s hole between them, ending at the press
    second_start = press_ms - int(second_s * 1000)
    first_start = second_start - 2000 - int(first_s * 1000)
    await harness.publish(f"{harness.root}/MSK-1/W1/audio/{second_start}", second)  # out of order
    await harness.publish(f"{harness.root}/MSK-1/W1/audio/{first_start}", first)
    await harness.publish(f"{harness.root}/MSK-1/W1/audio/{first_start}", first)  # a duplicate
    await harness.publish(f"{harness.root}/MSK-1/W1/audio/{first_start + 5}", b"OggS not really audio")
    await emu.wait_for(lambda: len(emu.requests_log) > 0)
    native = harness.device("native")
    rating = {"id": "sp-1", "ts": datetime.fromtimestamp(press_ms / 1000, UTC).isoformat(), "device": native["id"], "value": "bad"}
    await harness.publish(f"{harness.root}/MSK-1/W1/rating", json.dumps(rating).encode())

    post = await emu.wait_for_bot_message(STAFF_CHAT, contains="Негативная оценка")
    voice = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(STAFF_CHAT) if "voice" in m), None), timeout=30, what="voice message"
    )
    assert voice["reply_to_message"]["message_id"] == post["message_id"]
    assert abs(voice["voice"]["duration"] - 24) <= 1
    ogg = emu.file_bytes(voice["voice"]["file_id"])
    info = probe(ogg)
    assert (info.codec, info.container) == ("opus", "ogg") and abs(info.duration_s - 24) <= 1
    assert "#" in voice.get("caption", "") and "без записи" in voice["caption"]

    transcript = await emu.wait_for_bot_message(STAFF_CHAT, contains="Расшифровка", timeout=120)
    assert transcript["reply_to_message"]["message_id"] == post["message_id"]
    found = [name for name, ok in WORDS.check(transcript["text"]).required_found.items() if ok]
    assert len(found) >= 2, transcript["text"]
    assert "[00:" in transcript["text"]
    case = await NegativeCase.get(message_id=post["message_id"])
    assert case.speech_status == SpeechStatus.DONE and case.transcript
    assert await AudioSegment.all().count() == 2
    assert await DeadLetter.filter(reason="bad_audio").count() == 1
    assert app.speech is not None
