"""Plays real devices: byte-exact payload builders and a seeded traffic plan.

No MQTT client here: :func:`run_simulation` takes the ``publish`` coroutine from its caller,
so the same plan drives the live broker from the CLI and a list in unit tests. Every planned
message carries what the service should make of it (:class:`Expected`), which is how tests
prove that simulated traffic parses back into the events the plan intended.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal, TypeAlias

from devices.adapters import SHELLY_GEN1_ALIASES, base_topic, is_shelly_gen1
from devices.contract import MAX_PAYLOAD, DeviceConfig, Reason

Message: TypeAlias = tuple[str, bytes, int, bool]
"""``(topic, payload, qos, retain)`` — what a device hands to its MQTT client."""
Publish: TypeAlias = Callable[[str, bytes, int, bool], Awaitable[None]]

MIN_PRESS_GAP: Final = 1.0
"""Seconds between presses of one device in a plan: twice the 0.5 s dedupe bucket."""
_GEN1_CODES: Final = {alias: code for code, alias in SHELLY_GEN1_ALIASES.items()}
_OFFSET_MSK: Final = timezone(timedelta(hours=3))
_VISIT_SLOTS: Final = 4  # start, rating, zigbee2mqtt reset, end: a visit begun is finished in time


def _dumps(obj: Any) -> bytes:
    """Compact JSON, as the firmware of these devices writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def format_ts(ts: datetime | int) -> str | int:
    """Native ``ts``: an aware datetime as ISO 8601 with its offset (ms precision), or epoch ms."""
    if isinstance(ts, int):
        return ts
    if ts.tzinfo is None:
        raise ValueError("native timestamps need an offset; pass an aware datetime")
    return ts.isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- native


def native_rating(*, event_id: str, ts: datetime | int, device: str, value: str) -> bytes:
    """``{"id":…,"ts":…,"device":…,"value":…}`` for ``{root}/{site}/{point}/rating``."""
    return _dumps({"id": event_id, "ts": format_ts(ts), "device": device, "value": value})


def native_presence(
    *, event_id: str, ts: datetime | int, state: str, ticket: str | None = None, staff: str | None = None
) -> bytes:
    """``{"id":…,"ts":…,"state":…,"ticket":…}`` for ``{root}/{site}/{point}/presence``."""
    body: dict[str, Any] = {"id": event_id, "ts": format_ts(ts), "state": state}
    if ticket is not None:
        body["ticket"] = ticket
    if staff is not None:
        body["staff"] = staff
    return _dumps(body)


def native_status(online: bool) -> bytes:
    """``online`` / ``offline`` (retained; also the device's last will)."""
    return b"online" if online else b"offline"


def native_battery(battery: int) -> bytes:
    return _dumps({"battery": battery})


# --------------------------------------------------------------------------- zigbee2mqtt

Z2M_HA_RESET: Final = b'{"action":""}'
"""What zigbee2mqtt publishes right after a press when its Home Assistant integration is on."""


def z2m_press(action: str, *, battery: int = 100, linkquality: int = 98, voltage: int = 3000) -> bytes:
    """A press with the cached state riding along, keys in zigbee2mqtt's order."""
    return _dumps({"action": action, "battery": battery, "linkquality": linkquality, "voltage": voltage})


def z2m_state(*, battery: int = 100, linkquality: int = 98, voltage: int = 3000) -> bytes:
    """A battery/link update: same topic, no ``action`` — not a press."""
    return _dumps({"battery": battery, "linkquality": linkquality, "voltage": voltage})


def z2m_availability(online: bool, *, legacy: bool = False) -> bytes:
    """``{"state":"online"}``; ``legacy`` gives the plain text of zigbee2mqtt before 2.0."""
    word = "online" if online else "offline"
    return word.encode() if legacy else _dumps({"state": word})


# --------------------------------------------------------------------------- Tasmota


def tasmota_result(name: str = "Button1", action: str = "SINGLE") -> bytes:
    """``{"Button1":{"Action":"SINGLE"}}``; ``POWER``-style names give ``{"POWER":"ON"}``."""
    if name.startswith("POWER"):
        return _dumps({name: action})
    return _dumps({name: {"Action": action}})


def tasmota_lwt(online: bool) -> bytes:
    return b"Online" if online else b"Offline"


# --------------------------------------------------------------------------- Shelly


def shelly_gen2_notify(src: str, events: Sequence[tuple[int, str]], ts: float) -> bytes:
    """A gen2 ``NotifyEvent`` on ``<prefix>/events/rpc``; ``events`` are ``(input id, event)``."""
    stamp = round(ts, 2)
    return _dumps(
        {
            "src": src,
            "dst": f"{src}/events",
            "method": "NotifyEvent",
            "params": {
                "ts": stamp,
                "events": [{"component": f"input:{i}", "id": i, "event": name, "ts": stamp} for i, name in events],
            },
        }
    )


def shelly_gen1_input(event: str, event_cnt: int) -> bytes:
    """``{"event":"S","event_cnt":73}`` on ``shellies/<id>/input_event/<n>``."""
    return _dumps({"event": event, "event_cnt": event_cnt})


def shelly_online(online: bool) -> bytes:
    return b"true" if online else b"false"


# --------------------------------------------------------------------------- per device


def press_key(device: DeviceConfig, value: str) -> str | None:
    """The first action key of ``device`` that means ``value`` and that we can simulate."""
    for key, mapped in device.actions.items():
        if mapped == value and _can_simulate(device, key):
            return key
    return None


def _can_simulate(device: DeviceConfig, key: str) -> bool:
    if device.kind == "zigbee2mqtt":
        return True
    if device.kind == "tasmota":
        name, dot, action = key.partition(".")
        return bool(dot and action and name)
    if device.kind == "shelly":
        component, dot, event = key.rpartition(".")
        kind, colon, channel = component.partition(":")
        ok = dot and kind == "input" and colon and channel.isascii() and channel.isdigit() and len(channel) <= 2
        return bool(ok) and (not is_shelly_gen1(device) or event in SHELLY_GEN1_ALIASES or event in _GEN1_CODES)
    return False


def device_values(device: DeviceConfig) -> tuple[str, ...]:
    """The ratings this device can produce in a simulation."""
    if device.kind == "native":
        return ("good", "neutral", "bad")
    return tuple(v for v in ("good", "neutral", "bad") if press_key(device, v) is not None)


def device_press(
    device: DeviceConfig, value: str, ts: datetime, *, root: str, event_id: str = "", event_cnt: int = 0
) -> Message:
    """One press of ``device`` meaning ``value``, as the real device publishes it.

    Native buttons need ``event_id``; Shelly gen1 needs its counter ``event_cnt``.
    """
    if device.kind == "native":
        payload = native_rating(event_id=event_id, ts=ts, device=device.id, value=value)
        return (f"{root}/{device.site}/{device.point}/rating", payload, 1, False)
    key = press_key(device, value)
    if key is None:
        raise ValueError(f"device {device.id} has no simulatable action for {value!r}")
    base = base_topic(device)
    if device.kind == "zigbee2mqtt":
        return (base, z2m_press(key), 1, False)
    if device.kind == "tasmota":
        name, _, action = key.partition(".")
        return (f"stat/{base}/RESULT", tasmota_result(name, action), 0, False)
    component, _, event = key.rpartition(".")
    channel = int(component.partition(":")[2])
    if is_shelly_gen1(device):
        code = _GEN1_CODES.get(event, event)
        return (f"{base}/input_event/{channel}", shelly_gen1_input(code, event_cnt), 0, False)
    return (f"{base}/events/rpc", shelly_gen2_notify(base, [(channel, event)], ts.timestamp()), 1, False)


def device_online(device: DeviceConfig, online: bool, *, root: str) -> Message:
    """The device's availability message (retained, as devices publish it)."""
    base = base_topic(device)
    if device.kind == "native":
        return (f"{root}/{device.site}/{device.id}/status", native_status(online), 1, True)
    if device.kind == "zigbee2mqtt":
        return (f"{base}/availability", z2m_availability(online), 1, True)
    if device.kind == "tasmota":
        return (f"tele/{base}/LWT", tasmota_lwt(online), 0, True)
    return (f"{base}/online", shelly_online(online), 1, True)


# --------------------------------------------------------------------------- bad input


@dataclass(frozen=True, slots=True)
class BadPayload:
    """A message the service must dead-letter with ``reason``."""

    label: str
    topic: str
    payload: bytes
    reason: Reason


def bad_payloads(root: str, site: str, point: str, now: datetime) -> list[BadPayload]:
    """One example per mistake devices and integrators really make, on a known point."""
    rating = f"{root}/{site}/{point}/rating"
    ts = format_ts(now)
    ok = {"id": "bad-1", "ts": ts, "device": "btn-sim", "value": "good"}
    return [
        BadPayload("not JSON", rating, b"good", "not_json"),
        BadPayload("truncated JSON", rating, b'{"id":"x","ts":', "not_json"),
        BadPayload("JSON array", rating, b'["good"]', "bad_field"),
        BadPayload("id is a number", rating, _dumps({**ok, "id": 17}), "bad_field"),
        BadPayload("value is a number", rating, _dumps({**ok, "value": 1}), "bad_field"),
        BadPayload("missing id", rating, _dumps({k: v for k, v in ok.items() if k != "id"}), "bad_field"),
        BadPayload("unknown value", rating, _dumps({**ok, "value": "excellent"}), "bad_value"),
        BadPayload("unknown point", f"{root}/{site}/no-such-point/rating", _dumps(ok), "unknown_point"),
        BadPayload("far-future ts", rating, _dumps({**ok, "ts": format_ts(now + timedelta(days=1))}), "future_ts"),
        BadPayload("naive ts", rating, _dumps({**ok, "ts": now.replace(tzinfo=None).isoformat()}), "bad_ts"),
        BadPayload("epoch seconds, not ms", rating, _dumps({**ok, "ts": int(now.timestamp())}), "bad_ts"),
        BadPayload(
            "unknown presence state",
            f"{root}/{site}/{point}/presence",
            _dumps({"id": "bad-2", "ts": ts, "state": "begin"}),
            "bad_value",
        ),
        BadPayload("huge payload", rating, _dumps({**ok, "pad": "x" * MAX_PAYLOAD}), "too_large"),
    ]


# --------------------------------------------------------------------------- traffic plan

ExpectedKind: TypeAlias = Literal["rating", "presence", "status", "ignored", "bad", "nps", "complaint"]


@dataclass(frozen=True, slots=True)
class Expected:
    """What the service should make of a planned message.

    ``value``: the rating, the presence state, ``online``, or the dead-letter reason.
    """

    kind: ExpectedKind
    site: str | None = None
    point: str | None = None
    device_id: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    """One message at ``at`` seconds after the start of the run."""

    at: float
    topic: str
    payload: bytes
    qos: int
    retain: bool
    expect: Expected

    @property
    def message(self) -> Message:
        return (self.topic, self.payload, self.qos, self.retain)


@dataclass(slots=True)
class _Session:
    site: str
    point: str
    device: DeviceConfig
    value: str | None  # None: the client leaves without rating
    ticket: str
    rate_at: float
    end_at: float
    followups: int  # messages a press of this device drags along (the zigbee2mqtt reset)
    rated: bool = False

    @property
    def due(self) -> float:
        return self.end_at if self.rated or self.value is None else self.rate_at

    @property
    def steps_left(self) -> int:
        return 1 if self.rated or self.value is None else 2 + self.followups


class _Plan:
    """What every traffic plan answers; each subclass says what its ``schedule`` holds."""

    __slots__ = ()
    rate: float
    duration: float

    @property
    def count(self) -> int:
        """How many messages the plan sends."""
        return max(1, round(self.rate * self.duration))

    def messages(self, start: datetime) -> Iterator[Message]:
        """The ``(topic, payload, qos, retain)`` tuples in order."""
        for item in self.schedule(start):
            yield item.message

    def schedule(self, start: datetime) -> list[Planned]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class TrafficPlan(_Plan):
    """Realistic traffic for the points the given devices sit at.

    ``rate`` messages a second for ``duration`` seconds. With ``presence`` each client visit
    is presence start → (a rating, with probability ``response_share``) → presence end at one
    point; without it ratings come alone. ``negative_share`` of ratings are bad,
    ``bad_share`` of messages are invalid payloads (:func:`bad_payloads`). A zigbee2mqtt press
    is followed by Home Assistant's reset when ``ha_reset``; availability heartbeats fill slots
    when no point can act. When the points cannot sustain ``rate`` with visits of
    ``session_seconds``, visits are shortened, never reordered. One device presses at most
    every :data:`MIN_PRESS_GAP` seconds, so no intended press collapses into another's
    dedupe bucket. The same ``seed`` and start time give the same plan; ids and Shelly gen1
    counters derive from the start time, so a rerun is not deduplicated as a replay.
    """

    devices: Sequence[DeviceConfig]
    root: str = "loyalty/v1"
    rate: float = 10.0
    duration: float = 60.0
    negative_share: float = 0.2
    bad_share: float = 0.0
    presence: bool = True
    seed: int = 0
    response_share: float = 0.8
    session_seconds: tuple[float, float] = (3.0, 20.0)
    ha_reset: bool = True
    _points: tuple[tuple[str, str, tuple[DeviceConfig, ...]], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError("rate and duration must be positive")
        for name in ("negative_share", "bad_share", "response_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1")
        by_point: dict[tuple[str, str], list[DeviceConfig]] = {}
        for device in self.devices:
            if device.point and device_values(device):
                by_point.setdefault((device.site, device.point), []).append(device)
        if not by_point:
            raise ValueError("no device in the plan can send a rating")
        object.__setattr__(
            self, "_points", tuple((site, point, tuple(devs)) for (site, point), devs in by_point.items())
        )

    def schedule(self, start: datetime) -> list[Planned]:
        """The whole run: every message with its time offset and intended meaning."""
        return _Scheduler(self, start.astimezone(UTC)).run()


class _Scheduler:
    """One pass over the time slots; kept apart so :class:`TrafficPlan` stays plain data."""

    def __init__(self, plan: TrafficPlan, start: datetime) -> None:
        self.plan = plan
        self.start = start
        self.rng = random.Random(plan.seed)
        self.out: list[Planned] = []
        self.open: dict[tuple[str, str], _Session] = {}
        self.followups: list[Planned] = []
        self.last_press: dict[str, float] = {}
        self.counters: dict[tuple[str, int], int] = {}
        self.counter_base = int(start.timestamp() * 10)  # grows faster than a device can press
        self.id_stem = f"sim{int(start.timestamp() * 1000)}"
        self.seq = 0
        self.tickets = 0

    def run(self) -> list[Planned]:
        plan, rng = self.plan, self.rng
        count = plan.count
        for i in range(count):
            t = i / plan.rate
            remaining = count - i
            pending = len(self.followups) + sum(s.steps_left for s in self.open.values())
            if self.followups:
                follow = self.followups.pop(0)
                self.out.append(_at(follow, t))
                continue
            if plan.bad_share and remaining > pending and rng.random() < plan.bad_share:
                self._bad(t)
                continue
            forced = remaining <= pending
            session = self._next_session(t, forced=forced)
            if session is not None:
                self._advance(session, t)
            elif plan.presence and remaining > pending + _VISIT_SLOTS and (idle := self._idle_points()):
                self._begin(rng.choice(idle), t)
            elif not plan.presence and (ready := self._ready_presses(t)):
                site, point, device = rng.choice(ready)
                self._press(site, point, device, self._pick_value(device), t)
            elif (session := self._next_session(t, forced=True)) is not None:
                self._advance(session, t)
            else:
                self._heartbeat(t)
        return self.out

    # -- choices

    def _ready(self, device: DeviceConfig, t: float) -> bool:
        return t - self.last_press.get(device.id, -MIN_PRESS_GAP) >= MIN_PRESS_GAP

    def _next_session(self, t: float, *, forced: bool) -> _Session | None:
        """The open visit to advance now; when ``forced`` (slots running out) any visit, and a
        rating its button cannot give yet (pressed under a second ago) is dropped: the client
        left without rating, which happens too."""
        if forced:
            if not self.open:
                return None
            session = min(self.open.values(), key=lambda s: s.due)
            if not (session.rated or session.value is None or self._ready(session.device, t)):
                session.value = None
            return session
        can = [s for s in self.open.values() if s.due <= t and (s.rated or s.value is None or self._ready(s.device, t))]
        return min(can, key=lambda s: s.due) if can else None

    def _idle_points(self) -> list[tuple[str, str, tuple[DeviceConfig, ...]]]:
        return [p for p in self.plan._points if (p[0], p[1]) not in self.open]

    def _ready_presses(self, t: float) -> list[tuple[str, str, DeviceConfig]]:
        return [(s, p, d) for s, p, devs in self.plan._points for d in devs if self._ready(d, t)]

    def _pick_value(self, device: DeviceConfig) -> str:
        roll = self.rng.random()
        negative = self.plan.negative_share
        wanted = "bad" if roll < negative else ("good" if roll < negative + (1 - negative) * 0.75 else "neutral")
        values = device_values(device)
        return wanted if wanted in values else self.rng.choice(values)

    def _next_id(self) -> str:
        self.seq += 1
        return f"{self.id_stem}-{self.seq}"

    def _native_ts(self, moment: datetime) -> datetime | int:
        """Both timestamp forms of the contract, ISO in UTC or Moscow time, or epoch ms."""
        roll = self.rng.random()
        if roll < 1 / 3:
            return int(moment.timestamp() * 1000)
        return moment.astimezone(_OFFSET_MSK if roll < 2 / 3 else UTC)

    # -- emitters

    def _emit(self, t: float, message: Message, expect: Expected) -> None:
        topic, payload, qos, retain = message
        self.out.append(Planned(t, topic, payload, qos, retain, expect))

    def _begin(self, point: tuple[str, str, tuple[DeviceConfig, ...]], t: float) -> None:
        site, code, devices = point
        low, high = self.plan.session_seconds
        dwell = self.rng.uniform(low, high)
        device = self.rng.choice(devices)
        value = self._pick_value(device) if self.rng.random() < self.plan.response_share else None
        self.tickets += 1
        ticket = f"{'ABC'[self.tickets % 3]}{self.tickets % 1000:03d}"
        followups = 1 if device.kind == "zigbee2mqtt" and self.plan.ha_reset else 0
        rate_at = t + dwell * self.rng.uniform(0.6, 0.95)
        session = _Session(site, code, device, value, ticket, rate_at, t + dwell, followups)
        self.open[(site, code)] = session
        self._presence(session, "start", t)

    def _advance(self, session: _Session, t: float) -> None:
        if session.rated or session.value is None:
            del self.open[(session.site, session.point)]
            self._presence(session, "end", t)
        else:
            session.rated = True
            self._press(session.site, session.point, session.device, session.value, t)

    def _presence(self, session: _Session, state: str, t: float) -> None:
        moment = self.start + timedelta(seconds=t)
        payload = native_presence(
            event_id=self._next_id(), ts=self._native_ts(moment), state=state, ticket=session.ticket
        )
        topic = f"{self.plan.root}/{session.site}/{session.point}/presence"
        self._emit(t, (topic, payload, 1, False), Expected("presence", session.site, session.point, None, state))

    def _press(self, site: str, point: str, device: DeviceConfig, value: str, t: float) -> None:
        moment = self.start + timedelta(seconds=t)
        self.last_press[device.id] = t
        cnt = 0
        if is_shelly_gen1(device):
            key = press_key(device, value) or ""
            channel = int(key.rpartition(".")[0].partition(":")[2])
            cnt = self.counters.get((device.id, channel), self.counter_base) + 1
            self.counters[(device.id, channel)] = cnt
        if device.kind == "native":
            payload = native_rating(event_id=self._next_id(), ts=self._native_ts(moment), device=device.id, value=value)
            message: Message = (f"{self.plan.root}/{site}/{point}/rating", payload, 1, False)
        else:
            message = device_press(device, value, moment, root=self.plan.root, event_cnt=cnt)
        self._emit(t, message, Expected("rating", site, point, device.id, value))
        if device.kind == "zigbee2mqtt" and self.plan.ha_reset:
            self.followups.append(
                Planned(t, message[0], Z2M_HA_RESET, 1, False, Expected("ignored", site, point, device.id))
            )

    def _heartbeat(self, t: float) -> None:
        device = self.rng.choice([d for _, _, devs in self.plan._points for d in devs])
        message = device_online(device, True, root=self.plan.root)
        self._emit(t, message, Expected("status", device.site, None, device.id, "online"))

    def _bad(self, t: float) -> None:
        site, point, _ = self.rng.choice(self.plan._points)
        bad = self.rng.choice(bad_payloads(self.plan.root, site, point, self.start + timedelta(seconds=t)))
        self._emit(t, (bad.topic, bad.payload, 1, False), Expected("bad", site, point, None, bad.reason))


def _at(item: Planned, t: float) -> Planned:
    return Planned(t, item.topic, item.payload, item.qos, item.retain, item.expect)


# --------------------------------------------------------------------------- exit kiosk

KIOSK_REASONS: Final = ("wait", "rude", "incompetent", "price", "stock")
"""The reason codes of the example org file (tests/fixtures/org.yaml)."""
_KIOSK_COMMENTS: Final = (
    "Долго ждал в очереди", "Консультант не смог ответить", "Нет нужной модели", "Очень дорого",
    "Спасибо, всё быстро", None, None, None,
)
_COMPLAINTS: Final = (
    "Заказ потерян, никто не перезвонил", "Сотрудник нагрубил на кассе", "Вернули деньги не полностью",
)
_NAMES: Final = ("Иван Петров", "Мария Смирнова", "Ольга К.", "Сергей")


def kiosk_feedback(
    *,
    event_id: str,
    ts: datetime | int,
    kind: str,
    value: str | int | None,
    reasons: Sequence[str] = (),
    text: str | None = None,
    point: str | None = None,
    staff: str | None = None,
    name: str | None = None,
    contact: str | None = None,
    consent: bool | None = None,
) -> bytes:
    """A kiosk's ``{root}/{site}/kiosk/{device}/feedback`` payload (absent fields left out)."""
    body: dict[str, Any] = {"id": event_id, "ts": format_ts(ts), "kind": kind}
    if value is not None:
        body["value"] = value
    if point is not None:
        body["point"] = point
    if staff is not None:
        body["staff"] = staff
    if reasons:
        body["reasons"] = list(reasons)
    if text is not None:
        body["text"] = text
    if name is not None:
        body["name"] = name
    if contact is not None:
        body["contact"] = contact
    if consent is not None:
        body["consent"] = consent
    return _dumps(body)


def kiosk_topic(device: DeviceConfig, root: str) -> str:
    return f"{root}/{device.site}/kiosk/{device.id}/feedback"


@dataclass(frozen=True, slots=True)
class KioskPlan(_Plan):
    """Exit-kiosk traffic: ratings (bad and neutral ones with one or two reasons and now and
    then a comment), NPS answers 0..10 and the occasional complaint, with the customer's
    consent and contact (``consent_share``) or without either. ``bad_share`` of messages are
    payloads the service must dead-letter (an NPS of 11, a consent without a contact). Same
    interface as :class:`TrafficPlan` (``count``, ``schedule``), so :func:`run_simulation`
    plays it. ``Expected.value`` is the rating, the NPS score as text, ``complaint`` or the
    dead-letter reason."""

    devices: Sequence[DeviceConfig]
    root: str = "loyalty/v1"
    rate: float = 2.0
    duration: float = 60.0
    negative_share: float = 0.2
    nps_share: float = 0.25
    complaint_share: float = 0.05
    consent_share: float = 0.6
    bad_share: float = 0.0
    reasons: Sequence[str] = KIOSK_REASONS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError("rate and duration must be positive")
        for name in ("negative_share", "nps_share", "complaint_share", "consent_share", "bad_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be within 0..1")
        if self.nps_share + self.complaint_share > 1:
            raise ValueError("nps_share + complaint_share must be at most 1")
        if not self.kiosks:
            raise ValueError("no kiosk in the plan: add a device of kind kiosk to the org")

    @property
    def kiosks(self) -> list[DeviceConfig]:
        return [d for d in self.devices if d.kind == "kiosk" and d.point]

    def schedule(self, start: datetime) -> list[Planned]:
        start = start.astimezone(UTC)
        rng = random.Random(self.seed)
        stem = f"ksim{int(start.timestamp() * 1000)}"
        kiosks = self.kiosks
        out: list[Planned] = []
        for i in range(self.count):
            t = i / self.rate
            device = rng.choice(kiosks)
            ts = start + timedelta(seconds=t)
            event_id = f"{stem}-{i + 1}"
            topic = kiosk_topic(device, self.root)
            site, point = device.site, device.point
            if self.bad_share and rng.random() < self.bad_share:
                if rng.random() < 0.5:
                    payload = kiosk_feedback(event_id=event_id, ts=ts, kind="nps", value=11)
                    expect = Expected("bad", site, point, device.id, "bad_value")
                else:
                    payload = kiosk_feedback(
                        event_id=event_id, ts=ts, kind="complaint", value=None, text=rng.choice(_COMPLAINTS),
                        name=rng.choice(_NAMES), consent=True,
                    )
                    expect = Expected("bad", site, point, device.id, "complaint_no_contact")
                out.append(Planned(t, topic, payload, 1, False, expect))
                continue
            roll = rng.random()
            if roll < self.complaint_share:
                consent = rng.random() < self.consent_share
                payload = kiosk_feedback(
                    event_id=event_id, ts=ts, kind="complaint", value="bad", text=rng.choice(_COMPLAINTS),
                    name=rng.choice(_NAMES) if consent or rng.random() < 0.3 else None,
                    contact=f"+7999{rng.randrange(10**7):07d}" if consent else None, consent=consent,
                )
                expect = Expected("complaint", site, point, device.id, "complaint")
            elif roll < self.complaint_share + self.nps_share:
                score = rng.choices(range(11), weights=(1, 1, 1, 1, 2, 3, 4, 8, 14, 16, 14))[0]
                text = rng.choice(_KIOSK_COMMENTS) if score <= 6 else None
                payload = kiosk_feedback(event_id=event_id, ts=ts, kind="nps", value=score, text=text)
                expect = Expected("nps", site, point, device.id, str(score))
            else:
                value_roll = rng.random()
                value = "bad" if value_roll < self.negative_share else (
                    "good" if value_roll < self.negative_share + (1 - self.negative_share) * 0.75 else "neutral"
                )
                reasons = rng.sample(list(self.reasons), k=min(len(self.reasons), rng.choice((1, 1, 2)))) if value != "good" and self.reasons else []
                text = rng.choice(_KIOSK_COMMENTS) if value != "good" else None
                payload = kiosk_feedback(event_id=event_id, ts=ts, kind="rating", value=value, reasons=reasons, text=text)
                expect = Expected("rating", site, point, device.id, value)
            out.append(Planned(t, topic, payload, 1, False, expect))
        return out


async def run_simulation(
    publish: Publish,
    plan: TrafficPlan | KioskPlan,
    clock_sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    progress: Callable[[int, int], None] | None = None,
    *,
    start: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Planned]:
    """Publish the plan paced at its rate; returns what was sent (with intents) for checking.

    Delays are measured against ``clock`` so slow publishing does not stretch the run; tests
    pass a fake clock and a ``clock_sleep`` that advances it.
    """
    planned = plan.schedule(start or datetime.now(UTC))
    total = len(planned)
    t0 = clock()
    for done, item in enumerate(planned, 1):
        delay = item.at - (clock() - t0)
        if delay > 0:
            await clock_sleep(delay)
        await publish(item.topic, item.payload, item.qos, item.retain)
        if progress is not None:
            progress(done, total)
    return planned


__all__ = [
    "Z2M_HA_RESET",
    "BadPayload",
    "Expected",
    "KIOSK_REASONS",
    "KioskPlan",
    "Message",
    "Planned",
    "Publish",
    "TrafficPlan",
    "bad_payloads",
    "device_online",
    "device_press",
    "device_values",
    "format_ts",
    "kiosk_feedback",
    "kiosk_topic",
    "native_battery",
    "native_presence",
    "native_rating",
    "native_status",
    "press_key",
    "run_simulation",
    "shelly_gen1_input",
    "shelly_gen2_notify",
    "shelly_online",
    "tasmota_lwt",
    "tasmota_result",
    "z2m_availability",
    "z2m_press",
    "z2m_state",
]
