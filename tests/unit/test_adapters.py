"""Adapters fed the real payloads of DEVICES.md, byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices.adapters import (
    parse_device_ts,
    parse_native_presence,
    parse_native_rating,
    parse_shelly,
    parse_status,
    parse_tasmota,
    parse_zigbee2mqtt,
    receive_bucket,
)
from devices.contract import (
    MAX_FUTURE,
    MAX_PAYLOAD,
    DeviceConfig,
    Event,
    InboundMessage,
    PayloadError,
    PresenceEvent,
    RatingEvent,
    StatusEvent,
)

NOW = datetime(2025, 3, 10, 9, 0, 0, tzinfo=UTC)  # on a 500 ms bucket boundary
ROOT = "loyalty/v1"

# The org example of DESIGN.md (plus a gen1 Shelly), as the org import would build it.
BTN17 = DeviceConfig("btn-17", "native", "MSK-1", "W1")
DESK2 = DeviceConfig(
    "desk2-remote",
    "zigbee2mqtt",
    "MSK-1",
    "W2",
    "zigbee2mqtt/desk2",
    {"1_single": "good", "2_single": "neutral", "3_single": "bad"},
)
DESK3 = DeviceConfig(
    "desk3-tasmota",
    "tasmota",
    "MSK-1",
    "W3",
    "desk3",
    {"Button1.SINGLE": "good", "Button2.SINGLE": "neutral", "Button3.SINGLE": "bad"},
)
DESK4 = DeviceConfig(
    "desk4-shelly",
    "shelly",
    "MSK-1",
    "W4",
    "shellyplusi4-a8032ab1",
    {"input:0.single_push": "good", "input:1.single_push": "neutral", "input:2.single_push": "bad"},
)
DESK5 = DeviceConfig(
    "desk5-i3",
    "shelly",
    "MSK-1",
    "W5",
    "shellies/shellyix3-98CDAC1F",
    {"input:0.S": "good", "input:1.single_push": "neutral", "input:2.S": "bad"},
)
ORG_DEVICES = (BTN17, DESK2, DESK3, DESK4, DESK5)
ORG_POINTS = {("MSK-1", f"W{n}") for n in range(1, 6)}
W1 = DeviceConfig("W1", "native", "MSK-1", "W1")  # the point endpoint the router passes natively

# DEVICES.md, byte for byte
Z2M_PRESS = b'{"action":"single","battery":100,"linkquality":98,"voltage":3000}'
Z2M_RESET = b'{"action":""}'
Z2M_ONLINE = b'{"state":"online"}'
Z2M_OFFLINE = b'{"state":"offline"}'
TASMOTA_BUTTON = b'{"Button1":{"Action":"SINGLE"}}'
TASMOTA_SWITCH = b'{"Switch1":{"Action":"ON"}}'
SHELLY_GEN1 = b'{"event":"S","event_cnt":73}'
# DEVICES.md elides src and ts ("…"); these are the documented shape with values filled in.
SHELLY_GEN2 = (
    b'{"src":"shellyplusi4-a8032ab1","method":"NotifyEvent","params":{"ts":1741597199.52,'
    b'"events":[{"component":"input:0","id":0,"event":"single_push","ts":1741597199.52}]}}'
)


def msg(topic: str, payload: bytes, *, at: datetime = NOW, retained: bool = False) -> InboundMessage:
    return InboundMessage(topic, payload, retained, at)


def reason_of(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(PayloadError) as caught:
        call(*args)
    return caught.value.reason


def ratings(events: list[Event]) -> list[RatingEvent]:
    """The ratings; besides them only a sighting (a zigbee2mqtt state's status) may come along."""
    assert all(isinstance(e, RatingEvent) or (isinstance(e, StatusEvent) and e.online is None) for e in events)
    return [e for e in events if isinstance(e, RatingEvent)]


def uid(events: list[Event]) -> str:
    [event] = ratings(events)
    return event.event_uid


# --------------------------------------------------------------------------- contract


def test_payload_error_carries_reason_and_detail() -> None:
    err = PayloadError("bad_ts", "no offset")
    assert (err.reason, err.detail, str(err)) == ("bad_ts", "no offset", "bad_ts: no offset")


def test_payload_error_rejects_unknown_reason() -> None:
    with pytest.raises(ValueError):
        PayloadError("oops", "x")  # type: ignore[arg-type]


def test_inbound_message_requires_aware_time_and_normalises_to_utc() -> None:
    with pytest.raises(ValueError):
        InboundMessage("t", b"", False, datetime(2025, 1, 1))
    local = datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=3)))
    converted = InboundMessage("t", bytearray(b"x"), False, local)  # type: ignore[arg-type]  # aiomqtt may hand one
    assert (converted.payload, converted.received_at) == (b"x", datetime(2025, 1, 1, 9, tzinfo=UTC))


def test_device_config_rejects_bad_kind_and_mapping() -> None:
    with pytest.raises(ValueError):
        DeviceConfig("x", "hue", "S", "P")
    with pytest.raises(ValueError):
        DeviceConfig("x", "zigbee2mqtt", "S", "P", actions={"single": "great"})
    with pytest.raises(ValueError):
        DeviceConfig("x", "zigbee2mqtt", "S", "P", topic="zigbee2mqtt/#")


def test_device_config_actions_are_read_only() -> None:
    with pytest.raises(TypeError):
        DESK2.actions["1_single"] = "bad"  # type: ignore[index]


# --------------------------------------------------------------------------- native rating


def rating(**fields: object) -> bytes:
    import json

    body = {"id": "r-1", "ts": "2025-03-10T11:59:58+03:00", "device": "btn-17", "value": "good"} | fields
    return json.dumps(body).encode()


def test_native_rating_happy_path() -> None:
    [event] = parse_native_rating(msg(f"{ROOT}/MSK-1/W1/rating", rating()), W1, MAX_FUTURE)
    assert event == RatingEvent(
        "native:MSK-1:btn-17:r-1", "MSK-1", "W1", "btn-17", "good", datetime(2025, 3, 10, 8, 59, 58, tzinfo=UTC)
    )


@pytest.mark.parametrize("value", ["good", "neutral", "bad"])
def test_native_rating_values(value: str) -> None:
    [event] = parse_native_rating(msg(f"{ROOT}/MSK-1/W1/rating", rating(value=value)), W1, MAX_FUTURE)
    assert isinstance(event, RatingEvent) and event.value == value


def test_native_rating_epoch_ms_and_z_suffix() -> None:
    epoch_ms = int(NOW.timestamp() * 1000) - 1500
    [a] = parse_native_rating(msg("t/rating", rating(ts=epoch_ms)), W1, MAX_FUTURE)
    [b] = parse_native_rating(msg("t/rating", rating(ts="2025-03-10T08:59:58.500Z")), W1, MAX_FUTURE)
    assert a.ts == b.ts == NOW - timedelta(seconds=1.5)


def test_native_rating_retained_is_stale() -> None:
    assert parse_native_rating(msg("t/rating", rating(), retained=True), W1, MAX_FUTURE) == []


def test_native_rating_accepts_clock_ahead_within_max_future() -> None:
    ahead = (NOW + timedelta(minutes=4)).isoformat()
    assert parse_native_rating(msg("t/rating", rating(ts=ahead)), W1, MAX_FUTURE)
    assert reason_of(parse_native_rating, msg("t/rating", rating(ts=ahead)), W1, timedelta(minutes=1)) == "future_ts"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"good", "not_json"),
        (b'{"id":"r-1",', "not_json"),
        (b"\xff\xfe{}", "not_json"),
        (b'{"id":"r-1","ts":NaN}', "not_json"),
        (b'["good"]', "bad_field"),
        (rating(id=17), "bad_field"),
        (rating(id=""), "bad_field"),
        (rating(id="x" * 101), "bad_field"),
        (rating(id=None), "bad_field"),
        (rating(device=None), "bad_field"),
        (rating(device=["btn"]), "bad_field"),
        (rating(value=1), "bad_field"),
        (rating(value="excellent"), "bad_value"),
        (rating(ts=None), "bad_field"),
        (rating(ts=1741597199.5), "bad_field"),
        (rating(ts=True), "bad_field"),
        (rating(ts="2025-03-10T09:00:00"), "bad_ts"),  # naive
        (rating(ts="yesterday"), "bad_ts"),
        (rating(ts=1741597199), "bad_ts"),  # seconds, not ms
        (rating(ts="1999-12-31T23:59:59+00:00"), "bad_ts"),
        (rating(ts="0001-01-01T00:00:00+05:00"), "bad_ts"),
        (rating(ts="2025-03-10T09:06:00+00:00"), "future_ts"),
        (rating(ts=int(NOW.timestamp() * 1000) + 301_000), "future_ts"),
        (rating(ts=10**30), "future_ts"),
        (rating(id="i" * 100, device="d" * 100), "bad_field"),  # event id would exceed 200
        (rating(pad="x" * MAX_PAYLOAD), "too_large"),
    ],
)
def test_native_rating_errors(payload: bytes, reason: str) -> None:
    assert reason_of(parse_native_rating, msg(f"{ROOT}/MSK-1/W1/rating", payload), W1, MAX_FUTURE) == reason


def test_native_rating_missing_ts_is_bad_field() -> None:
    payload = b'{"id":"r-1","device":"btn-17","value":"good"}'
    assert reason_of(parse_native_rating, msg("t/rating", payload), W1, MAX_FUTURE) == "bad_field"


def test_parse_device_ts_converts_offsets_to_utc() -> None:
    assert parse_device_ts("2025-03-10T12:00:00+03:00", NOW) == NOW
    assert parse_device_ts("2025-03-10T12:00:00+03:00", NOW).tzinfo is UTC


# --------------------------------------------------------------------------- native presence


def test_native_presence_happy_path_with_ticket_and_staff() -> None:
    payload = b'{"id":"p-9","ts":1741597190000,"state":"start","ticket":"A017","staff":"ivanova"}'
    [event] = parse_native_presence(msg(f"{ROOT}/MSK-1/W1/presence", payload), W1, MAX_FUTURE)
    assert event == PresenceEvent(
        "native:MSK-1:W1:p-9", "MSK-1", "W1", "start", NOW - timedelta(seconds=10), "A017", "ivanova"
    )


def test_native_presence_without_ticket() -> None:
    payload = b'{"id":"p-10","ts":"2025-03-10T09:00:00+00:00","state":"end"}'
    [event] = parse_native_presence(msg("t/presence", payload), W1, MAX_FUTURE)
    assert isinstance(event, PresenceEvent) and (event.state, event.ticket, event.staff) == ("end", None, None)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"id":"p","ts":"2025-03-10T09:00:00+00:00","state":"begin"}', "bad_value"),
        (b'{"id":"p","ts":"2025-03-10T09:00:00+00:00","state":1}', "bad_field"),
        (b'{"id":"p","ts":"2025-03-10T09:00:00+00:00","state":"start","ticket":"' + b"A" * 33 + b'"}', "bad_field"),
        (b'{"id":"p","ts":"2025-03-10T09:00:00+00:00","state":"start","ticket":17}', "bad_field"),
        (b'{"ts":"2025-03-10T09:00:00+00:00","state":"start"}', "bad_field"),
        (b'{"id":"p","ts":"2025-03-10 09:00:00","state":"start"}', "bad_ts"),
        (b"start", "not_json"),
    ],
)
def test_native_presence_errors(payload: bytes, reason: str) -> None:
    assert reason_of(parse_native_presence, msg("t/presence", payload), W1, MAX_FUTURE) == reason


def test_native_presence_retained_is_stale() -> None:
    payload = b'{"id":"p-10","ts":"2025-03-10T09:00:00+00:00","state":"end"}'
    assert parse_native_presence(msg("t/presence", payload, retained=True), W1, MAX_FUTURE) == []


# --------------------------------------------------------------------------- native status


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"offline", False), (b"Offline\n", False)])
def test_native_status_availability_even_when_retained(payload: bytes, online: bool) -> None:
    [event] = parse_status(msg(f"{ROOT}/MSK-1/btn-17/status", payload, retained=True), BTN17, MAX_FUTURE)
    assert event == StatusEvent("MSK-1", "btn-17", online, None, NOW)


def test_native_status_battery_json() -> None:
    [event] = parse_status(msg("t/status", b'{"battery": 87, "rssi": -61}'), BTN17, MAX_FUTURE)
    assert event == StatusEvent("MSK-1", "btn-17", None, 87, NOW)


def test_native_status_json_without_battery_is_a_heartbeat() -> None:
    [event] = parse_status(msg("t/status", b'{"rssi": -61}'), BTN17, MAX_FUTURE)
    assert isinstance(event, StatusEvent) and (event.online, event.battery) == (None, None)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"battery": 187}', "bad_value"),
        (b'{"battery": "87"}', "bad_field"),
        (b'{"battery": true}', "bad_field"),
        (b"maybe", "bad_value"),
        (b"\xff", "bad_value"),
        (b"{broken", "not_json"),
    ],
)
def test_native_status_errors(payload: bytes, reason: str) -> None:
    assert reason_of(parse_status, msg("t/status", payload), BTN17, MAX_FUTURE) == reason


# --------------------------------------------------------------------------- zigbee2mqtt

SINGLE_BUTTON = DeviceConfig("aqara-1", "zigbee2mqtt", "MSK-1", "W2", "zigbee2mqtt/office/aqara", {"single": "good"})


def test_z2m_press_from_devices_md() -> None:
    [event, status] = parse_zigbee2mqtt(msg("zigbee2mqtt/office/aqara", Z2M_PRESS), SINGLE_BUTTON, MAX_FUTURE)
    assert event == RatingEvent(
        f"zigbee2mqtt:aqara-1:single:{receive_bucket(NOW)}", "MSK-1", "W2", "aqara-1", "good", NOW
    )
    assert status == StatusEvent("MSK-1", "aqara-1", None, 100, NOW)  # the cached battery rides along


def test_z2m_tuya_three_buttons_map_to_three_values() -> None:
    values = [
        parse_zigbee2mqtt(msg("zigbee2mqtt/desk2", b'{"action":"%d_single"}' % n), DESK2, MAX_FUTURE)[0]
        for n in (1, 2, 3)
    ]
    assert [e.value for e in ratings(values)] == ["good", "neutral", "bad"]


@pytest.mark.parametrize(
    ("payload", "battery"),
    [
        (b'{"battery":100,"linkquality":98,"voltage":3000}', 100),  # battery/link update
        (Z2M_RESET, None),  # Home Assistant reset after a press
        (b'{"action":null}', None),
        (b'{"action":null,"battery":97}', 97),
    ],
)
def test_z2m_non_presses_are_only_sightings(payload: bytes, battery: int | None) -> None:
    events = parse_zigbee2mqtt(msg("zigbee2mqtt/desk2", payload), DESK2, MAX_FUTURE)
    assert events == [StatusEvent("MSK-1", "desk2-remote", None, battery, NOW)]


def test_z2m_retained_press_is_stale() -> None:
    assert parse_zigbee2mqtt(msg("zigbee2mqtt/desk2", b'{"action":"1_single"}', retained=True), DESK2, MAX_FUTURE) == []


def test_z2m_duplicate_within_bucket_shares_uid() -> None:
    first = parse_zigbee2mqtt(msg("zigbee2mqtt/desk2", b'{"action":"1_single"}', at=NOW), DESK2, MAX_FUTURE)
    again = parse_zigbee2mqtt(
        msg("zigbee2mqtt/desk2", b'{"action":"1_single"}', at=NOW + timedelta(seconds=0.2)), DESK2, MAX_FUTURE
    )
    assert uid(first) == uid(again)


def test_z2m_presses_700ms_apart_are_two_events() -> None:
    first = parse_zigbee2mqtt(msg("zigbee2mqtt/desk2", b'{"action":"1_single"}', at=NOW), DESK2, MAX_FUTURE)
    later = parse_zigbee2mqtt(
        msg("zigbee2mqtt/desk2", b'{"action":"1_single"}', at=NOW + timedelta(seconds=0.7)), DESK2, MAX_FUTURE
    )
    assert uid(first) != uid(later)


def test_z2m_different_actions_in_one_bucket_are_two_events() -> None:
    a = parse_zigbee2mqtt(msg("zigbee2mqtt/desk2", b'{"action":"1_single"}'), DESK2, MAX_FUTURE)
    b = parse_zigbee2mqtt(msg("zigbee2mqtt/desk2", b'{"action":"3_single"}'), DESK2, MAX_FUTURE)
    assert uid(a) != uid(b)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("zigbee2mqtt/desk2", Z2M_PRESS, "unknown_action"),  # "single" is not mapped on the Tuya remote
        ("zigbee2mqtt/desk2", b'{"action":1}', "bad_field"),
        ("zigbee2mqtt/desk2", b'"1_single"', "bad_field"),
        ("zigbee2mqtt/desk2", b"1_single", "not_json"),
        ("zigbee2mqtt/desk2/action", b"1_single", "bad_topic"),
        ("zigbee2mqtt/desk2/availability", b'{"state":"sleeping"}', "bad_value"),
        ("zigbee2mqtt/desk2/availability", b'{"state":1}', "bad_field"),
        ("zigbee2mqtt/desk2", b" " * (MAX_PAYLOAD + 1), "too_large"),
    ],
)
def test_z2m_errors(topic: str, payload: bytes, reason: str) -> None:
    assert reason_of(parse_zigbee2mqtt, msg(topic, payload), DESK2, MAX_FUTURE) == reason


@pytest.mark.parametrize(
    ("payload", "online"),
    [(Z2M_ONLINE, True), (Z2M_OFFLINE, False), (b"online", True), (b"offline", False)],
)
def test_z2m_availability_json_and_legacy(payload: bytes, online: bool) -> None:
    [event] = parse_zigbee2mqtt(msg("zigbee2mqtt/desk2/availability", payload, retained=True), DESK2, MAX_FUTURE)
    assert event == StatusEvent("MSK-1", "desk2-remote", online, None, NOW)


def test_z2m_topic_defaults_to_device_id() -> None:
    device = DeviceConfig("0x00158d0001", "zigbee2mqtt", "MSK-1", "W2", actions={"single": "bad"})
    [event, _status] = parse_zigbee2mqtt(msg("zigbee2mqtt/0x00158d0001", Z2M_PRESS), device, MAX_FUTURE)
    assert isinstance(event, RatingEvent) and event.value == "bad"


# --------------------------------------------------------------------------- Tasmota


@pytest.mark.parametrize("topic", ["stat/desk3/RESULT", "desk3/stat/RESULT"])
def test_tasmota_button_in_both_topic_orders(topic: str) -> None:
    [event] = parse_tasmota(msg(topic, TASMOTA_BUTTON), DESK3, MAX_FUTURE)
    assert event == RatingEvent(
        f"tasmota:desk3-tasmota:Button1.SINGLE:{receive_bucket(NOW)}", "MSK-1", "W3", "desk3-tasmota", "good", NOW
    )


def test_tasmota_switch_action() -> None:
    device = DeviceConfig("sw", "tasmota", "MSK-1", "W3", "sw", {"Switch1.ON": "bad"})
    [event] = parse_tasmota(msg("stat/sw/RESULT", TASMOTA_SWITCH), device, MAX_FUTURE)
    assert isinstance(event, RatingEvent) and event.value == "bad"


def test_tasmota_power_is_ignored_unless_mapped() -> None:
    assert parse_tasmota(msg("stat/desk3/RESULT", b'{"POWER":"ON"}'), DESK3, MAX_FUTURE) == []
    relay = DeviceConfig("relay", "tasmota", "MSK-1", "W3", "relay", {"POWER.ON": "good", "POWER.OFF": "good"})
    [event] = parse_tasmota(msg("stat/relay/RESULT", b'{"POWER":"OFF"}'), relay, MAX_FUTURE)
    assert isinstance(event, RatingEvent) and event.value == "good"


def test_tasmota_command_results_are_not_events() -> None:
    assert parse_tasmota(msg("stat/desk3/RESULT", b'{"Dimmer":50}'), DESK3, MAX_FUTURE) == []
    assert parse_tasmota(msg("stat/desk3/RESULT", b'{"Button1":"ON"}'), DESK3, MAX_FUTURE) == []


def test_tasmota_retained_result_is_stale() -> None:
    assert parse_tasmota(msg("stat/desk3/RESULT", TASMOTA_BUTTON, retained=True), DESK3, MAX_FUTURE) == []


def test_tasmota_duplicate_within_bucket_shares_uid() -> None:
    a = parse_tasmota(msg("stat/desk3/RESULT", TASMOTA_BUTTON, at=NOW), DESK3, MAX_FUTURE)
    b = parse_tasmota(msg("desk3/stat/RESULT", TASMOTA_BUTTON, at=NOW + timedelta(seconds=0.2)), DESK3, MAX_FUTURE)
    c = parse_tasmota(msg("stat/desk3/RESULT", TASMOTA_BUTTON, at=NOW + timedelta(seconds=0.7)), DESK3, MAX_FUTURE)
    assert uid(a) == uid(b) != uid(c)


@pytest.mark.parametrize(
    ("topic", "payload", "online"),
    [
        ("tele/desk3/LWT", b"Online", True),
        ("tele/desk3/LWT", b"Offline", False),
        ("desk3/tele/LWT", b"Online", True),
    ],
)
def test_tasmota_lwt(topic: str, payload: bytes, online: bool) -> None:
    [event] = parse_tasmota(msg(topic, payload, retained=True), DESK3, MAX_FUTURE)
    assert event == StatusEvent("MSK-1", "desk3-tasmota", online, None, NOW)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("stat/desk3/RESULT", b'{"Button1":{"Action":"DOUBLE"}}', "unknown_action"),
        ("stat/desk3/RESULT", b'{"Button1":{"Action":7}}', "bad_field"),
        ("stat/desk3/RESULT", b"SINGLE", "not_json"),
        ("stat/desk3/RESULT", b"[]", "bad_field"),
        ("stat/desk3/POWER", b"ON", "bad_topic"),
        ("tele/desk3/LWT", b"Sleeping", "bad_value"),
    ],
)
def test_tasmota_errors(topic: str, payload: bytes, reason: str) -> None:
    assert reason_of(parse_tasmota, msg(topic, payload), DESK3, MAX_FUTURE) == reason


# --------------------------------------------------------------------------- Shelly gen2

GEN2_TS = datetime.fromtimestamp(1741597199.52, UTC)


def test_shelly_gen2_notify_event() -> None:
    [event] = parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", SHELLY_GEN2), DESK4, MAX_FUTURE)
    assert event == RatingEvent(
        "shelly:desk4-shelly:input:0.single_push:1741597199520",
        "MSK-1",
        "W4",
        "desk4-shelly",
        "good",
        datetime(2025, 3, 10, 8, 59, 59, 520000, tzinfo=UTC),
    )


def test_shelly_gen2_several_events_in_one_notification() -> None:
    payload = (
        b'{"src":"shellyplusi4-a8032ab1","dst":"shellyplusi4-a8032ab1/events","method":"NotifyEvent",'
        b'"params":{"ts":1741597199.52,"events":['
        b'{"component":"input:2","id":2,"event":"single_push","ts":1741597199.10},'
        b'{"component":"input:1","id":1,"event":"single_push","ts":1741597199.52}]}}'
    )
    events = parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", payload), DESK4, MAX_FUTURE)
    assert [e.value for e in ratings(events)] == ["bad", "neutral"]
    assert len({e.event_uid for e in ratings(events)}) == 2


def gen2(*events: tuple[str, str], ts: str = "1741597199.52", method: str = "NotifyEvent") -> bytes:
    items = ",".join(f'{{"component":"{c}","id":0,"event":"{e}","ts":{ts}}}' for c, e in events)
    return f'{{"src":"x","method":"{method}","params":{{"ts":{ts},"events":[{items}]}}}}'.encode()


def test_shelly_gen2_edges_alone_are_ignored() -> None:
    payload = gen2(("input:0", "btn_down"), ("input:0", "btn_up"))
    assert parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", payload), DESK4, MAX_FUTURE) == []


def test_shelly_gen2_edge_beside_a_push_keeps_the_push() -> None:
    payload = gen2(("input:0", "btn_up"), ("input:0", "single_push"))
    [event] = parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", payload), DESK4, MAX_FUTURE)
    assert isinstance(event, RatingEvent) and event.value == "good"


def test_shelly_gen2_non_input_events_and_status_are_ignored() -> None:
    assert (
        parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", gen2(("sys", "scheduled_restart"))), DESK4, MAX_FUTURE)
        == []
    )
    status = b'{"src":"x","method":"NotifyStatus","params":{"ts":1741597199.52,"input:0":{"state":true}}}'
    assert parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", status), DESK4, MAX_FUTURE) == []


def test_shelly_gen2_qos1_duplicate_shares_uid_and_new_press_does_not() -> None:
    topic = "shellyplusi4-a8032ab1/events/rpc"
    a = parse_shelly(msg(topic, SHELLY_GEN2), DESK4, MAX_FUTURE)
    b = parse_shelly(msg(topic, SHELLY_GEN2, at=NOW + timedelta(seconds=3)), DESK4, MAX_FUTURE)
    c = parse_shelly(msg(topic, gen2(("input:0", "single_push"), ts="1741597199.91")), DESK4, MAX_FUTURE)
    assert uid(a) == uid(b) != uid(c)


def test_shelly_gen2_without_ts_uses_receive_time() -> None:
    payload = b'{"method":"NotifyEvent","params":{"events":[{"component":"input:0","event":"single_push"}]}}'
    [event] = parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", payload), DESK4, MAX_FUTURE)
    assert isinstance(event, RatingEvent) and event.ts == NOW


def test_shelly_gen2_retained_is_stale() -> None:
    assert parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", SHELLY_GEN2, retained=True), DESK4, MAX_FUTURE) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (gen2(("input:0", "double_push")), "unknown_action"),
        (gen2(("input:0", "single_push"), ts="1741598000"), "future_ts"),
        (gen2(("input:0", "single_push"), ts="0"), "bad_ts"),
        (gen2(("input:0", "single_push"), ts="1" + "0" * 400), "future_ts"),  # no float overflow
        (gen2(("input:0", "single_push"), ts='"now"'), "bad_field"),
        (b'{"params":{"events":[]}}', "bad_field"),
        (b'{"method":"NotifyEvent","params":[]}', "bad_field"),
        (b'{"method":"NotifyEvent","params":{"events":{}}}', "bad_field"),
        (b'{"method":"NotifyEvent","params":{"events":[1]}}', "bad_field"),
        (b'{"method":"NotifyEvent","params":{"events":[{"component":0,"event":"single_push"}]}}', "bad_field"),
        (b"single_push", "not_json"),
    ],
)
def test_shelly_gen2_errors(payload: bytes, reason: str) -> None:
    assert reason_of(parse_shelly, msg("shellyplusi4-a8032ab1/events/rpc", payload), DESK4, MAX_FUTURE) == reason


@pytest.mark.parametrize(("payload", "online"), [(b"true", True), (b"false", False)])
def test_shelly_online(payload: bytes, online: bool) -> None:
    [event] = parse_shelly(msg("shellyplusi4-a8032ab1/online", payload, retained=True), DESK4, MAX_FUTURE)
    assert event == StatusEvent("MSK-1", "desk4-shelly", online, None, NOW)


def test_shelly_unknown_topic_is_bad_topic() -> None:
    assert reason_of(parse_shelly, msg("shellyplusi4-a8032ab1/status/input:0", b"{}"), DESK4, MAX_FUTURE) == "bad_topic"


# --------------------------------------------------------------------------- Shelly gen1

GEN1_TOPIC = "shellies/shellyix3-98CDAC1F/input_event/0"


def test_shelly_gen1_input_event_from_devices_md() -> None:
    [event] = parse_shelly(msg(GEN1_TOPIC, SHELLY_GEN1), DESK5, MAX_FUTURE)
    assert event == RatingEvent("shelly:desk5-i3:input:0:73", "MSK-1", "W5", "desk5-i3", "good", NOW)


def test_shelly_gen1_replay_with_same_event_cnt_shares_uid() -> None:
    a = parse_shelly(msg(GEN1_TOPIC, SHELLY_GEN1), DESK5, MAX_FUTURE)
    b = parse_shelly(msg(GEN1_TOPIC, SHELLY_GEN1, at=NOW + timedelta(minutes=7)), DESK5, MAX_FUTURE)
    c = parse_shelly(msg(GEN1_TOPIC, b'{"event":"S","event_cnt":74}'), DESK5, MAX_FUTURE)
    assert uid(a) == uid(b) != uid(c)


def test_shelly_gen1_codes_may_be_mapped_by_gen2_names() -> None:
    [event] = parse_shelly(
        msg("shellies/shellyix3-98CDAC1F/input_event/1", b'{"event":"S","event_cnt":5}'), DESK5, MAX_FUTURE
    )
    assert isinstance(event, RatingEvent) and event.value == "neutral"


def test_shelly_gen1_idle_event_and_retained_are_ignored() -> None:
    assert parse_shelly(msg(GEN1_TOPIC, b'{"event":"","event_cnt":0}'), DESK5, MAX_FUTURE) == []
    assert parse_shelly(msg(GEN1_TOPIC, SHELLY_GEN1, retained=True), DESK5, MAX_FUTURE) == []


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (GEN1_TOPIC, b'{"event":"SS","event_cnt":74}', "unknown_action"),
        ("shellies/shellyix3-98CDAC1F/input_event/2", b'{"event":"L","event_cnt":1}', "unknown_action"),
        (GEN1_TOPIC, b'{"event":"S"}', "bad_field"),
        (GEN1_TOPIC, b'{"event":"S","event_cnt":true}', "bad_field"),
        (GEN1_TOPIC, b'{"event":"S","event_cnt":"73"}', "bad_field"),
        (GEN1_TOPIC, b'{"event":"S","event_cnt":-1}', "bad_value"),
        (GEN1_TOPIC, b'{"event":1,"event_cnt":73}', "bad_field"),
        ("shellies/shellyix3-98CDAC1F/input_event/x", SHELLY_GEN1, "bad_topic"),
        ("shellies/shellyix3-98CDAC1F/events/rpc", SHELLY_GEN2, "bad_topic"),
        ("shellies/shellyix3-98CDAC1F/sensor/battery", b"full", "bad_value"),
        ("shellies/shellyix3-98CDAC1F/sensor/battery", b"101", "bad_value"),
    ],
)
def test_shelly_gen1_errors(topic: str, payload: bytes, reason: str) -> None:
    assert reason_of(parse_shelly, msg(topic, payload), DESK5, MAX_FUTURE) == reason


def test_shelly_gen1_battery_and_online() -> None:
    [battery] = parse_shelly(msg("shellies/shellyix3-98CDAC1F/sensor/battery", b"87", retained=True), DESK5, MAX_FUTURE)
    [online] = parse_shelly(msg("shellies/shellyix3-98CDAC1F/online", b"false", retained=True), DESK5, MAX_FUTURE)
    assert battery == StatusEvent("MSK-1", "desk5-i3", None, 87, NOW)
    assert online == StatusEvent("MSK-1", "desk5-i3", False, None, NOW)


# --------------------------------------------------------------------------- exit kiosk

from devices.adapters import parse_kiosk  # noqa: E402
from devices.contract import ComplaintEvent, NpsEvent  # noqa: E402
from devices.contract import MAX_KIOSK_PAYLOAD  # noqa: E402
from devices.routing import TopicRouter  # noqa: E402

KIOSK = DeviceConfig("kiosk-msk-1", "kiosk", "MSK-1", "EXIT")
KIOSK_TOPIC = f"{ROOT}/MSK-1/kiosk/kiosk-msk-1/feedback"
# what a kiosk publishes, byte for byte
KIOSK_RATING = (
    b'{"id":"k-101","ts":"2025-03-10T12:00:00+03:00","kind":"rating","value":"bad",'
    b'"reasons":["wait","rude"],"text":"\xd0\x96\xd0\xb4\xd0\xb0\xd0\xbb\xd0\xb8 20 \xd0\xbc\xd0\xb8\xd0\xbd\xd1\x83\xd1\x82","staff":"ivanova"}'
)
KIOSK_NPS = b'{"id":"k-102","ts":1741597200000,"kind":"nps","value":9,"text":"fast"}'
KIOSK_COMPLAINT = (
    b'{"id":"k-103","ts":"2025-03-10T09:00:00Z","kind":"complaint","value":"bad","text":"Lost my order",'
    b'"name":"Ivan","contact":"+79990001122","consent":true}'
)


def kiosk(**fields: object) -> bytes:
    import json

    body: dict[str, object] = {"id": "k-1", "ts": "2025-03-10T09:00:00Z", "kind": "rating", "value": "good"}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_kiosk_rating_carries_channel_reasons_text_and_staff() -> None:
    [event] = parse_kiosk(msg(KIOSK_TOPIC, KIOSK_RATING), KIOSK)
    assert event == RatingEvent(
        "kiosk:MSK-1:kiosk-msk-1:k-101", "MSK-1", "EXIT", "kiosk-msk-1", "bad", NOW,
        channel="kiosk", staff="ivanova", reasons=("wait", "rude"), text="Ждали 20 минут",
    )


def test_kiosk_nps_is_an_int_score_with_its_reason() -> None:
    [event] = parse_kiosk(msg(KIOSK_TOPIC, KIOSK_NPS), KIOSK)
    assert event == NpsEvent("kiosk:MSK-1:kiosk-msk-1:k-102", "MSK-1", "EXIT", "kiosk-msk-1", 9, NOW, reason="fast")


def test_kiosk_complaint_with_consent_keeps_name_and_contact() -> None:
    [event] = parse_kiosk(msg(KIOSK_TOPIC, KIOSK_COMPLAINT), KIOSK)
    assert isinstance(event, ComplaintEvent)
    assert (event.text, event.consent, event.name, event.contact, event.value) == (
        "Lost my order", True, "Ivan", "+79990001122", "bad"
    )
    assert "+7999" not in repr(event)  # contacts stay out of logs


def test_kiosk_complaint_without_consent_drops_name_and_contact() -> None:
    payload = KIOSK_COMPLAINT.replace(b'"consent":true', b'"consent":false')
    [event] = parse_kiosk(msg(KIOSK_TOPIC, payload), KIOSK)
    assert isinstance(event, ComplaintEvent)
    assert (event.text, event.consent, event.name, event.contact) == ("Lost my order", False, None, None)
    no_flag = kiosk(kind="complaint", value=None, text="Rude guard", name="Ivan", contact="ivan@example.com")
    [event] = parse_kiosk(msg(KIOSK_TOPIC, no_flag), KIOSK)
    assert (event.consent, event.name, event.contact) == (False, None, None)


def test_kiosk_payload_point_names_another_point_of_the_office() -> None:
    [event] = parse_kiosk(msg(KIOSK_TOPIC, kiosk(point="W2")), KIOSK)
    assert (event.site, event.point) == ("MSK-1", "W2")
    [event] = parse_kiosk(msg(KIOSK_TOPIC, kiosk(point="MSK-1/W3")), KIOSK)
    assert event.point == "W3"
    assert reason_of(parse_kiosk, msg(KIOSK_TOPIC, kiosk(point="EKB-1/W1")), KIOSK) == "unknown_point"


def test_kiosk_unknown_reason_is_passed_on_for_the_service_to_judge() -> None:
    [event] = parse_kiosk(msg(KIOSK_TOPIC, kiosk(value="bad", reasons=["wait", "no-such", "wait"])), KIOSK)
    assert event.reasons == ("wait", "no-such")


def test_kiosk_blank_text_is_no_text() -> None:
    [event] = parse_kiosk(msg(KIOSK_TOPIC, kiosk(text="   ")), KIOSK)
    assert event.text is None


def test_kiosk_retained_feedback_is_stale() -> None:
    assert parse_kiosk(msg(KIOSK_TOPIC, KIOSK_RATING, retained=True), KIOSK) == []


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (kiosk(kind="nps", value=11), "bad_value", "NPS 'value' must be 0..10, got 11"),
        (kiosk(kind="nps", value=-1), "bad_value", "NPS 'value' must be 0..10"),
        (kiosk(kind="nps", value=2.5), "bad_field", "NPS 'value' must be an integer 0..10, got float 2.5"),
        (kiosk(kind="nps", value="9"), "bad_field", "NPS 'value' must be an integer 0..10, got str '9'"),
        (kiosk(kind="nps", value=True), "bad_field", "NPS 'value' must be an integer"),
        (kiosk(kind="nps", value=...), "bad_field", "'value' is required"),
        (
            kiosk(kind="complaint", value=None, text="x", name="Ivan", consent=True),
            "complaint_no_contact", "consented to be contacted but left no contact",
        ),
        (
            kiosk(kind="complaint", value=None, text="x", contact="  ", consent=True),
            "complaint_no_contact", "left no contact",
        ),
        (kiosk(kind="complaint", value=None, text="x", contact=79990001122, consent=True), "bad_field", "'contact' must be a string"),
        (kiosk(kind="complaint", value=None, contact="+7999", consent=True), "bad_field", "'text' is required for a complaint"),
        (kiosk(kind="complaint", value=None, text="x", consent="yes"), "bad_field", "'consent' must be true or false"),
        (kiosk(reasons=[f"r{i}" for i in range(11)]), "bad_value", "11 reasons, at most 10"),
        (kiosk(reasons="wait"), "bad_field", "'reasons' must be a list"),
        (kiosk(reasons=["wait", 7]), "bad_field", "each reason must be a code"),
        (kiosk(kind="nps", value=3, reasons=["wait"]), "bad_field", "'reasons' go with kind rating only"),
        (kiosk(text="x" * 2001), "bad_value", "'text' is 2001 characters, the limit is 2000"),
        (kiosk(kind="survey"), "bad_value", "'kind' must be one of complaint|nps|rating"),
        (kiosk(value="excellent"), "bad_value", "'value' must be one of"),
        (kiosk(id=...), "bad_field", "'id' is required"),
        (kiosk(ts=...), "bad_field", "'ts' is required"),
        (kiosk(ts="2025-03-10T09:00:00"), "bad_ts", "no UTC offset"),
        (b"[1,2]", "bad_field", "must be a JSON object"),
        (b"good", "not_json", "not JSON"),
    ],
)
def test_kiosk_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str, detail: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_kiosk(msg(KIOSK_TOPIC, payload), KIOSK)
    assert caught.value.reason == reason
    assert detail in caught.value.detail, caught.value.detail


def test_kiosk_text_of_exactly_2000_characters_is_kept() -> None:
    [event] = parse_kiosk(msg(KIOSK_TOPIC, kiosk(text="я" * 2000)), KIOSK)
    assert event.text == "я" * 2000


def test_router_subscribes_kiosk_feedback_and_routes_it_to_the_kiosk() -> None:
    router = TopicRouter(ROOT, [*ORG_DEVICES, KIOSK], ORG_POINTS | {("MSK-1", "EXIT")})
    assert f"{ROOT}/+/kiosk/+/feedback" in router.subscriptions()
    [event] = router.parse(msg(KIOSK_TOPIC, KIOSK_RATING))
    assert (event.device_id, event.point, event.channel) == ("kiosk-msk-1", "EXIT", "kiosk")


def test_router_rejects_unknown_kiosks_and_unknown_points() -> None:
    router = TopicRouter(ROOT, [KIOSK], ORG_POINTS | {("MSK-1", "EXIT")})
    other = msg(f"{ROOT}/MSK-1/kiosk/kiosk-9/feedback", KIOSK_RATING)
    assert reason_of(router.parse, other) == "unknown_device"
    assert reason_of(router.parse, msg(KIOSK_TOPIC, kiosk(point="W9"))) == "unknown_point"
    assert reason_of(router.parse, msg(KIOSK_TOPIC, kiosk(pad="x" * MAX_KIOSK_PAYLOAD))) == "too_large"


def test_router_without_kiosks_has_no_kiosk_subscription_and_audio_still_routes() -> None:
    router = TopicRouter(ROOT, ORG_DEVICES, ORG_POINTS)
    assert not any("kiosk" in f for f in router.subscriptions())
    [audio] = router.parse(msg(f"{ROOT}/MSK-1/W1/audio/1741597200000", b"OggS..."))
    assert audio.point == "W1"


def test_simulated_kiosk_traffic_parses_back_into_what_the_plan_intended() -> None:
    from devices.simulator import KioskPlan

    plan = KioskPlan([KIOSK, BTN17], rate=10, duration=60, bad_share=0.05, seed=7)
    router = TopicRouter(ROOT, [KIOSK], {("MSK-1", "EXIT")})
    kinds: dict[str, int] = {}
    for item in plan.schedule(NOW):
        kinds[item.expect.kind] = kinds.get(item.expect.kind, 0) + 1
        if item.expect.kind == "bad":
            assert reason_of(router.parse, msg(item.topic, item.payload)) == item.expect.value
            continue
        [event] = router.parse(msg(item.topic, item.payload))
        if item.expect.kind == "rating":
            assert isinstance(event, RatingEvent) and event.value == item.expect.value
            assert event.reasons or event.value == "good"
        elif item.expect.kind == "nps":
            assert isinstance(event, NpsEvent) and str(event.score) == item.expect.value
        else:
            assert isinstance(event, ComplaintEvent) and (event.contact is not None) == event.consent
    assert set(kinds) == {"rating", "nps", "complaint", "bad"} and sum(kinds.values()) == 600
