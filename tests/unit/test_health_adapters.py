"""Device health from every device kind: availability, last wills and battery levels.

Payloads are the ones DEVICES.md documents, byte for byte; where it elides a shape (Tasmota's
telemetry, Shelly gen2 ``devicepower:0``) the documented shape of those projects is used.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.device_health import split_lines
from devices.adapters import parse_shelly, parse_status, parse_tasmota, parse_zigbee2mqtt
from devices.contract import MAX_FUTURE, DeviceConfig, InboundMessage, PayloadError, RatingEvent, StatusEvent
from devices.routing import TopicRouter

NOW = datetime(2025, 3, 10, 9, 0, 0, tzinfo=UTC)
BTN17 = DeviceConfig("btn-17", "native", "MSK-1", "W1")
DESK2 = DeviceConfig("desk2-remote", "zigbee2mqtt", "MSK-1", "W2", "zigbee2mqtt/desk2", {"1_single": "good"})
DESK3 = DeviceConfig("desk3-tasmota", "tasmota", "MSK-1", "W3", "desk3", {"Button1.SINGLE": "good"})
DESK4 = DeviceConfig("desk4-shelly", "shelly", "MSK-1", "W4", "shellyplusi4-a8032ab1", {"input:0.single_push": "good"})
DESK5 = DeviceConfig("desk5-i3", "shelly", "MSK-1", "W4", "shellies/shellyix3-98CDAC1F", {"input:0.S": "good"})
ROUTER = TopicRouter("loyalty/v1", [BTN17, DESK2, DESK3, DESK4, DESK5], {("MSK-1", f"W{n}") for n in range(1, 5)})


def msg(topic: str, payload: bytes, *, retained: bool = False) -> InboundMessage:
    return InboundMessage(topic, payload, retained, NOW)


def status(device: DeviceConfig, online: bool | None, battery: int | None) -> StatusEvent:
    return StatusEvent(device.site, device.id, online, battery, NOW)


# --------------------------------------------------------------------------- native


@pytest.mark.parametrize(("payload", "online"), [(b"online", True), (b"offline", False)])
def test_native_status_last_will_is_state_even_retained(payload: bytes, online: bool) -> None:
    [event] = ROUTER.parse(msg("loyalty/v1/MSK-1/btn-17/status", payload, retained=True))
    assert event == status(BTN17, online, None)
    assert event.retained is True  # replayed on subscribe: not a sighting


def test_native_status_battery_heartbeat_is_a_live_sighting() -> None:
    [event] = parse_status(msg("loyalty/v1/MSK-1/btn-17/status", b'{"battery": 87}'), BTN17, MAX_FUTURE)
    assert event == status(BTN17, None, 87) and event.retained is False


# --------------------------------------------------------------------------- zigbee2mqtt


@pytest.mark.parametrize(
    ("payload", "online"),
    [(b'{"state":"online"}', True), (b'{"state":"offline"}', False), (b"online", True), (b"offline", False)],
)
def test_z2m_availability_new_and_legacy(payload: bytes, online: bool) -> None:
    [event] = ROUTER.parse(msg("zigbee2mqtt/desk2/availability", payload, retained=True))
    assert event == status(DESK2, online, None) and event.retained


def test_z2m_battery_rides_along_with_a_press() -> None:
    device = DeviceConfig("aqara", "zigbee2mqtt", "MSK-1", "W2", "zigbee2mqtt/aqara", {"single": "good"})
    events = parse_zigbee2mqtt(
        msg("zigbee2mqtt/aqara", b'{"action":"single","battery":100,"linkquality":98,"voltage":3000}'), device, MAX_FUTURE
    )
    assert [type(e) for e in events] == [RatingEvent, StatusEvent]
    assert events[1] == status(device, None, 100)


def test_z2m_battery_update_without_action() -> None:
    [event] = ROUTER.parse(msg("zigbee2mqtt/desk2", b'{"battery":14,"linkquality":98,"voltage":2700}'))
    assert event == status(DESK2, None, 14)


def test_z2m_retained_state_gives_its_battery_but_no_press_and_no_sighting() -> None:
    [event] = ROUTER.parse(msg("zigbee2mqtt/desk2", b'{"action":"1_single","battery":67}', retained=True))
    assert event == status(DESK2, None, 67) and event.retained
    assert ROUTER.parse(msg("zigbee2mqtt/desk2", b'{"linkquality":98}', retained=True)) == []


@pytest.mark.parametrize("battery", [b"200", b'"67"', b"-1", b"true", b"null"])
def test_z2m_bogus_battery_is_no_reading_and_never_costs_the_press(battery: bytes) -> None:
    events = ROUTER.parse(msg("zigbee2mqtt/desk2", b'{"action":"1_single","battery":%s}' % battery))
    assert isinstance(events[0], RatingEvent) and events[0].value == "good"
    assert events[1] == status(DESK2, None, None)


def test_z2m_fractional_battery_is_rounded() -> None:
    [event] = ROUTER.parse(msg("zigbee2mqtt/desk2", b'{"battery":67.6}'))
    assert event.battery == 68  # type: ignore[union-attr]


# --------------------------------------------------------------------------- Tasmota


@pytest.mark.parametrize(
    ("topic", "payload", "online"),
    [("tele/desk3/LWT", b"Online", True), ("tele/desk3/LWT", b"Offline", False), ("desk3/tele/LWT", b"Offline", False)],
)
def test_tasmota_last_will_in_both_topic_orders(topic: str, payload: bytes, online: bool) -> None:
    [event] = ROUTER.parse(msg(topic, payload, retained=True))
    assert event == status(DESK3, online, None) and event.retained


@pytest.mark.parametrize("topic", ["tele/desk3/STATE", "desk3/tele/STATE"])
def test_tasmota_state_with_battery(topic: str) -> None:
    payload = b'{"Time":"2025-03-10T12:00:00","Uptime":"0T01:00:00","BatteryPercentage":14,"Wifi":{"RSSI":70}}'
    [event] = ROUTER.parse(msg(topic, payload))
    assert event == status(DESK3, None, 14)


def test_tasmota_sensor_battery_inside_a_zigbee_bridge_report() -> None:
    payload = b'{"Time":"2025-03-10T12:00:00","ZbReceived":{"0x4F2E":{"Device":"0x4F2E","BatteryPercentage":95}}}'
    [event] = parse_tasmota(msg("tele/desk3/SENSOR", payload), DESK3, MAX_FUTURE)
    assert event == status(DESK3, None, 95)


def test_tasmota_telemetry_without_battery_is_a_sighting_and_retained_is_nothing() -> None:
    payload = b'{"Time":"2025-03-10T12:00:00","Uptime":"0T01:00:00","POWER":"OFF"}'
    assert ROUTER.parse(msg("tele/desk3/STATE", payload)) == [status(DESK3, None, None)]
    assert ROUTER.parse(msg("tele/desk3/STATE", payload, retained=True)) == []


def test_tasmota_bad_telemetry_is_a_dead_letter() -> None:
    with pytest.raises(PayloadError) as caught:
        ROUTER.parse(msg("tele/desk3/SENSOR", b"not json"))
    assert caught.value.reason == "not_json"


# --------------------------------------------------------------------------- Shelly


@pytest.mark.parametrize(("payload", "online"), [(b"true", True), (b"false", False)])
@pytest.mark.parametrize("device", [DESK4, DESK5], ids=["gen2", "gen1"])
def test_shelly_online_both_generations(device: DeviceConfig, payload: bytes, online: bool) -> None:
    [event] = ROUTER.parse(msg(f"{device.topic}/online", payload, retained=True))
    assert event == status(device, online, None)


def test_shelly_gen2_devicepower_battery() -> None:
    payload = b'{"id":0,"battery":{"V":2.99,"percent":67},"external":{"present":false}}'
    [event] = ROUTER.parse(msg("shellyplusi4-a8032ab1/status/devicepower:0", payload))
    assert event == status(DESK4, None, 67)


def test_shelly_gen2_notify_status_battery() -> None:
    payload = (
        b'{"src":"shellyplusi4-a8032ab1","dst":"shellyplusi4-a8032ab1/events","method":"NotifyStatus",'
        b'"params":{"ts":1741597199.52,"devicepower:0":{"id":0,"battery":{"V":2.6,"percent":13},"external":{"present":false}}}}'
    )
    [event] = parse_shelly(msg("shellyplusi4-a8032ab1/events/rpc", payload), DESK4, MAX_FUTURE)
    assert event == status(DESK4, None, 13)


def test_shelly_gen2_devicepower_without_percent_is_a_sighting() -> None:
    payload = b'{"id":0,"battery":{"V":null,"percent":null},"external":{"present":true},"errors":["read"]}'
    assert ROUTER.parse(msg("shellyplusi4-a8032ab1/status/devicepower:0", payload)) == [status(DESK4, None, None)]


def test_shelly_gen1_battery() -> None:
    [event] = ROUTER.parse(msg("shellies/shellyix3-98CDAC1F/sensor/battery", b"87"))
    assert event == status(DESK5, None, 87)


# --------------------------------------------------------------------------- routing


def test_health_topics_are_subscribed_for_every_kind() -> None:
    subscriptions = ROUTER.subscriptions()
    for topic in (
        "loyalty/v1/+/+/status",
        "zigbee2mqtt/desk2",
        "zigbee2mqtt/desk2/availability",
        "tele/desk3/LWT",
        "desk3/tele/LWT",
        "tele/desk3/SENSOR",
        "tele/desk3/STATE",
        "shellyplusi4-a8032ab1/online",
        "shellyplusi4-a8032ab1/status/devicepower:0",
        "shellies/shellyix3-98CDAC1F/online",
        "shellies/shellyix3-98CDAC1F/sensor/battery",
    ):
        assert topic in subscriptions


def test_health_topic_of_an_unknown_device_is_unknown_device() -> None:
    with pytest.raises(PayloadError) as caught:
        ROUTER.parse(msg("tele/nobody/STATE", b"{}"))
    assert caught.value.reason == "unknown_device"


# --------------------------------------------------------------------------- message splitting


def test_split_lines_respects_the_telegram_limit_and_breaks_between_lines() -> None:
    lines = [f"line {n:04d} " + "x" * 90 for n in range(200)]
    chunks = split_lines(lines)
    assert len(chunks) > 1 and all(len(c) <= 4096 for c in chunks)
    assert "\n".join(chunks).split("\n") == lines


def test_split_lines_cuts_one_overlong_line() -> None:
    [chunk] = split_lines(["y" * 5000])
    assert len(chunk) == 4096 and chunk.endswith("…")
