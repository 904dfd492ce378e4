"""Payload adapters: one real device message in, native events out. Pure functions, no I/O.

Each adapter is ``(msg, device, max_future) -> list[Event]`` and raises :class:`PayloadError`
for input that must go to the dead letters. An empty list means "legitimately not an event":
a retained message on an event topic (stale state replayed on subscribe), a Tasmota relay
``POWER`` change nobody mapped, a Shelly ``NotifyStatus`` or a bare ``btn_down``/``btn_up``
edge. Availability and battery messages are used even when retained: they *are* state.

Device health (:class:`StatusEvent`) per kind: native ``…/{device}/status``; zigbee2mqtt
``…/availability`` plus the ``battery`` cached in every state message (a state update without
``action``, or the Home Assistant reset ``{"action":""}``, is a sighting, not a press); Tasmota
``tele/<t>/LWT`` plus ``BatteryPercentage`` in ``tele/<t>/SENSOR``/``STATE``; Shelly
``…/online`` plus gen1 ``sensor/battery`` and gen2 ``status/devicepower:0`` (or the same
component in a ``NotifyStatus``). A status from a retained message says so (``retained``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

from devices.contract import (
    EARLIEST_TS,
    MAX_FUTURE,
    MAX_ID,
    MAX_CONTACT,
    MAX_KIOSK_PAYLOAD,
    MAX_PAYLOAD,
    MAX_REASON_CODE,
    MAX_REASONS,
    MAX_STAFF,
    MAX_TEXT,
    MAX_TICKET,
    MAX_UID,
    MAX_VOICE,
    PRESENCE_STATES,
    RATING_VALUES,
    ComplaintEvent,
    DeviceConfig,
    Event,
    InboundMessage,
    NpsEvent,
    PayloadError,
    PresenceEvent,
    RatingEvent,
    StatusEvent,
)

Adapter: TypeAlias = Callable[[InboundMessage, DeviceConfig, timedelta], list[Event]]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
BUCKET_MS: Final = 500
"""Off-the-shelf buttons repeat a press within ~0.5 s (DEVICES.md); one bucket, one event."""
SHELLY_GEN1_PREFIX: Final = "shellies/"
SHELLY_GEN1_ALIASES: Final[Mapping[str, str]] = {
    "S": "single_push",
    "SS": "double_push",
    "SSS": "triple_push",
    "L": "long_push",
}
"""Gen1 codes may be mapped by their gen2 names too, so one org file fits both generations."""
SHELLY_EDGES: Final = frozenset({"btn_down", "btn_up"})
"""Raw edges that accompany every gen2 push: ignored unless mapped, or every press dead-letters."""
TASMOTA_TELEMETRY: Final = ("SENSOR", "STATE")
"""Periodic ``tele/<topic>/…`` reports: a sign of life, and the battery where the device has one."""
SHELLY_DEVICEPOWER: Final = "devicepower:0"
SHELLY_DEVICEPOWER_TOPIC: Final = f"status/{SHELLY_DEVICEPOWER}"
"""Gen2 battery: ``{"id":0,"battery":{"V":2.99,"percent":67},"external":{"present":false}}``."""
_TASMOTA_BUTTON: Final = re.compile(r"(?:Button|Switch)\d{1,2}")
_TASMOTA_POWER: Final = re.compile(r"POWER\d{0,2}")
_AVAILABILITY_WORDS: Final[Mapping[str, bool]] = {
    "online": True,
    "offline": False,
    "true": True,
    "false": False,
}
_EARLIEST_MS: Final = (EARLIEST_TS - EPOCH) // timedelta(milliseconds=1)


# --------------------------------------------------------------------------- device topics


def base_topic(device: DeviceConfig) -> str:
    """The device's own topic, with the org file's defaults filled in."""
    if device.topic:
        return device.topic
    if device.kind == "zigbee2mqtt":
        return f"zigbee2mqtt/{device.id}"
    return device.id


def is_shelly_gen1(device: DeviceConfig) -> bool:
    """Gen1 devices are configured by their ``shellies/<id>`` topic, gen2 by their prefix."""
    return device.kind == "shelly" and base_topic(device).startswith(SHELLY_GEN1_PREFIX)


def device_filters(device: DeviceConfig) -> list[str]:
    """Exact subscription filters for an off-the-shelf device (never ``#``: names contain ``/``)."""
    base = base_topic(device)
    if device.kind == "zigbee2mqtt":
        return [base, f"{base}/availability"]
    if device.kind == "tasmota":
        return [
            f"stat/{base}/RESULT", f"{base}/stat/RESULT", f"tele/{base}/LWT", f"{base}/tele/LWT",
            *(f"tele/{base}/{leaf}" for leaf in TASMOTA_TELEMETRY), *(f"{base}/tele/{leaf}" for leaf in TASMOTA_TELEMETRY),
        ]
    if device.kind == "shelly":
        if is_shelly_gen1(device):
            return [f"{base}/input_event/+", f"{base}/online", f"{base}/sensor/battery"]
        return [f"{base}/events/rpc", f"{base}/online", f"{base}/{SHELLY_DEVICEPOWER_TOPIC}"]
    return []


# --------------------------------------------------------------------------- shared checks


def _check_size(msg: InboundMessage, limit: int = MAX_PAYLOAD) -> None:
    if len(msg.payload) > limit:
        raise PayloadError("too_large", f"{len(msg.payload)} bytes, the limit is {limit}")


def _text(msg: InboundMessage) -> str:
    try:
        return msg.payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError("bad_value", f"payload is not UTF-8 text: {exc.reason}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(msg: InboundMessage, limit: int = MAX_PAYLOAD) -> Any:
    _check_size(msg, limit)
    try:
        text = msg.payload.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise PayloadError("not_json", f"payload is not JSON: {str(exc)[:200]}") from None


def _json_object(msg: InboundMessage, limit: int = MAX_PAYLOAD) -> dict[str, Any]:
    data = _json(msg, limit)
    if not isinstance(data, dict):
        raise PayloadError("bad_field", f"payload must be a JSON object, got {type(data).__name__}")
    return data


def _optional_string(obj: Mapping[str, Any], key: str, max_len: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError("bad_field", f"{key!r} must be a string, got {type(value).__name__}")
    if not value or len(value) > max_len:
        raise PayloadError("bad_field", f"{key!r} must be 1..{max_len} characters")
    return value


def _required_string(obj: Mapping[str, Any], key: str, max_len: int) -> str:
    value = _optional_string(obj, key, max_len)
    if value is None:
        raise PayloadError("bad_field", f"{key!r} is required")
    return value


def _enum(obj: Mapping[str, Any], key: str, allowed: frozenset[str]) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise PayloadError("bad_field", f"{key!r} must be a string, got {type(value).__name__}")
    if value not in allowed:
        raise PayloadError("bad_value", f"{key!r} must be one of {'|'.join(sorted(allowed))}, got {value[:32]!r}")
    return value


def _short(value: object) -> str:
    """Details go to logs and the dead-letter table: never echo a 4000-digit number whole."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _uid(*parts: str) -> str:
    uid = ":".join(parts)
    if len(uid) > MAX_UID:
        raise PayloadError("bad_field", f"identifiers too long for an event id ({len(uid)} > {MAX_UID})")
    return uid


def _epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def receive_bucket(received_at: datetime) -> int:
    """Receive time in epoch ms floored to 500 ms: the dedupe key of devices that send no id."""
    ms = _epoch_ms(received_at)
    return ms - ms % BUCKET_MS


def parse_device_ts(value: object, received_at: datetime, max_future: timedelta = MAX_FUTURE) -> datetime:
    """Native ``ts``: ISO 8601 *with* an offset, or epoch milliseconds (an int).

    A naive ISO string is rejected rather than guessed: the office's zone is not the
    device's business, and a wrong guess moves a rating to another shift.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PayloadError("bad_field", f"'ts' must be an ISO 8601 string or epoch ms, got {type(value).__name__}")
    limit = received_at + max_future
    if isinstance(value, int):
        if value < _EARLIEST_MS:
            raise PayloadError(
                "bad_ts", f"epoch ms {_short(value)} is before 2000 (seconds instead of ms, or an unset clock)"
            )
        if value > _epoch_ms(limit):
            raise PayloadError("future_ts", f"epoch ms {_short(value)} is more than {max_future} after receipt")
        return EPOCH + timedelta(milliseconds=value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError("bad_ts", f"'ts' is not ISO 8601: {value[:64]!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PayloadError("bad_ts", f"'ts' has no UTC offset: {value[:64]!r}")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise PayloadError("bad_ts", f"'ts' is out of range: {value[:64]!r}") from None
    if moment < EARLIEST_TS:
        raise PayloadError("bad_ts", f"'ts' {value[:64]!r} is before 2000 (an unset clock)")
    if moment > limit:
        raise PayloadError("future_ts", f"'ts' {value[:64]!r} is more than {max_future} after receipt")
    return moment


def _epoch_seconds_ts(value: object, received_at: datetime, max_future: timedelta) -> datetime | None:
    """Shelly's ``ts`` (epoch seconds, fractional); ``None`` when the device sent none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("bad_field", f"'ts' must be epoch seconds, got {type(value).__name__}")
    if (isinstance(value, float) and not math.isfinite(value)) or value < _EARLIEST_MS / 1000:
        raise PayloadError("bad_ts", f"'ts' {_short(value)} is before 2000 (an unset clock)")
    if value > _epoch_ms(received_at + max_future) / 1000:  # exact even for huge ints
        raise PayloadError("future_ts", f"'ts' {_short(value)} is more than {max_future} after receipt")
    return EPOCH + timedelta(milliseconds=round(value * 1000))


def _action_value(device: DeviceConfig, *keys: str) -> str | None:
    for key in keys:
        value = device.actions.get(key)
        if value is not None:
            return value
    return None


def _unknown_action(device: DeviceConfig, key: str) -> PayloadError:
    return PayloadError("unknown_action", f"device {device.id}: action {key!r} is not mapped in the org file")


def _availability(msg: InboundMessage) -> bool:
    """``online``/``offline`` (any case), ``true``/``false``, or zigbee2mqtt's ``{"state": …}``."""
    _check_size(msg)
    text = _text(msg)
    word = _AVAILABILITY_WORDS.get(text.lower())
    if word is not None:
        return word
    if text.startswith("{"):
        state = _json_object(msg).get("state")
        if not isinstance(state, str):
            raise PayloadError("bad_field", "'state' must be a string")
        word = _AVAILABILITY_WORDS.get(state.lower())
        if word is not None:
            return word
    raise PayloadError("bad_value", f"availability must be online/offline or true/false, got {text[:64]!r}")


def _battery(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError("bad_field", f"'battery' must be an integer, got {type(value).__name__}")
    if not 0 <= value <= 100:
        raise PayloadError("bad_value", f"'battery' must be 0..100, got {_short(value)}")
    return value


def _status(device: DeviceConfig, msg: InboundMessage, *, online: bool | None, battery: int | None) -> StatusEvent:
    return StatusEvent(device.site, device.id, online, battery, msg.received_at, retained=msg.retained)


def _battery_reading(value: object) -> int | None:
    """A battery percentage riding along in an off-the-shelf device's state, or ``None``.

    Lenient on purpose: the state travels with presses, and a press must never be lost to a
    converter that reports ``67.5`` or a bogus ``200``: a number outside 0..100 is no reading.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return round(value) if 0 <= value <= 100 else None


# --------------------------------------------------------------------------- native contract


def parse_native_rating(msg: InboundMessage, device: DeviceConfig, max_future: timedelta = MAX_FUTURE) -> list[Event]:
    """``{root}/{site}/{point}/rating``; ``device`` is the point the topic names (site, point).

    The pressing button is the payload's ``device`` field; it need not be registered.
    """
    _check_size(msg)
    if msg.retained:
        return []  # a retained rating is an old press replayed on subscribe
    obj = _json_object(msg)
    event_id = _required_string(obj, "id", MAX_ID)
    device_id = _required_string(obj, "device", MAX_ID)
    value = _enum(obj, "value", RATING_VALUES)
    if "ts" not in obj:
        raise PayloadError("bad_field", "'ts' is required")
    ts = parse_device_ts(obj["ts"], msg.received_at, max_future)
    uid = _uid("native", device.site, device_id, event_id)
    return [RatingEvent(uid, device.site, device.point, device_id, value, ts)]


def parse_native_presence(msg: InboundMessage, device: DeviceConfig, max_future: timedelta = MAX_FUTURE) -> list[Event]:
    """``{root}/{site}/{point}/presence``: a client's service at a point starts or ends."""
    _check_size(msg)
    if msg.retained:
        return []
    obj = _json_object(msg)
    event_id = _required_string(obj, "id", MAX_ID)
    state = _enum(obj, "state", PRESENCE_STATES)
    if "ts" not in obj:
        raise PayloadError("bad_field", "'ts' is required")
    ts = parse_device_ts(obj["ts"], msg.received_at, max_future)
    ticket = _optional_string(obj, "ticket", MAX_TICKET)
    staff = _optional_string(obj, "staff", MAX_STAFF)
    uid = _uid("native", device.site, device.point, event_id)
    return [PresenceEvent(uid, device.site, device.point, state, ts, ticket, staff)]


def parse_status(msg: InboundMessage, device: DeviceConfig, max_future: timedelta = MAX_FUTURE) -> list[Event]:
    """``{root}/{site}/{device}/status``: ``online``/``offline`` (retained, the last will) or
    a JSON object such as ``{"battery": 87}`` (a heartbeat: online is not inferred from it)."""
    _check_size(msg)
    text = _text(msg)
    if text.startswith("{"):
        obj = _json_object(msg)
        battery = _battery(obj["battery"]) if obj.get("battery") is not None else None
        return [_status(device, msg, online=None, battery=battery)]
    return [_status(device, msg, online=_availability(msg), battery=None)]


# --------------------------------------------------------------------------- exit kiosk

KIOSK_KINDS: Final = frozenset({"rating", "complaint", "nps"})


def _kiosk_text(obj: Mapping[str, Any], key: str, limit: int = MAX_TEXT) -> str | None:
    """A customer's words (or name, contact): blank is none; longer than ``limit`` is refused, not cut."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError("bad_field", f"{key!r} must be a string, got {type(value).__name__}")
    value = value.strip()
    if len(value) > limit:
        raise PayloadError("bad_value", f"{key!r} is {len(value)} characters, the limit is {limit}")
    return value or None


def _kiosk_reasons(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """Reason codes as sent; whether the office offers them is the service's question (an
    unknown code is dead-lettered there and the rating kept)."""
    value = obj.get("reasons")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PayloadError("bad_field", f"'reasons' must be a list of reason codes, got {type(value).__name__}")
    if len(value) > MAX_REASONS:
        raise PayloadError("bad_value", f"{len(value)} reasons, at most {MAX_REASONS}")
    for code in value:
        if not isinstance(code, str) or not code or len(code) > MAX_REASON_CODE:
            raise PayloadError("bad_field", f"each reason must be a code of 1..{MAX_REASON_CODE} characters, got {_short(code)}")
    return tuple(dict.fromkeys(value))


def _kiosk_point(obj: Mapping[str, Any], device: DeviceConfig) -> str:
    """The payload's ``point`` (``W1`` or ``MSK-1/W1``, of the kiosk's own office), else the
    kiosk's own; the router checks that it exists."""
    point = _optional_string(obj, "point", 2 * MAX_ID)
    if point is None:
        return device.point
    site, slash, code = point.rpartition("/")
    if slash and site != device.site:
        raise PayloadError("unknown_point", f"point {point[:64]!r} is not in the kiosk's office {device.site}")
    if not code or "/" in code:
        raise PayloadError("bad_field", f"'point' must be a point code like W1, got {point[:64]!r}")
    return code


def _kiosk_voice(obj: Mapping[str, Any]) -> bytes | None:
    """The customer's recorded comment: base64 of an audio file, at most :data:`MAX_VOICE`
    bytes decoded. Whether it is audio at all is the speech side's question (``bad_audio``)."""
    value = obj.get("voice")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError("bad_field", f"'voice' must be a base64 string, got {type(value).__name__}")
    if len(value) > 4 * -(-MAX_VOICE // 3) + 4:  # cheaper than decoding to find out
        raise PayloadError("too_large", f"'voice' is {len(value)} base64 characters, the limit is {MAX_VOICE} bytes decoded")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("bad_field", f"'voice' is not valid base64: {exc}") from None
    if len(data) > MAX_VOICE:
        raise PayloadError("too_large", f"'voice' is {len(data)} bytes decoded, the limit is {MAX_VOICE}")
    return data or None


def _nps_score(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError("bad_field", f"NPS 'value' must be an integer 0..10, got {type(value).__name__} {_short(value)}")
    if not 0 <= value <= 10:
        raise PayloadError("bad_value", f"NPS 'value' must be 0..10, got {_short(value)}")
    return value


def parse_kiosk(msg: InboundMessage, device: DeviceConfig, max_future: timedelta = MAX_FUTURE) -> list[Event]:
    """``{root}/{site}/kiosk/{device}/feedback``: a rating with reasons, an NPS answer or a complaint.

    ``{"id", "ts", "point"?, "staff"?, "kind": "rating"|"complaint"|"nps", "value",
    "reasons"?: [codes], "text"?, "voice"?: base64, "name"?, "contact"?, "consent"?}``. Reasons
    and a voice comment go with ratings only; with a voice the payload may reach
    :data:`MAX_KIOSK_PAYLOAD` (every other topic keeps :data:`MAX_PAYLOAD`). A complaint with ``consent: true`` needs a contact (``complaint_no_contact``); one
    without consent is kept but its name and contact are dropped here, so nothing of them is
    ever stored (152-FZ). Name and contact on a rating or an NPS answer are dropped likewise.
    """
    _check_size(msg, MAX_KIOSK_PAYLOAD)
    if msg.retained:
        return []  # an old answer replayed on subscribe
    obj = _json_object(msg, MAX_KIOSK_PAYLOAD)
    event_id = _required_string(obj, "id", MAX_ID)
    kind = _enum(obj, "kind", KIOSK_KINDS)
    if "ts" not in obj:
        raise PayloadError("bad_field", "'ts' is required")
    ts = parse_device_ts(obj["ts"], msg.received_at, max_future)
    point = _kiosk_point(obj, device)
    staff = _optional_string(obj, "staff", MAX_STAFF)
    reasons = _kiosk_reasons(obj)
    text = _kiosk_text(obj, "text")
    uid = _uid("kiosk", device.site, device.id, event_id)
    if kind != "rating" and reasons:
        raise PayloadError("bad_field", f"'reasons' go with kind rating only, not {kind}")
    if kind != "rating" and obj.get("voice") not in (None, ""):
        raise PayloadError("bad_field", f"'voice' goes with kind rating only, not {kind}")
    if kind == "rating":
        value = _enum(obj, "value", RATING_VALUES)
        voice = _kiosk_voice(obj)
        return [
            RatingEvent(
                uid, device.site, point, device.id, value, ts, channel="kiosk", staff=staff, reasons=reasons, text=text,
                voice=voice,
            )
        ]
    if kind == "nps":
        if "value" not in obj:
            raise PayloadError("bad_field", "'value' is required: the NPS score 0..10")
        return [NpsEvent(uid, device.site, point, device.id, _nps_score(obj["value"]), ts, reason=text, staff=staff)]
    if text is None:
        raise PayloadError("bad_field", "'text' is required for a complaint")
    value = _enum(obj, "value", RATING_VALUES) if obj.get("value") is not None else None
    consent = obj.get("consent", False)
    if consent is None:
        consent = False
    if not isinstance(consent, bool):
        raise PayloadError("bad_field", f"'consent' must be true or false, got {type(consent).__name__}")
    name = contact = None
    if consent:  # without consent nothing of the person is even looked at
        contact = _kiosk_text(obj, "contact", MAX_CONTACT)
        if contact is None:
            raise PayloadError("complaint_no_contact", "the customer consented to be contacted but left no contact")
        name = _kiosk_text(obj, "name", MAX_CONTACT)
    return [
        ComplaintEvent(
            uid, device.site, point, device.id, text, ts, consent=consent, name=name, contact=contact,
            value=value, staff=staff,
        )
    ]


# --------------------------------------------------------------------------- zigbee2mqtt


def parse_zigbee2mqtt(msg: InboundMessage, device: DeviceConfig, max_future: timedelta = MAX_FUTURE) -> list[Event]:
    """``zigbee2mqtt/<name>`` presses (a non-empty ``action``) and ``…/availability``.

    Every state message is also a sign of life with the cached ``battery`` riding along, so a
    press yields its rating *and* a status; a retained state (stale) yields only its battery.
    """
    _check_size(msg)
    base = base_topic(device)
    if msg.topic == f"{base}/availability":
        return [_status(device, msg, online=_availability(msg), battery=None)]
    if msg.topic != base:
        raise PayloadError("bad_topic", f"{msg.topic!r} is not a topic of zigbee2mqtt device {device.id}")
    if msg.retained:
        try:
            battery = _battery_reading(_json_object(msg).get("battery"))
        except PayloadError:
            return []
        return [] if battery is None else [_status(device, msg, online=None, battery=battery)]
    obj = _json_object(msg)
    status = _status(device, msg, online=None, battery=_battery_reading(obj.get("battery")))
    action = obj.get("action")
    if action is None or action == "":
        return [status]  # battery/link update, or Home Assistant's reset after a press
    if not isinstance(action, str):
        raise PayloadError("bad_field", f"'action' must be a string, got {type(action).__name__}")
    value = _action_value(device, action)
    if value is None:
        raise _unknown_action(device, action)
    uid = _uid("zigbee2mqtt", device.id, action, str(receive_bucket(msg.received_at)))
    return [RatingEvent(uid, device.site, device.point, device.id, value, msg.received_at), status]


# --------------------------------------------------------------------------- Tasmota


def parse_tasmota(msg: InboundMessage, device: DeviceConfig, max_future: timedelta = MAX_FUTURE) -> list[Event]:
    """``stat/<t>/RESULT`` (or ``<t>/stat/RESULT``) button/switch actions and the ``LWT``.

    Action keys: ``Button1.SINGLE``, ``Switch1.ON``; a relay change ``{"POWER":"ON"}`` counts
    only when ``POWER.ON`` is mapped (a button that still toggles its relay).
    """
    _check_size(msg)
    base = base_topic(device)
    if msg.topic in (f"tele/{base}/LWT", f"{base}/tele/LWT"):
        return [_status(device, msg, online=_availability(msg), battery=None)]
    if any(msg.topic in (f"tele/{base}/{leaf}", f"{base}/tele/{leaf}") for leaf in TASMOTA_TELEMETRY):
        return _parse_tasmota_telemetry(msg, device)
    if msg.topic not in (f"stat/{base}/RESULT", f"{base}/stat/RESULT"):
        raise PayloadError("bad_topic", f"{msg.topic!r} is not a topic of Tasmota device {device.id}")
    if msg.retained:
        return []
    obj = _json_object(msg)
    events: list[Event] = []
    unmapped: list[str] = []
    for name, body in obj.items():
        if _TASMOTA_BUTTON.fullmatch(name) and isinstance(body, dict) and "Action" in body:
            action = body["Action"]
            if not isinstance(action, str) or not action:
                raise PayloadError("bad_field", f"{name}.Action must be a non-empty string")
            key = f"{name}.{action}"
        elif _TASMOTA_POWER.fullmatch(name) and isinstance(body, str):
            key = f"{name}.{body}"
            if _action_value(device, key) is None:
                continue  # the relay toggled; only a rating if someone mapped it
        else:
            continue  # command results and other state: not events
        value = _action_value(device, key)
        if value is None:
            unmapped.append(key)
            continue
        uid = _uid("tasmota", device.id, key, str(receive_bucket(msg.received_at)))
        events.append(RatingEvent(uid, device.site, device.point, device.id, value, msg.received_at))
    if not events and unmapped:
        raise _unknown_action(device, unmapped[0])
    return events


def _parse_tasmota_telemetry(msg: InboundMessage, device: DeviceConfig) -> list[Event]:
    """``tele/<t>/STATE`` / ``SENSOR`` every TelePeriod: a sighting, with ``BatteryPercentage``
    when the device reports one (top level, or inside one sensor object such as a Zigbee
    bridge's ``{"ZbReceived":{"0x4F2E":{"BatteryPercentage":95}}}``). A retained one is stale:
    its battery is used, the sighting is not."""
    try:
        obj = _json_object(msg)
    except PayloadError:
        if msg.retained:
            return []
        raise
    battery = _find_battery_percentage(obj, depth=3)
    if msg.retained and battery is None:
        return []
    return [_status(device, msg, online=None, battery=battery)]


def _find_battery_percentage(obj: Mapping[str, Any], depth: int) -> int | None:
    reading = _battery_reading(obj.get("BatteryPercentage"))
    if reading is not None or depth <= 1:
        return reading
    for value in obj.values():
        if isinstance(value, dict):
            reading = _find_battery_percentage(value, depth - 1)
            if reading is not None:
                return reading
    return None


# --------------------------------------------------------------------------- Shelly


def parse_shelly(msg: InboundMessage, device: DeviceConfig, max_future: timedelta = MAX_FUTURE) -> list[Event]:
    """Gen2 ``<prefix>/events/rpc`` NotifyEvent, gen1 ``shellies/<id>/input_event/<n>``, and
    ``…/online`` (``true``/``false``) plus gen1 ``…/sensor/battery``."""
    _check_size(msg)
    base = base_topic(device)
    if msg.topic == f"{base}/online":
        return [_status(device, msg, online=_availability(msg), battery=None)]
    if msg.topic == f"{base}/{SHELLY_DEVICEPOWER_TOPIC}" and not is_shelly_gen1(device):
        battery = _shelly_battery(_json_object(msg))
        if battery is None and msg.retained:
            return []
        return [_status(device, msg, online=None, battery=battery)]
    if is_shelly_gen1(device):
        return _parse_shelly_gen1(msg, device, base)
    if msg.topic != f"{base}/events/rpc":
        raise PayloadError("bad_topic", f"{msg.topic!r} is not a topic of Shelly device {device.id}")
    if msg.retained:
        return []
    return _parse_shelly_gen2(msg, device, max_future)


def _parse_shelly_gen2(msg: InboundMessage, device: DeviceConfig, max_future: timedelta) -> list[Event]:
    """Several input events may share one notification; mapped ones win, edges are dropped."""
    obj = _json_object(msg)
    method = obj.get("method")
    if not isinstance(method, str):
        raise PayloadError("bad_field", "'method' must be a string")
    if method != "NotifyEvent":  # NotifyStatus / NotifyFullStatus share the topic
        params = obj.get("params")
        power = params.get(SHELLY_DEVICEPOWER) if isinstance(params, dict) else None
        battery = _shelly_battery(power) if isinstance(power, dict) else None
        return [] if battery is None else [_status(device, msg, online=None, battery=battery)]
    params = obj.get("params")
    if not isinstance(params, dict):
        raise PayloadError("bad_field", "'params' must be an object")
    items = params.get("events")
    if not isinstance(items, list):
        raise PayloadError("bad_field", "'params.events' must be a list")
    outer_ts = params.get("ts")
    events: list[Event] = []
    unmapped: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            raise PayloadError("bad_field", "each event must be an object")
        component, name = item.get("component"), item.get("event")
        if not isinstance(component, str) or not isinstance(name, str):
            raise PayloadError("bad_field", "'component' and 'event' must be strings")
        if not component.startswith("input:"):
            continue  # sys/ota/config events travel here too
        key = f"{component}.{name}"
        value = _action_value(device, key)
        if value is None:
            if name not in SHELLY_EDGES:
                unmapped.append(key)
            continue
        ts = _epoch_seconds_ts(item.get("ts", outer_ts), msg.received_at, max_future)
        if ts is None:
            ts, stamp = msg.received_at, f"r{receive_bucket(msg.received_at)}"
        else:
            stamp = str(_epoch_ms(ts))
        uid = _uid("shelly", device.id, key, stamp)
        events.append(RatingEvent(uid, device.site, device.point, device.id, value, ts))
    if not events and unmapped:
        raise _unknown_action(device, unmapped[0])
    return events


def _shelly_battery(power: Mapping[str, Any]) -> int | None:
    """``devicepower:0`` status: ``{"battery":{"V":2.99,"percent":67},…}``; mains-powered
    devices have no such component, and a reading in error has no ``percent``."""
    battery = power.get("battery")
    return _battery_reading(battery.get("percent")) if isinstance(battery, dict) else None


def _parse_shelly_gen1(msg: InboundMessage, device: DeviceConfig, base: str) -> list[Event]:
    """``{"event":"S","event_cnt":73}``; ``event_cnt`` is the dedupe key (reconnects replay).

    Caveat: the counter lives in the device; if a reboot restarts it, a later press with an
    old count is taken for a replay. The org file can use gen2 names (``input:0.single_push``).
    """
    if msg.topic == f"{base}/sensor/battery":
        text = _text(msg)
        if not (text.isascii() and text.isdigit() and len(text) <= 3):
            raise PayloadError("bad_value", f"battery must be a number 0..100, got {text[:16]!r}")
        return [_status(device, msg, online=None, battery=_battery(int(text)))]
    head, _, channel = msg.topic.rpartition("/")
    if head != f"{base}/input_event" or not (channel.isascii() and channel.isdigit() and len(channel) <= 2):
        raise PayloadError("bad_topic", f"{msg.topic!r} is not a topic of Shelly device {device.id}")
    if msg.retained:
        return []
    obj = _json_object(msg)
    code = obj.get("event")
    if not isinstance(code, str):
        raise PayloadError("bad_field", "'event' must be a string")
    if not code:
        return []  # the idle state a gen1 device reports after boot
    count = obj.get("event_cnt")
    if isinstance(count, bool) or not isinstance(count, int):
        raise PayloadError("bad_field", "'event_cnt' must be an integer")
    if not 0 <= count < 2**63:
        raise PayloadError("bad_value", f"'event_cnt' out of range: {_short(count)}")
    key = f"input:{channel}.{code}"
    alias = SHELLY_GEN1_ALIASES.get(code)
    value = _action_value(device, key, *([f"input:{channel}.{alias}"] if alias else []))
    if value is None:
        raise _unknown_action(device, key)
    uid = _uid("shelly", device.id, f"input:{channel}", str(count))
    return [RatingEvent(uid, device.site, device.point, device.id, value, msg.received_at)]


ADAPTERS: Final[Mapping[str, Adapter]] = {
    "zigbee2mqtt": parse_zigbee2mqtt,
    "tasmota": parse_tasmota,
    "shelly": parse_shelly,
}
"""Off-the-shelf kinds by their org-file ``kind``; native topics are dispatched by suffix."""
