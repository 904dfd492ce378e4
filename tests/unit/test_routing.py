"""The router: subscriptions, topic lookups, org checks, and a fuzzed "never crashes" property."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.contract import (
    AudioEvent,
    EARLIEST_TS,
    MAX_FUTURE,
    MAX_PAYLOAD,
    MAX_UID,
    PRESENCE_STATES,
    RATING_VALUES,
    DeviceConfig,
    Event,
    InboundMessage,
    PayloadError,
    PresenceEvent,
    RatingEvent,
    StatusEvent,
)
from devices.routing import TopicRouter, subscription_for
from tests.unit.test_adapters import (
    NOW,
    ORG_DEVICES,
    ORG_POINTS,
    ROOT,
    SHELLY_GEN1,
    SHELLY_GEN2,
    TASMOTA_BUTTON,
    Z2M_PRESS,
)

SLASHED = DeviceConfig("slashed", "zigbee2mqtt", "MSK-1", "W2", "zigbee2mqtt/floor 2/desk2", {"single": "good"})
PARENT = DeviceConfig("parent", "zigbee2mqtt", "MSK-1", "W1", "zigbee2mqtt/floor 2", {"single": "bad"})
ORPHAN = DeviceConfig("orphan", "tasmota", "MSK-1", "W9", "orphan", {"Button1.SINGLE": "good"})


@pytest.fixture(scope="module")
def router() -> TopicRouter:
    return TopicRouter(ROOT, [*ORG_DEVICES, SLASHED, PARENT, ORPHAN], ORG_POINTS)


def msg(topic: str, payload: bytes, *, retained: bool = False) -> InboundMessage:
    return InboundMessage(topic, payload, retained, NOW)


def reason(router: TopicRouter, topic: str, payload: bytes) -> str:
    with pytest.raises(PayloadError) as caught:
        router.parse(msg(topic, payload))
    return caught.value.reason


NATIVE_RATING = json.dumps(
    {"id": "r-1", "ts": "2025-03-10T11:59:58+03:00", "device": "btn-17", "value": "bad"}
).encode()


# --------------------------------------------------------------------------- subscriptions


def test_subscriptions_are_native_wildcards_plus_exact_device_topics() -> None:
    router = TopicRouter(ROOT, ORG_DEVICES, ORG_POINTS)
    assert router.subscriptions() == [
        "loyalty/v1/+/+/rating",
        "loyalty/v1/+/+/presence",
        "loyalty/v1/+/+/status",
        "loyalty/v1/+/+/audio/+",
        "zigbee2mqtt/desk2",
        "zigbee2mqtt/desk2/availability",
        "stat/desk3/RESULT",
        "desk3/stat/RESULT",
        "tele/desk3/LWT",
        "desk3/tele/LWT",
        "tele/desk3/SENSOR",
        "tele/desk3/STATE",
        "desk3/tele/SENSOR",
        "desk3/tele/STATE",
        "shellyplusi4-a8032ab1/events/rpc",
        "shellyplusi4-a8032ab1/online",
        "shellyplusi4-a8032ab1/status/devicepower:0",
        "shellies/shellyix3-98CDAC1F/input_event/+",
        "shellies/shellyix3-98CDAC1F/online",
        "shellies/shellyix3-98CDAC1F/sensor/battery",
    ]


def test_subscriptions_never_use_multi_level_wildcards(router: TopicRouter) -> None:
    assert not any("#" in f for f in router.subscriptions())
    assert "zigbee2mqtt/floor 2/desk2" in router.subscriptions()


def test_subscription_for_shared_group() -> None:
    assert subscription_for("loyalty/v1/+/+/rating", "ingest") == "$share/ingest/loyalty/v1/+/+/rating"
    assert subscription_for("loyalty/v1/+/+/rating", None) == "loyalty/v1/+/+/rating"
    with pytest.raises(ValueError):
        subscription_for("x", "a/b")


def test_root_trailing_slash_is_normalised() -> None:
    router = TopicRouter("loyalty/v1/", [], ORG_POINTS)
    assert router.subscriptions()[0] == "loyalty/v1/+/+/rating"


def test_duplicate_topics_and_ids_are_config_errors() -> None:
    twin = DeviceConfig("twin", "zigbee2mqtt", "MSK-1", "W2", "zigbee2mqtt/desk2")
    with pytest.raises(ValueError, match="both claim"):
        TopicRouter(ROOT, [*ORG_DEVICES, twin], ORG_POINTS)
    with pytest.raises(ValueError, match="twice"):
        TopicRouter(ROOT, [*ORG_DEVICES, ORG_DEVICES[0]], ORG_POINTS)


# --------------------------------------------------------------------------- routing


def test_native_rating_routes_by_site_and_point(router: TopicRouter) -> None:
    [event] = router.parse(msg("loyalty/v1/MSK-1/W1/rating", NATIVE_RATING))
    assert isinstance(event, RatingEvent)
    assert (event.site, event.point, event.device_id, event.value) == ("MSK-1", "W1", "btn-17", "bad")


def test_native_rating_from_unregistered_button_is_accepted(router: TopicRouter) -> None:
    payload = NATIVE_RATING.replace(b"btn-17", b"btn-new")
    [event] = router.parse(msg("loyalty/v1/MSK-1/W3/rating", payload))
    assert isinstance(event, RatingEvent) and (event.point, event.device_id) == ("W3", "btn-new")


def test_native_presence_routes(router: TopicRouter) -> None:
    payload = b'{"id":"p-1","ts":"2025-03-10T09:00:00+00:00","state":"start","ticket":"A017"}'
    [event] = router.parse(msg("loyalty/v1/MSK-1/W2/presence", payload))
    assert isinstance(event, PresenceEvent) and (event.point, event.state, event.ticket) == ("W2", "start", "A017")


def test_native_status_for_registered_and_unregistered_devices(router: TopicRouter) -> None:
    [known] = router.parse(msg("loyalty/v1/MSK-1/btn-17/status", b"offline", retained=True))
    [unknown] = router.parse(msg("loyalty/v1/MSK-1/kiosk-3/status", b'{"battery":55}'))
    assert known == StatusEvent("MSK-1", "btn-17", False, None, NOW)
    assert unknown == StatusEvent("MSK-1", "kiosk-3", None, 55, NOW)


@pytest.mark.parametrize(
    "topic",
    [
        "loyalty/v1/MSK-1/W7/rating",
        "loyalty/v1/SPB-1/W1/rating",
        "loyalty/v1/SPB-1/W1/presence",
        "loyalty/v1/SPB-1/btn/status",
    ],
)
def test_unknown_site_or_point_is_unknown_point(router: TopicRouter, topic: str) -> None:
    assert reason(router, topic, NATIVE_RATING) == "unknown_point"


def test_device_bound_to_missing_point_dead_letters_presses_but_reports_health(router: TopicRouter) -> None:
    assert reason(router, "stat/orphan/RESULT", TASMOTA_BUTTON) == "unknown_point"
    [status] = router.parse(msg("tele/orphan/LWT", b"Online", retained=True))
    assert isinstance(status, StatusEvent) and status.online is True


def test_z2m_friendly_names_with_slashes(router: TopicRouter) -> None:
    [child, _] = router.parse(msg("zigbee2mqtt/floor 2/desk2", Z2M_PRESS))  # a rating and the battery
    [parent, _] = router.parse(msg("zigbee2mqtt/floor 2", Z2M_PRESS))
    [availability] = router.parse(msg("zigbee2mqtt/floor 2/desk2/availability", b'{"state":"online"}'))
    assert isinstance(child, RatingEvent) and isinstance(parent, RatingEvent)
    assert isinstance(availability, StatusEvent)
    assert (child.device_id, parent.device_id, availability.device_id) == ("slashed", "parent", "slashed")


@pytest.mark.parametrize("topic", ["stat/desk3/RESULT", "desk3/stat/RESULT"])
def test_tasmota_both_fulltopic_orders(router: TopicRouter, topic: str) -> None:
    [event] = router.parse(msg(topic, TASMOTA_BUTTON))
    assert isinstance(event, RatingEvent) and (event.device_id, event.value) == ("desk3-tasmota", "good")


def test_shelly_gen1_input_channel_is_routed_by_prefix(router: TopicRouter) -> None:
    [event] = router.parse(msg("shellies/shellyix3-98CDAC1F/input_event/0", SHELLY_GEN1))
    assert isinstance(event, RatingEvent) and event.device_id == "desk5-i3"


def test_shelly_gen2(router: TopicRouter) -> None:
    [event] = router.parse(msg("shellyplusi4-a8032ab1/events/rpc", SHELLY_GEN2))
    assert isinstance(event, RatingEvent) and event.device_id == "desk4-shelly"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("loyalty/v1/MSK-1/W1/video/1741597199000", "bad_topic"),
        ("loyalty/v1/MSK-1/W1/rating/extra", "bad_topic"),
        ("loyalty/v1/MSK-1/W1/ratings", "bad_topic"),
        ("somewhere/else", "bad_topic"),
        ("loyalty/v2/MSK-1/W1/rating", "bad_topic"),
        ("zigbee2mqtt/stranger", "unknown_device"),
        ("zigbee2mqtt/desk2/action", "unknown_device"),
        ("stat/unknown/RESULT", "unknown_device"),
        ("shellies/unknown/input_event/0", "unknown_device"),
        ("shellyplus-unknown/events/rpc", "unknown_device"),
    ],
)
def test_unknown_topics(router: TopicRouter, topic: str, expected: str) -> None:
    assert reason(router, topic, b"{}") == expected


def test_native_status_device_segment_too_long(router: TopicRouter) -> None:
    assert reason(router, f"loyalty/v1/MSK-1/{'d' * 101}/status", b"online") == "bad_topic"


def test_oversized_payload_is_too_large_on_any_topic(router: TopicRouter) -> None:
    assert reason(router, "somewhere/else", b"x" * (MAX_PAYLOAD + 1)) == "too_large"
    assert reason(router, "zigbee2mqtt/desk2", b"x" * (MAX_PAYLOAD + 1)) == "too_large"


# --------------------------------------------------------------------------- property: never crash

TOPICS = [
    "loyalty/v1/MSK-1/W1/rating",
    "loyalty/v1/MSK-1/W2/presence",
    "loyalty/v1/MSK-1/btn-17/status",
    "loyalty/v1/MSK-1/new-device/status",
    "loyalty/v1/ZZZ/W1/rating",
    "zigbee2mqtt/desk2",
    "zigbee2mqtt/desk2/availability",
    "zigbee2mqtt/floor 2/desk2",
    "stat/desk3/RESULT",
    "desk3/stat/RESULT",
    "tele/desk3/LWT",
    "stat/orphan/RESULT",
    "shellyplusi4-a8032ab1/events/rpc",
    "shellyplusi4-a8032ab1/online",
    "shellies/shellyix3-98CDAC1F/input_event/0",
    "shellies/shellyix3-98CDAC1F/input_event/2",
    "shellies/shellyix3-98CDAC1F/sensor/battery",
    "shellies/shellyix3-98CDAC1F/online",
    "unknown/topic",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "good",
            "neutral",
            "bad",
            "start",
            "end",
            "online",
            "offline",
            "Online",
            "true",
            "S",
            "SS",
            "L",
            "1_single",
            "single",
            "NotifyEvent",
            "NotifyStatus",
            "input:0",
            "input:2",
            "single_push",
            "btn_down",
            "SINGLE",
            "DOUBLE",
            "2025-03-10T09:00:00+00:00",
            "2025-03-10T09:00:00",
            "2025-03-10T09:10:00Z",
            "9999-12-31T23:59:59-12:00",
        ]
    )
    | st.sampled_from([1741597199000, 1741597199.52, 1741597199, 0, -1, 2**63, 10**400, -(10**400), 1e308])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
KEYS = [
    "id",
    "ts",
    "device",
    "value",
    "state",
    "ticket",
    "staff",
    "battery",
    "action",
    "Button1",
    "POWER",
    "Switch1",
    "Action",
    "method",
    "params",
    "events",
    "component",
    "event",
    "event_cnt",
    "src",
]
near_valid = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=8),
    lambda children: st.dictionaries(
        st.sampled_from(KEYS), children | scalars | st.lists(children | scalars, max_size=3), max_size=6
    ),
    max_leaves=25,
)
payloads = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_valid.map(lambda v: json.dumps(v).encode())
)


def mutated(template: object) -> st.SearchStrategy[object]:
    """Mostly-valid payloads: each field kept (usually), replaced, or dropped — reaches real events."""
    if isinstance(template, dict):
        fields = {k: mutated(v) for k, v in template.items()}
        return st.fixed_dictionaries(fields) | st.fixed_dictionaries({}, optional=fields)
    if isinstance(template, list):
        return st.lists(st.one_of(*(mutated(v) for v in template)), max_size=3)
    return st.integers(0, 3).flatmap(lambda roll: scalars if roll == 0 else st.just(template))


VALID = [
    ("loyalty/v1/MSK-1/W1/rating", {"id": "r-1", "ts": 1741597199000, "device": "btn-17", "value": "good"}),
    ("loyalty/v1/MSK-1/W2/presence", {"id": "p-1", "ts": "2025-03-10T11:59:00+03:00", "state": "end", "ticket": "A1"}),
    ("loyalty/v1/MSK-1/btn-17/status", {"battery": 87}),
    ("zigbee2mqtt/desk2", {"action": "2_single", "battery": 100, "linkquality": 98}),
    ("zigbee2mqtt/desk2/availability", {"state": "online"}),
    ("stat/desk3/RESULT", {"Button3": {"Action": "SINGLE"}, "POWER": "ON"}),
    (
        "shellyplusi4-a8032ab1/events/rpc",
        {
            "method": "NotifyEvent",
            "params": {
                "ts": 1741597199.5,
                "events": [
                    {"component": "input:1", "id": 1, "event": "single_push", "ts": 1741597199.5},
                    {"component": "input:0", "id": 0, "event": "btn_up", "ts": 1741597199.5},
                ],
            },
        },
    ),
    ("shellies/shellyix3-98CDAC1F/input_event/2", {"event": "S", "event_cnt": 73}),
]
valid_ish = st.sampled_from(VALID).flatmap(
    lambda pair: mutated(pair[1]).map(lambda body: (pair[0], json.dumps(body).encode()))
)


def assert_valid(event: Event, msg: InboundMessage, max_future: timedelta) -> None:
    """What the rest of the service relies on, whatever the input was."""
    assert event.ts.tzinfo is UTC
    if isinstance(event, RatingEvent | PresenceEvent):
        assert 0 < len(event.event_uid) <= MAX_UID
        assert (event.site, event.point) in ORG_POINTS
        assert EARLIEST_TS <= event.ts <= msg.received_at + max_future
        assert not msg.retained
    if isinstance(event, RatingEvent):
        assert event.value in RATING_VALUES and event.device_id
    elif isinstance(event, PresenceEvent):
        assert event.state in PRESENCE_STATES
    else:
        assert isinstance(event, StatusEvent)
        assert event.battery is None or 0 <= event.battery <= 100


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=st.sampled_from(TOPICS), payload=payloads, retained=st.booleans())
def test_any_payload_on_any_topic_yields_valid_events_or_payload_error(
    router: TopicRouter, topic: str, payload: bytes, retained: bool
) -> None:
    message = InboundMessage(topic, payload, retained, NOW)
    try:
        events = router.parse(message, MAX_FUTURE)
    except PayloadError as exc:
        assert exc.reason and exc.detail
        return
    for event in events:
        assert_valid(event, message, MAX_FUTURE)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=valid_ish, retained=st.booleans())
def test_mutated_real_payloads_yield_valid_events_or_payload_error(
    router: TopicRouter, case: tuple[str, bytes], retained: bool
) -> None:
    topic, payload = case
    message = InboundMessage(topic, payload, retained, NOW)
    try:
        events = router.parse(message, MAX_FUTURE)
    except PayloadError as exc:
        assert exc.reason and exc.detail
        return
    for event in events:
        assert_valid(event, message, MAX_FUTURE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=st.text(max_size=60), payload=st.binary(max_size=64))
def test_any_topic_yields_events_or_payload_error(router: TopicRouter, topic: str, payload: bytes) -> None:
    message = InboundMessage(topic, payload, False, NOW)
    try:
        events = router.parse(message)
    except PayloadError:
        return
    for event in events:
        assert_valid(event, message, MAX_FUTURE)


def test_gen2_huge_float_ts_is_future_ts_not_a_crash(router: TopicRouter) -> None:
    payload = b'{"method":"NotifyEvent","params":{"events":[{"component":"input:0","event":"single_push","ts":1e308}]}}'
    assert reason(router, "shellyplusi4-a8032ab1/events/rpc", payload) == "future_ts"


def test_received_time_bound_uses_max_future(router: TopicRouter) -> None:
    ahead = json.dumps(
        {"id": "r", "ts": (NOW + timedelta(minutes=2)).isoformat(), "device": "b", "value": "good"}
    ).encode()
    assert router.parse(msg("loyalty/v1/MSK-1/W1/rating", ahead), timedelta(minutes=5))
    with pytest.raises(PayloadError, match="future_ts"):
        router.parse(msg("loyalty/v1/MSK-1/W1/rating", ahead), timedelta(minutes=1))


def test_status_time_is_the_receive_time_in_utc(router: TopicRouter) -> None:
    local = InboundMessage(
        "tele/desk3/LWT", b"Online", True, datetime(2025, 3, 10, 12, tzinfo=timezone(timedelta(hours=3)))
    )
    [event] = router.parse(local)
    assert event.ts == NOW and event.ts.tzinfo is UTC


def test_audio_segments_are_routed_with_their_start_time(router: TopicRouter) -> None:
    start_ms = int(NOW.timestamp() * 1000) - 60_000
    [event] = router.parse(msg(f"loyalty/v1/MSK-1/W1/audio/{start_ms}", b"OggS" + bytes(100_000)))
    assert isinstance(event, AudioEvent)
    assert (event.site, event.point, int(event.started_at.timestamp() * 1000)) == ("MSK-1", "W1", start_ms)
    assert reason(router, f"loyalty/v1/NOPE/W1/audio/{start_ms}", b"x") == "unknown_point"
    assert reason(router, "loyalty/v1/MSK-1/W1/audio/yesterday", b"x") == "bad_ts"
    assert reason(router, f"loyalty/v1/MSK-1/W1/audio/{start_ms + 3_600_000}", b"x") == "future_ts"
    assert reason(router, f"loyalty/v1/MSK-1/W1/audio/{start_ms}", bytes(2_000_000)) == "too_large"
