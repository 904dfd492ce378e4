"""Topic → device/point → adapter, built once from the org so each message costs dict lookups.

The router is where configuration meets topics: it knows which topics to subscribe to,
which device a topic belongs to, and whether the point an event names exists. Adapters
stay ignorant of the org; the ingest loop stays ignorant of topic shapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from devices.adapters import (
    ADAPTERS,
    base_topic,
    device_filters,
    parse_native_presence,
    parse_kiosk,
    parse_native_rating,
    parse_shelly,
    parse_status,
)
from devices.contract import (
    MAX_FUTURE,
    MAX_ID,
    MAX_AUDIO_PAYLOAD,
    MAX_PAYLOAD,
    AudioEvent,
    ComplaintEvent,
    DeviceConfig,
    Event,
    InboundMessage,
    NpsEvent,
    PayloadError,
    PresenceEvent,
    RatingEvent,
)

NATIVE_LEAVES: Final = ("rating", "presence", "status")
KIOSK_LEVEL: Final = "kiosk"
KIOSK_FEEDBACK: Final = "feedback"
_OFF_THE_SHELF_HEADS: Final = ("zigbee2mqtt/", "shellies/", "stat/", "tele/")
_OFF_THE_SHELF_TAILS: Final = (
    "/availability", "/stat/RESULT", "/tele/LWT", "/tele/SENSOR", "/tele/STATE", "/events/rpc", "/online",
    "/status/devicepower:0",
)


def _check_topic(name: str, topic: str) -> None:
    if not topic or any(c in topic for c in "+#\0") or topic.startswith("$"):
        raise ValueError(f"{name} must be a plain topic without wildcards, got {topic!r}")


def subscription_for(topic_filter: str, shared_group: str | None) -> str:
    """``$share/<group>/<filter>`` so MQTT 5 brokers split messages between instances;
    the plain filter when no group is configured (one instance)."""
    if not shared_group:
        return topic_filter
    if any(c in shared_group for c in "/+#\0"):
        raise ValueError(f"shared subscription group must not contain / + # (got {shared_group!r})")
    return f"$share/{shared_group}/{topic_filter}"


class TopicRouter:
    """Routes one inbound message to its adapter and checks the result against the org.

    ``points`` is the set of ``(site, point)`` codes that exist. A native rating from an
    unregistered button is accepted when its point exists (buttons are often swapped before
    anyone edits the org file); an unknown site/point is ``unknown_point``. An off-the-shelf
    device bound to a point that does not exist yields ``unknown_point`` for its presses but
    its availability still counts.
    """

    def __init__(self, root: str, devices: Iterable[DeviceConfig], points: Iterable[tuple[str, str]]) -> None:
        root = root.rstrip("/")
        _check_topic("root", root)
        self.root = root
        self._native_prefix = f"{root}/"
        self._points: frozenset[tuple[str, str]] = frozenset(points)
        self._sites: frozenset[str] = frozenset(site for site, _ in self._points)
        self._endpoints: dict[tuple[str, str], DeviceConfig] = {
            (site, point): DeviceConfig(id=point[:MAX_ID] or "-", kind="native", site=site, point=point)
            for site, point in self._points
        }
        self._devices: dict[str, DeviceConfig] = {}
        self._native: dict[tuple[str, str], DeviceConfig] = {}
        self._exact: dict[str, DeviceConfig] = {}
        self._gen1: dict[str, DeviceConfig] = {}
        self._kiosks: dict[tuple[str, str], DeviceConfig] = {}
        self._filters: list[str] = [f"{root}/+/+/{leaf}" for leaf in NATIVE_LEAVES] + [f"{root}/+/+/audio/+"]
        for device in devices:
            self._add(device)

    def _add(self, device: DeviceConfig) -> None:
        if device.id in self._devices:
            raise ValueError(f"device id {device.id!r} appears twice in the org")
        self._devices[device.id] = device
        if device.kind == "native":
            self._native[(device.site, device.id)] = device
            return
        if device.kind == KIOSK_LEVEL:  # {root}/{site}/kiosk/{device}/feedback, one wildcard filter for all
            self._kiosks[(device.site, device.id)] = device
            kiosk_filter = f"{self.root}/+/{KIOSK_LEVEL}/+/{KIOSK_FEEDBACK}"
            if kiosk_filter not in self._filters:
                self._filters.append(kiosk_filter)
            return
        _check_topic(f"device {device.id} topic", base_topic(device))
        for topic_filter in device_filters(device):
            if topic_filter.endswith("/+"):  # gen1 input_event/+: routed by its prefix
                self._gen1[base_topic(device)] = device
            else:
                owner = self._exact.setdefault(topic_filter, device)
                if owner is not device:
                    raise ValueError(f"devices {owner.id} and {device.id} both claim topic {topic_filter!r}")
            if topic_filter not in self._filters:
                self._filters.append(topic_filter)

    @property
    def devices(self) -> dict[str, DeviceConfig]:
        """The configured devices by id (a copy)."""
        return dict(self._devices)

    def subscriptions(self) -> list[str]:
        """The filters to subscribe to: native wildcards plus each device's exact topics."""
        return list(self._filters)

    def parse(self, msg: InboundMessage, max_future: timedelta = MAX_FUTURE) -> list[Event]:
        """Events in ``msg`` (possibly none); ``PayloadError`` when it belongs in the dead letters."""
        topic = msg.topic
        if topic.startswith(self._native_prefix) and topic.count("/") == self._native_prefix.count("/") + 3:
            rest = topic[len(self._native_prefix) :]
            _, level, _, leaf = rest.split("/")
            if level == KIOSK_LEVEL and leaf == KIOSK_FEEDBACK:
                return self._parse_kiosk(msg, rest, max_future)
            return self._parse_audio(msg, rest, max_future)
        if len(msg.payload) > MAX_PAYLOAD:
            raise PayloadError("too_large", f"{len(msg.payload)} bytes, the limit is {MAX_PAYLOAD}")
        device = self._exact.get(topic)
        if device is not None:
            return self._on_known_points(ADAPTERS[device.kind](msg, device, max_future))
        if topic.startswith(self._native_prefix):
            return self._parse_native(msg, topic[len(self._native_prefix) :], max_future)
        head, _, _channel = topic.rpartition("/")
        prefix, _, level = head.rpartition("/")
        if level == "input_event":
            device = self._gen1.get(prefix)
            if device is not None:
                return self._on_known_points(parse_shelly(msg, device, max_future))
        if topic.startswith(_OFF_THE_SHELF_HEADS) or topic.endswith(_OFF_THE_SHELF_TAILS):
            raise PayloadError("unknown_device", f"no device in the org publishes to {topic[:200]!r}")
        raise PayloadError("bad_topic", f"{topic[:200]!r} is not a topic of this service")

    def _parse_native(self, msg: InboundMessage, rest: str, max_future: timedelta) -> list[Event]:
        parts = rest.split("/")
        if len(parts) != 3 or parts[2] not in NATIVE_LEAVES:
            raise PayloadError("bad_topic", f"{msg.topic[:200]!r} is not {self.root}/<site>/<point>/<kind>")
        site, middle, leaf = parts
        if leaf == "status":
            if site not in self._sites:
                raise PayloadError("unknown_point", f"site {site[:64]!r} is not in the org")
            if not middle or len(middle) > MAX_ID:
                raise PayloadError("bad_topic", f"device id in {msg.topic[:200]!r} must be 1..{MAX_ID} characters")
            device = self._native.get((site, middle)) or DeviceConfig(id=middle, kind="native", site=site, point="")
            return parse_status(msg, device, max_future)
        endpoint = self._endpoints.get((site, middle))
        if endpoint is None:
            raise PayloadError("unknown_point", f"point {site[:64]}/{middle[:64]} is not in the org")
        if leaf == "rating":
            return parse_native_rating(msg, endpoint, max_future)
        return parse_native_presence(msg, endpoint, max_future)

    def _parse_audio(self, msg: InboundMessage, rest: str, max_future: timedelta) -> list[Event]:
        """``{site}/{point}/audio/{start_epoch_ms}``: the payload is checked by the speech side."""
        site, point, leaf, start = rest.split("/")
        if leaf != "audio":
            raise PayloadError("bad_topic", f"{msg.topic[:200]!r} is not {self.root}/<site>/<point>/audio/<start_ms>")
        if msg.retained:
            return []
        if (site, point) not in self._endpoints:
            raise PayloadError("unknown_point", f"point {site[:64]}/{point[:64]} is not in the org")
        if not start.isascii() or not start.isdigit() or len(start) > 15:
            raise PayloadError("bad_ts", f"start {start[:32]!r} is not epoch milliseconds")
        started_at = datetime.fromtimestamp(int(start) / 1000, UTC)
        if started_at > msg.received_at + max_future or started_at.year < 2000:
            raise PayloadError("future_ts" if started_at.year >= 2000 else "bad_ts", f"segment start {started_at.isoformat()} is implausible")
        if len(msg.payload) > MAX_AUDIO_PAYLOAD:
            raise PayloadError("too_large", f"{len(msg.payload)} bytes of audio, the MQTT limit is {MAX_AUDIO_PAYLOAD}; upload over HTTP")
        if not msg.payload:
            raise PayloadError("bad_value", "empty audio segment")
        return [AudioEvent(site, point, started_at, msg.payload)]

    def _parse_kiosk(self, msg: InboundMessage, rest: str, max_future: timedelta) -> list[Event]:
        """``{site}/kiosk/{device}/feedback`` from a kiosk of the org (its point is where it stands)."""
        site, _, device_id, _ = rest.split("/")
        device = self._kiosks.get((site, device_id))
        if device is None:
            raise PayloadError("unknown_device", f"no kiosk {device_id[:64]!r} in office {site[:64]!r} of the org")
        return self._on_known_points(parse_kiosk(msg, device, max_future))

    def _on_known_points(self, events: list[Event]) -> list[Event]:
        for event in events:
            located = isinstance(event, RatingEvent | PresenceEvent | NpsEvent | ComplaintEvent)
            if located and (event.site, event.point) not in self._points:
                raise PayloadError(
                    "unknown_point", f"point {event.site}/{event.point} of this device is not in the org"
                )
        return events


__all__ = ["KIOSK_FEEDBACK", "KIOSK_LEVEL", "NATIVE_LEAVES", "TopicRouter", "subscription_for"]
