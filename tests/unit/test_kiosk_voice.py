"""A kiosk customer's voice comment in the rating payload: base64 in, checked bytes out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from devices.adapters import parse_kiosk
from devices.contract import MAX_KIOSK_PAYLOAD, MAX_PAYLOAD, MAX_VOICE, DeviceConfig, InboundMessage, PayloadError, RatingEvent
from devices.routing import TopicRouter

NOW = datetime(2025, 3, 10, 9, 0, 30, tzinfo=UTC)
KIOSK = DeviceConfig("kiosk-msk-1", "kiosk", "MSK-1", "EXIT")
TOPIC = "loyalty/v1/MSK-1/kiosk/kiosk-msk-1/feedback"
OGG = b"OggS\x00\x02" + bytes(range(256)) * 4  # the adapter does not judge the audio itself


def kiosk(**fields: object) -> bytes:
    body: dict[str, object] = {"id": "k-1", "ts": "2025-03-10T09:00:00Z", "kind": "rating", "value": "bad", **fields}
    return json.dumps(body).encode()


def parse(payload: bytes) -> list:
    return parse_kiosk(InboundMessage(TOPIC, payload, False, NOW), KIOSK)


def rejected(payload: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        parse(payload)
    return caught.value


def test_voice_is_decoded_into_the_rating_event() -> None:
    [event] = parse(kiosk(voice=base64.b64encode(OGG).decode(), text="Долго"))
    assert isinstance(event, RatingEvent)
    assert (event.voice, event.text, event.channel) == (OGG, "Долго", "kiosk")


def test_no_voice_or_an_empty_one_is_none() -> None:
    assert [e.voice for e in parse(kiosk())] == [None]
    assert [e.voice for e in parse(kiosk(voice=""))] == [None]


def test_voice_bytes_stay_out_of_the_repr() -> None:
    [event] = parse(kiosk(voice=base64.b64encode(OGG).decode()))
    assert "voice" not in repr(event) and "OggS" not in repr(event)


@pytest.mark.parametrize(
    ("voice", "reason", "detail"),
    [
        ("not base64 at all!", "bad_field", "'voice' is not valid base64"),
        ("T2dnUw=", "bad_field", "'voice' is not valid base64"),  # bad padding
        (12345, "bad_field", "'voice' must be a base64 string, got int"),
        (["T2dnUw=="], "bad_field", "'voice' must be a base64 string, got list"),
    ],
)
def test_bad_voice_is_a_bad_field(voice: object, reason: str, detail: str) -> None:
    error = rejected(kiosk(voice=voice))
    assert (error.reason, detail in error.detail) == (reason, True), error.detail


def test_voice_over_one_mebibyte_decoded_is_too_large_with_the_limit_named() -> None:
    error = rejected(kiosk(voice=base64.b64encode(bytes(MAX_VOICE + 3)).decode()))
    assert error.reason == "too_large"
    assert f"the limit is {MAX_VOICE}" in error.detail, error.detail


def test_voice_of_exactly_one_mebibyte_is_accepted() -> None:
    [event] = parse(kiosk(voice=base64.b64encode(bytes(MAX_VOICE)).decode()))
    assert len(event.voice) == MAX_VOICE


def test_voice_goes_with_ratings_only() -> None:
    error = rejected(kiosk(kind="nps", value=3, voice=base64.b64encode(OGG).decode()))
    assert (error.reason, "'voice' goes with kind rating only" in error.detail) == ("bad_field", True)


def test_the_router_lets_a_kiosk_voice_through_but_keeps_64_kib_elsewhere() -> None:
    router = TopicRouter("loyalty/v1", [KIOSK], {("MSK-1", "EXIT"), ("MSK-1", "W1")})
    big = bytes(MAX_VOICE)
    [event] = router.parse(InboundMessage(TOPIC, kiosk(voice=base64.b64encode(big).decode()), False, NOW))
    assert event.voice == big
    assert MAX_PAYLOAD < len(kiosk(voice=base64.b64encode(big).decode())) < MAX_KIOSK_PAYLOAD
    native = InboundMessage("loyalty/v1/MSK-1/W1/rating", b" " * (MAX_PAYLOAD + 1), False, NOW)
    with pytest.raises(PayloadError) as caught:
        router.parse(native)
    assert caught.value.reason == "too_large"
    oversized = InboundMessage(TOPIC, kiosk(pad="x" * MAX_KIOSK_PAYLOAD), False, NOW)
    with pytest.raises(PayloadError) as caught:
        router.parse(oversized)
    assert (caught.value.reason, str(MAX_KIOSK_PAYLOAD) in caught.value.detail) == ("too_large", True)
