"""Real speech: a desk recording on MQTT, a negative press, a voice message and its transcript."""

from __future__ import annotations

import asyncio
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
    office = next(o for o in harness.org["offices"] if o["code"] == "MSK-1")
    office["speech_rules"] = {
        "forbidden": ["телефон*", "хорош*"],
        "required": {"discount": ["скидк*"], "thanks": ["спасибо"], "greeting": ["здравствуйте"]},
    }
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
    # the office's rules: every word heard is highlighted where it stands, forbidden bold, required underlined
    marks = {(e["offset"], e["type"]) for e in transcript.get("entities", [])}
    rules = RuleSet.from_config(office["speech_rules"])
    body = transcript["text"].split("\n\n")[0]  # the transcript; the rules' summary line follows it
    heard = rules.check(body)
    for hit in heard.forbidden_hits:
        offset = len(transcript["text"][: hit.start].encode("utf-16-le")) // 2 - 1  # the ❗ mark comes first
        assert (offset, "bold") in marks, (hit, marks)
    for hits in heard.required_hits.values():
        for hit in hits:
            offset = len(transcript["text"][: hit.start].encode("utf-16-le")) // 2
            assert (offset, "underline") in marks, (hit, marks)
    summary = transcript["text"].split("\n\n")[1]
    assert "не прозвучало:" in summary and "greeting" in summary.split("не прозвучало:")[1]
    case = await NegativeCase.get(message_id=post["message_id"])
    assert case.speech_status == SpeechStatus.DONE and case.transcript
    assert case.rule_hits is not None and "greeting" in case.rule_hits["missing"]
    stored = {h["rule"] for h in case.rule_hits["forbidden"]} | {n for n, h in case.rule_hits["required"].items() if h}
    assert stored == {h.rule for h in heard.forbidden_hits} | {n for n, ok in heard.required_found.items() if ok}
    assert len(stored) >= 2

    # the employee answers by voice (Anna: the responsible one when W1's roster has her on at
    # this hour, an office colleague otherwise): the comment is transcribed and shown in the post
    spoken = desk_clip([0.3, "Сегодня скидка на телефон.", 0.5, "Спасибо, хорошо.", 0.3], "ru", fmt="ogg")
    await emu.user_voice(STAFF_CHAT, 5001, spoken, duration=3, reply_to_message_id=post["message_id"])
    edited = await emu.wait_for(
        lambda: (m := emu.message(STAFF_CHAT, post["message_id"])) and "🎙" in m["text"] and m, timeout=60,
        what="post edited with the comment's transcript",
    )
    comment_line = next(line for line in edited["text"].splitlines() if "🎙" in line)
    assert sum(WORDS.check(comment_line).required_found.values()) >= 2, comment_line
    case = await NegativeCase.get(message_id=post["message_id"])
    assert case.comment_speech_status == SpeechStatus.DONE and case.comment_transcript
    assert (harness.tmp_path / "audio" / "comments" / f"case-{case.id}.ogg").read_bytes() == spoken
    assert await AudioSegment.all().count() == 2
    assert await DeadLetter.filter(reason="bad_audio").count() == 1
    assert app.speech is not None


async def test_uploaded_audio_serves_negatives_and_calls_become_transcribed_conversations(harness: Harness) -> None:
    """A recorder without MQTT: HTTP segments feed a negative's snippet; a phone call is transcribed."""
    import aiohttp

    from bot.models import Conversation, ConversationKind
    from bot.uploads import DeviceTokens
    from tests.speech_samples import desk_clip

    emu = harness.emulator
    office = next(o for o in harness.org["offices"] if o["code"] == "MSK-1")
    office["speech_rules"] = {"forbidden": ["хорош*"], "required": {"discount": ["скидк*"]}}
    app = await harness.start(
        whisper_model="packaged:base", whisper_cache_dir=harness.tmp_path.parent / "whisper-cache",
        audio_dir=harness.tmp_path / "audio", snippet_before_seconds=6, snippet_after_seconds=0, snippet_wait_seconds=5,
    )
    recorder = harness.device("recorder")["id"]
    token = await DeviceTokens().issue(recorder)
    url = f"{app.http.url}/api/v1/audio"
    press_ms = int(time.time() * 1000)
    segment = desk_clip([1.0, "Спасибо, хорошо.", 1.0], "ru", fmt="wav")
    call = desk_clip([0.5, "Сегодня скидка на телефон.", 0.5, "Спасибо, хорошо.", 0.5], "ru", fmt="ogg")

    async def upload(form: dict[str, str], data: bytes, bearer: str = token) -> tuple[int, dict]:
        body = aiohttp.FormData()
        for key, value in form.items():
            body.add_field(key, value)
        body.add_field("file", data, filename="audio.bin")
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=body, headers={"Authorization": f"Bearer {bearer}"}) as response:
                return response.status, await response.json()

    seconds = probe(segment).duration_s
    status, answer = await upload({"started_at": str(press_ms - int(seconds * 1000))}, segment)
    assert (status, answer["status"]) == (201, "stored"), answer
    assert (await upload({"started_at": str(press_ms)}, segment, bearer="wrong"))[0] == 401
    status, answer = await upload({"kind": "call", "started_at": str(press_ms - 60_000), "caller": "+79990001122", "staff": "ivanova"}, call)
    assert (status, answer["kind"]) == (201, "call"), answer

    native = harness.device("native")
    rating = {"id": "up-1", "ts": datetime.fromtimestamp(press_ms / 1000, UTC).isoformat(), "device": native["id"], "value": "bad"}
    await harness.publish(f"{harness.root}/MSK-1/W1/rating", json.dumps(rating).encode())
    voice = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(STAFF_CHAT) if "voice" in m), None), timeout=30, what="voice message"
    )
    assert abs(voice["voice"]["duration"] - 6) <= 1
    assert await AudioSegment.filter(source="http").count() == 1

    async def call_done() -> Conversation | None:
        found = await Conversation.get(id=answer["id"]).select_related("staff")
        return found if found.speech_status == SpeechStatus.DONE else None

    deadline = time.monotonic() + 120
    conversation = None
    while conversation is None and time.monotonic() < deadline:
        conversation = await call_done()
        await asyncio.sleep(0.5)
    assert conversation is not None, "the call was not transcribed"
    assert conversation.kind == ConversationKind.CALL and conversation.caller == "+79990001122"
    assert conversation.staff is not None and conversation.staff.code == "ivanova"
    assert sum(WORDS.check(conversation.transcript or "").required_found.values()) >= 2, conversation.transcript
    heard = RuleSet.from_config(office["speech_rules"]).check(conversation.transcript_segments and "\n".join(
        s[2] for s in conversation.transcript_segments) or "")
    assert conversation.rule_hits is not None
    assert bool(conversation.rule_hits["forbidden"]) == bool(heard.forbidden_hits)
    assert conversation.rule_hits["missing"] == heard.required_missing
