"""The MQTT side's vocabulary: device configuration, the raw message, the events it yields.

Everything here is plain data with its invariants checked on construction, so an adapter
bug surfaces as a ``ValueError`` in tests instead of a bad row in the database. Bad *input*
(what a device sent) is never a ``ValueError``: it is a :class:`PayloadError` with a short
machine ``reason`` that the ingest loop stores with the message in the dead-letter table.

Event ids (``event_uid``, unique in the database, at most :data:`MAX_UID` characters):

* native rating   ``native:{site}:{device}:{id}`` — the button numbers its own presses, so
  the id is scoped by the device that sent it (a button moved to another desk keeps counting)
* native presence ``native:{site}:{point}:{id}`` — a queue terminal / sensor belongs to a point
  and the payload names no device
* zigbee2mqtt / Tasmota ``{kind}:{device_id}:{action}:{bucket}`` — these devices send no id;
  ``bucket`` is the receive time in epoch ms floored to 500 ms, so the device's own duplicate
  publishes inside one bucket collapse (a pair straddling a bucket edge is left to the
  repeated-press rule of the domain)
* Shelly gen2 ``shelly:{device_id}:{component}.{event}:{ts_ms}`` — the device's event time
* Shelly gen1 ``shelly:{device_id}:input:{n}:{event_cnt}`` — the device's press counter, which
  is exactly what a reconnect replays
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, get_args

Kind: TypeAlias = Literal["native", "zigbee2mqtt", "tasmota", "shelly", "kiosk"]
RatingValue: TypeAlias = Literal["good", "neutral", "bad"]
PresenceState: TypeAlias = Literal["start", "end"]
Reason: TypeAlias = Literal[
    "not_json",
    "bad_field",
    "bad_value",
    "future_ts",
    "bad_ts",
    "unknown_device",
    "unknown_point",
    "bad_topic",
    "unknown_action",
    "too_large",
    "complaint_no_contact",
]

KINDS: Final[frozenset[str]] = frozenset(get_args(Kind))
RATING_VALUES: Final[frozenset[str]] = frozenset(get_args(RatingValue))
CHANNELS: Final = ("button", "kiosk", "qr")
PRESENCE_STATES: Final[frozenset[str]] = frozenset(get_args(PresenceState))
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))

MAX_FUTURE: Final = timedelta(minutes=5)
"""Default tolerance for device clocks running ahead of ours (``max_future_seconds``)."""
MAX_PAYLOAD: Final = 64 * 1024
"""No event payload is anywhere near this; bigger ones are misrouted files or abuse."""
MAX_VOICE: Final = 1024 * 1024
"""A kiosk customer's voice comment, decoded (Ogg/Opus, WAV or MP3): about a minute of speech."""
MAX_KIOSK_PAYLOAD: Final = 1_500_000
"""The kiosk feedback topic only: a rating carrying :data:`MAX_VOICE` bytes as base64 (4/3) plus its JSON."""
MAX_UID: Final = 200  # Rating.event_uid / PresenceEvent.event_uid column width
MAX_ID: Final = 100  # device ids and native event ids (Rating.device_id column width)
MAX_ACTION_KEY: Final = 64
MAX_TICKET: Final = 32  # PresenceEvent.ticket column width
MAX_STAFF: Final = 64  # PresenceEvent.staff_code column width
MAX_TEXT: Final = 2000  # a kiosk customer's comment, NPS reason or complaint
MAX_REASONS: Final = 10  # reasons picked in one kiosk answer
MAX_REASON_CODE: Final = 64  # Reason.code column width
MAX_CONTACT: Final = 200  # Complaint.customer_name / contact column width
EARLIEST_TS: Final = datetime(2000, 1, 1, tzinfo=UTC)
"""Device times before this mean an unset clock (epoch 0, or seconds sent as milliseconds)."""


class PayloadError(Exception):
    """A message that cannot become an event; goes to the dead-letter table, never stops the loop."""

    def __init__(self, reason: Reason, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown PayloadError reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


def _require_aware_utc(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _require_uid(uid: str) -> None:
    if not isinstance(uid, str) or not uid or len(uid) > MAX_UID:
        raise ValueError(f"event_uid must be 1..{MAX_UID} characters, got {uid!r}")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device entry of the org file.

    ``topic`` is the device's own topic: zigbee2mqtt the full friendly-name topic
    (``zigbee2mqtt/desk2``, default ``zigbee2mqtt/<id>``), Tasmota its ``%topic%`` (default
    ``<id>``), Shelly the gen2 prefix (default ``<id>``) or ``shellies/<id>`` for gen1. Native
    devices need none. ``actions`` maps the device's action key to good/neutral/bad.
    ``point`` is "" only for a native device known solely from its status topic.
    """

    id: str
    kind: str  # native | zigbee2mqtt | tasmota | shelly
    site: str
    point: str
    topic: str | None = None
    actions: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or len(self.id) > MAX_ID:
            raise ValueError(f"device id must be 1..{MAX_ID} characters, got {self.id!r}")
        if self.kind not in KINDS:
            raise ValueError(f"device {self.id}: kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.topic is not None and (not self.topic or any(c in self.topic for c in "+#\0")):
            raise ValueError(f"device {self.id}: topic must be a non-empty topic without wildcards")
        actions = dict(self.actions)
        for key, value in actions.items():
            if not isinstance(key, str) or not key or len(key) > MAX_ACTION_KEY:
                raise ValueError(f"device {self.id}: action key must be 1..{MAX_ACTION_KEY} characters")
            if value not in RATING_VALUES:
                raise ValueError(f"device {self.id}: action {key} must map to good|neutral|bad, got {value!r}")
        object.__setattr__(self, "actions", MappingProxyType(actions))


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One MQTT message as the ingest loop received it (no client objects: adapters stay pure)."""

    topic: str
    payload: bytes
    retained: bool
    received_at: datetime  # timezone-aware; normalised to UTC

    def __post_init__(self) -> None:
        if isinstance(self.payload, bytearray | memoryview):
            object.__setattr__(self, "payload", bytes(self.payload))
        if not isinstance(self.payload, bytes):
            raise ValueError("payload must be bytes")
        object.__setattr__(self, "received_at", _require_aware_utc("received_at", self.received_at))


@dataclass(frozen=True, slots=True)
class RatingEvent:
    """A customer pressed good / neutral / bad at a point."""

    event_uid: str
    site: str
    point: str
    device_id: str
    value: str  # good | neutral | bad
    ts: datetime  # UTC
    # what the exit kiosk and QR surveys add; a button sends none of it
    channel: str = "button"  # button | kiosk | qr
    staff: str | None = None  # the employee the customer rated (staff code), if they chose one
    reasons: tuple[str, ...] = ()  # reason codes from the office's list
    text: str | None = None  # the customer's own words
    repeat: bool = False  # the channel saw the same phone again inside its window: kept, not counted
    voice: bytes | None = field(default=None, repr=False)  # a kiosk voice comment, decoded; checked by the speech side

    def __post_init__(self) -> None:
        _require_uid(self.event_uid)
        if self.value not in RATING_VALUES:
            raise ValueError(f"rating value must be good|neutral|bad, got {self.value!r}")
        if not self.device_id or len(self.device_id) > MAX_ID:
            raise ValueError(f"device_id must be 1..{MAX_ID} characters")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {'|'.join(CHANNELS)}, got {self.channel!r}")
        object.__setattr__(self, "ts", _require_aware_utc("ts", self.ts))


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A client started or stopped being served at a point (queue terminal, presence sensor)."""

    event_uid: str
    site: str
    point: str
    state: str  # start | end
    ts: datetime  # UTC
    ticket: str | None = None
    staff: str | None = None

    def __post_init__(self) -> None:
        _require_uid(self.event_uid)
        if self.state not in PRESENCE_STATES:
            raise ValueError(f"presence state must be start|end, got {self.state!r}")
        if self.ticket is not None and len(self.ticket) > MAX_TICKET:
            raise ValueError(f"ticket longer than {MAX_TICKET}")
        if self.staff is not None and len(self.staff) > MAX_STAFF:
            raise ValueError(f"staff longer than {MAX_STAFF}")
        object.__setattr__(self, "ts", _require_aware_utc("ts", self.ts))


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """Device health: availability and/or battery; ``None`` means "not said by this message"."""

    site: str | None
    device_id: str
    online: bool | None
    battery: int | None
    ts: datetime  # UTC, the receive time
    # replayed on subscribe: state, not a sighting (``last_seen`` stays); not part of equality
    retained: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not self.device_id or len(self.device_id) > MAX_ID:
            raise ValueError(f"device_id must be 1..{MAX_ID} characters")
        if self.battery is not None and not (0 <= self.battery <= 100):
            raise ValueError(f"battery must be 0..100, got {self.battery}")
        object.__setattr__(self, "ts", _require_aware_utc("ts", self.ts))


@dataclass(frozen=True, slots=True)
class AudioEvent:
    """One segment of a desk recording: the bytes are checked and stored by the speech side."""

    site: str
    point: str
    started_at: datetime  # UTC, from the topic's start_epoch_ms
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if self.started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")


MAX_AUDIO_PAYLOAD: Final = 1024 * 1024
"""Audio over MQTT stays well under brokers' packet limits; longer recordings go over HTTP."""

@dataclass(frozen=True, slots=True)
class NpsEvent:
    """An exit-kiosk answer to "how likely are you to recommend us", 0..10."""

    event_uid: str
    site: str
    point: str
    device_id: str
    score: int
    ts: datetime  # UTC
    reason: str | None = None  # the customer's words on why
    staff: str | None = None
    channel: str = "kiosk"

    def __post_init__(self) -> None:
        _require_uid(self.event_uid)
        if isinstance(self.score, bool) or not isinstance(self.score, int) or not 0 <= self.score <= 10:
            raise ValueError(f"NPS score must be an int 0..10, got {self.score!r}")
        if self.reason is not None and len(self.reason) > MAX_TEXT:
            raise ValueError(f"NPS reason longer than {MAX_TEXT}")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {'|'.join(CHANNELS)}, got {self.channel!r}")
        object.__setattr__(self, "ts", _require_aware_utc("ts", self.ts))


@dataclass(frozen=True, slots=True)
class ComplaintEvent:
    """A complaint that needs an answer. ``name``/``contact`` exist only with ``consent``
    (152-FZ): without it the adapter drops them, and constructing one with them is a bug."""

    event_uid: str
    site: str
    point: str
    device_id: str
    text: str
    ts: datetime  # UTC
    consent: bool = False
    name: str | None = field(default=None, repr=False)
    contact: str | None = field(default=None, repr=False)
    value: str | None = None  # good | neutral | bad, when the kiosk asked for a rating too
    staff: str | None = None
    channel: str = "kiosk"

    def __post_init__(self) -> None:
        _require_uid(self.event_uid)
        if not self.text or len(self.text) > MAX_TEXT:
            raise ValueError(f"complaint text must be 1..{MAX_TEXT} characters")
        if not self.consent and (self.name is not None or self.contact is not None):
            raise ValueError("a complaint without consent must carry no name or contact")
        if self.consent and not self.contact:
            raise ValueError("a complaint with consent needs a contact")
        for name in ("name", "contact"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_CONTACT:
                raise ValueError(f"complaint {name} longer than {MAX_CONTACT}")
        if self.value is not None and self.value not in RATING_VALUES:
            raise ValueError(f"rating value must be good|neutral|bad, got {self.value!r}")
        if self.channel not in CHANNELS:
            raise ValueError(f"channel must be one of {'|'.join(CHANNELS)}, got {self.channel!r}")
        object.__setattr__(self, "ts", _require_aware_utc("ts", self.ts))


Event: TypeAlias = RatingEvent | PresenceEvent | StatusEvent | AudioEvent | NpsEvent | ComplaintEvent
