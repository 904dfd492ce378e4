"""The exit kiosk end to end: feedback through Mosquitto into the database, the review page's
QR code back to the kiosk's display topic, negatives into the office group, bad input into
the dead letters."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import cv2
import numpy as np

from bot.models import Channel, Complaint, DeadLetter, NpsAnswer, Rating, RatingReason
from tests.e2e.conftest import STAFF_CHAT, Harness

REVIEW_URL = "https://yandex.ru/maps/org/1234567890/reviews/"
DISPLAY_SECONDS = 120


def feedback(event_id: str, kind: str, value: Any = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"id": event_id, "ts": datetime.now(UTC).isoformat(), "kind": kind, **extra}
    if value is not None:
        body["value"] = value
    return json.dumps(body, ensure_ascii=False).encode()


def topics(harness: Harness) -> tuple[str, str]:
    kiosk = harness.device("kiosk")["id"]
    base = f"{harness.root}/MSK-1/kiosk/{kiosk}"
    return f"{base}/feedback", f"{base}/display"


async def eventually(check: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def v5_client() -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", 1883, identifier=f"kiosk-screen-{uuid.uuid4().hex[:8]}", protocol=aiomqtt.ProtocolVersion.V5
    )


async def next_message(client: aiomqtt.Client, timeout: float = 15.0) -> aiomqtt.Message:
    async def first() -> aiomqtt.Message:
        async for message in client.messages:
            return message
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(first(), timeout)


def decode_qr(png: bytes) -> str:
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(pixels)
    return text


async def test_kiosk_rating_nps_and_complaints_are_stored_with_reasons(harness: Harness) -> None:
    await harness.start()
    feedback_topic, _ = topics(harness)
    await harness.publish(
        feedback_topic, feedback("r1", "rating", "neutral", reasons=["wait", "price"], text="Долго и дорого")
    )
    await harness.publish(feedback_topic, feedback("n1", "nps", 9, text="Быстро"))
    await harness.publish(
        feedback_topic,
        feedback("c1", "complaint", text="Потеряли заказ", name="Иван", contact="+79990001122", consent=True),
    )
    await harness.publish(
        feedback_topic, feedback("c2", "complaint", text="Нагрубили", name="Пётр", contact="p@example.com", consent=False)
    )
    await eventually(_counts_reach, what="the rating, the NPS answer and both complaints")
    kiosk = harness.device("kiosk")["id"]
    rating = await Rating.get(device_id=kiosk).prefetch_related("point")
    assert (rating.channel, rating.point.code, rating.customer_text) == (Channel.KIOSK, "EXIT", "Долго и дорого")
    codes = await RatingReason.filter(rating_id=rating.id).values_list("reason__code", flat=True)
    assert sorted(codes) == ["price", "wait"]
    nps = await NpsAnswer.get(device_id=kiosk)
    assert (nps.score, nps.reason_text) == (9, "Быстро")
    complaints = {c.text: c for c in await Complaint.all()}
    assert (complaints["Потеряли заказ"].contact, complaints["Потеряли заказ"].customer_name) == ("+79990001122", "Иван")
    assert (complaints["Нагрубили"].contact, complaints["Нагрубили"].customer_name) == (None, None)
    assert all(c.due_at is not None for c in complaints.values())  # posted by the complaint service (its own tests)


async def _counts_reach() -> bool:
    return (
        await Rating.filter(channel=Channel.KIOSK).count() >= 1
        and await NpsAnswer.all().count() >= 1
        and await Complaint.all().count() >= 2
    )


async def test_good_kiosk_rating_puts_a_fresh_review_qr_on_the_kiosk_display(harness: Harness) -> None:
    await harness.start(kiosk_display_seconds=DISPLAY_SECONDS)
    feedback_topic, display_topic = topics(harness)
    async with v5_client() as screen:
        await screen.subscribe(display_topic, qos=1)
        await harness.publish(feedback_topic, feedback("g1", "rating", "good"))
        live = await next_message(screen)
    payload = json.loads(live.payload)
    assert (payload["kind"], payload["url"], payload["title"]) == ("review", REVIEW_URL, "Яндекс Карты")
    assert decode_qr(base64.b64decode(payload["qr_png"])) == REVIEW_URL
    assert payload["qr_svg"].startswith("<?xml") or payload["qr_svg"].startswith("<svg")
    expires = datetime.fromisoformat(payload["expires"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= DISPLAY_SECONDS
    assert live.qos == 1
    assert 0 < live.properties.MessageExpiryInterval <= DISPLAY_SECONDS  # type: ignore[union-attr]

    # a kiosk that (re)connects later gets the retained screen while it is fresh
    async with v5_client() as late:
        await late.subscribe(display_topic, qos=1)
        retained = await next_message(late, timeout=5)
        assert retained.retain is True
        assert json.loads(retained.payload)["url"] == REVIEW_URL
        assert 0 < retained.properties.MessageExpiryInterval <= DISPLAY_SECONDS  # type: ignore[union-attr]
        await late.publish(display_topic, b"", qos=1, retain=True)  # leave the broker clean


async def test_retained_review_screen_expires_for_a_kiosk_that_comes_back_too_late(harness: Harness) -> None:
    await harness.start(kiosk_display_seconds=1)
    feedback_topic, display_topic = topics(harness)
    async with v5_client() as screen:
        await screen.subscribe(display_topic, qos=1)
        await harness.publish(feedback_topic, feedback("g2", "rating", "good"))
        await next_message(screen)
    await asyncio.sleep(2.5)
    async with v5_client() as late:
        await late.subscribe(display_topic, qos=1)
        try:
            stale = await next_message(late, timeout=1.5)
        except TimeoutError:
            stale = None
    assert stale is None, stale.payload if stale else None


async def test_bad_kiosk_rating_reaches_the_office_group_like_a_button(harness: Harness) -> None:
    emu = harness.emulator
    await harness.start()
    feedback_topic, _ = topics(harness)
    await harness.publish(feedback_topic, feedback("b1", "rating", "bad", reasons=["rude"], text="Нагрубили"))
    post = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(STAFF_CHAT) if "Негативная оценка" in m.get("text", "")), None),
        timeout=15,
        what="the kiosk negative in the group",
    )
    assert "MSK-1 · Москва, Тверская 1" in post["text"] and "Выход" in post["text"]
    # the staff see where the rating came from, why, and the customer's words
    assert "Канал: киоск на выходе" in post["text"]
    assert "Причины: Невежливое обслуживание" in post["text"]
    assert "Клиент: <i>Нагрубили</i>" in post["text"] or "Клиент: Нагрубили" in post["text"]
    assert [b["text"] for row in post["reply_markup"]["inline_keyboard"] for b in row] == ["💬 Комментарий"]


async def test_a_flood_of_bad_kiosk_payloads_is_dead_lettered_and_every_good_one_stored(harness: Harness) -> None:
    await harness.start()
    feedback_topic, _ = topics(harness)
    bad = [feedback(f"x{i}", "nps", 11) for i in range(10)]  # NPS out of range
    bad += [feedback(f"y{i}", "complaint", text="Позвоните мне", name="Анна", consent=True) for i in range(10)]
    bad += [feedback("z1", "nps", "9"), b"not json"]
    good = [feedback(f"ok{i}", "nps", i % 11) for i in range(20)] + [
        feedback(f"u{i}", "rating", "bad", reasons=["rude", "parking"]) for i in range(5)
    ]
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"flood-{uuid.uuid4().hex[:8]}") as client:
        for i in range(max(len(bad), len(good))):
            for batch in (bad, good):
                if i < len(batch):
                    await client.publish(feedback_topic, batch[i], qos=1)

    async def settled() -> bool:
        return await NpsAnswer.all().count() == 20 and await DeadLetter.all().count() >= len(bad) + 5

    await eventually(settled, what="every good answer stored and every bad one dead-lettered")
    await asyncio.sleep(0.5)  # nothing more arrives
    reasons: dict[str, int] = {}
    for reason in await DeadLetter.all().values_list("reason", flat=True):
        reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons == {"bad_value": 10, "complaint_no_contact": 10, "bad_field": 1, "not_json": 1, "unknown_reason": 5}
    assert await NpsAnswer.all().count() == 20
    assert await Rating.filter(channel=Channel.KIOSK, value="bad").count() == 5
    assert await RatingReason.filter(reason__code="rude").count() == 5
    assert await Complaint.all().count() == 0
    detail = await DeadLetter.filter(reason="complaint_no_contact").first()
    assert detail is not None and detail.topic == feedback_topic


async def test_kiosk_voice_comment_is_transcribed_into_the_negatives_card(harness: Harness) -> None:
    """The customer speaks at the kiosk: the voice rides in the rating, the card first says a
    transcript is coming, then shows the customer's words (real espeak-ng speech, real Whisper)."""
    import shutil

    import pytest

    from bot.models import SpeechStatus
    from speech.rules import RuleSet
    from tests.integration.test_transcriber import HAVE_BASE

    if shutil.which("espeak-ng") is None or not HAVE_BASE:
        pytest.skip("needs espeak-ng and the packaged Whisper base model")
    from tests.speech_samples import desk_clip

    emu = harness.emulator
    await harness.start(
        whisper_model="packaged:base", whisper_cache_dir=harness.tmp_path.parent / "whisper-cache",
        audio_dir=harness.tmp_path / "audio",
    )
    feedback_topic, _ = topics(harness)
    voice = desk_clip([0.3, "Спасибо, хорошо.", 0.3], "ru", fmt="ogg")
    spoken = base64.b64encode(voice).decode()
    await harness.publish(feedback_topic, feedback("vc1", "rating", "bad", reasons=["wait"], voice=spoken))
    post = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(STAFF_CHAT) if "Негативная оценка" in m.get("text", "")), None),
        timeout=15, what="the kiosk negative in the group",
    )
    assert "Клиент (голосом):" in post["text"]  # pending, or already heard if the model was quick
    words = RuleSet.from_config({"required": {"спасибо": ["спасибо"], "хорошо": ["хорош*"]}})

    def heard() -> str | None:
        message = emu.message(STAFF_CHAT, post["message_id"])
        line = next((line for line in (message or {}).get("text", "").splitlines() if "Клиент (голосом)" in line), "")
        return line if "расшифровка готовится" not in line and any(words.check(line).required_found.values()) else None

    line = await emu.wait_for(heard, timeout=90, what="the card edited with the customer's words")
    assert line.startswith("🗣 Клиент (голосом): "), line
    rating = await Rating.get(channel=Channel.KIOSK, value="bad")
    assert rating.customer_speech_status == SpeechStatus.DONE
    assert rating.customer_voice_path and open(rating.customer_voice_path, "rb").read() == voice
