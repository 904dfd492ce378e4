"""The simulator plays real devices: its bytes are theirs, and the router reads back its intent."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from devices.contract import DeviceConfig, Event, InboundMessage, PayloadError, PresenceEvent, RatingEvent, StatusEvent
from devices.routing import TopicRouter
from devices.simulator import (
    Z2M_HA_RESET,
    Planned,
    TrafficPlan,
    bad_payloads,
    device_online,
    device_press,
    native_battery,
    native_presence,
    native_rating,
    native_status,
    run_simulation,
    shelly_gen1_input,
    shelly_gen2_notify,
    shelly_online,
    tasmota_lwt,
    tasmota_result,
    z2m_availability,
    z2m_press,
    z2m_state,
)
from tests.unit.test_adapters import (
    NOW,
    ORG_DEVICES,
    ORG_POINTS,
    ROOT,
    SHELLY_GEN1,
    TASMOTA_BUTTON,
    TASMOTA_SWITCH,
    Z2M_OFFLINE,
    Z2M_ONLINE,
    Z2M_PRESS,
    Z2M_RESET,
)


@pytest.fixture(scope="module")
def router() -> TopicRouter:
    return TopicRouter(ROOT, ORG_DEVICES, ORG_POINTS)


def parse(
    router: TopicRouter, topic: str, payload: bytes, *, retained: bool = False, at: datetime = NOW
) -> list[Event]:
    return router.parse(InboundMessage(topic, payload, retained, at))


# --------------------------------------------------------------------------- builders


def test_builders_reproduce_devices_md_bytes() -> None:
    assert z2m_press("single") == Z2M_PRESS
    assert Z2M_HA_RESET == Z2M_RESET
    assert z2m_availability(True) == Z2M_ONLINE and z2m_availability(False) == Z2M_OFFLINE
    assert z2m_availability(True, legacy=True) == b"online"
    assert tasmota_result() == TASMOTA_BUTTON
    assert tasmota_result("Switch1", "ON") == TASMOTA_SWITCH
    assert tasmota_result("POWER", "ON") == b'{"POWER":"ON"}'
    assert (tasmota_lwt(True), tasmota_lwt(False)) == (b"Online", b"Offline")
    assert shelly_gen1_input("S", 73) == SHELLY_GEN1
    assert (shelly_online(True), shelly_online(False)) == (b"true", b"false")
    assert (native_status(True), native_status(False)) == (b"online", b"offline")


def test_shelly_gen2_builder_matches_the_firmware_shape() -> None:
    assert shelly_gen2_notify("shellyplusi4-a8032ab1", [(0, "single_push")], 1741597199.5234) == (
        b'{"src":"shellyplusi4-a8032ab1","dst":"shellyplusi4-a8032ab1/events","method":"NotifyEvent",'
        b'"params":{"ts":1741597199.52,"events":[{"component":"input:0","id":0,"event":"single_push",'
        b'"ts":1741597199.52}]}}'
    )


def test_native_builders_match_the_contract() -> None:
    assert native_rating(event_id="r-1", ts=NOW, device="btn-17", value="good") == (
        b'{"id":"r-1","ts":"2025-03-10T09:00:00.000+00:00","device":"btn-17","value":"good"}'
    )
    assert native_presence(event_id="p-1", ts=1741597200000, state="start", ticket="A017") == (
        b'{"id":"p-1","ts":1741597200000,"state":"start","ticket":"A017"}'
    )
    assert native_battery(87) == b'{"battery":87}'
    with pytest.raises(ValueError):
        native_rating(event_id="r", ts=datetime(2025, 1, 1), device="b", value="good")


def test_z2m_state_update_is_not_a_press(router: TopicRouter) -> None:
    assert b"action" not in z2m_state(battery=97)
    assert parse(router, "zigbee2mqtt/desk2", z2m_state(battery=97)) == [StatusEvent("MSK-1", "desk2-remote", None, 97, NOW)]


@pytest.mark.parametrize("device", ORG_DEVICES, ids=lambda d: d.id)
@pytest.mark.parametrize("value", ["good", "neutral", "bad"])
def test_device_press_parses_back_to_its_value(router: TopicRouter, device: DeviceConfig, value: str) -> None:
    topic, payload, _qos, retain = device_press(device, value, NOW, root=ROOT, event_id="x-1", event_cnt=9)
    [event] = [e for e in parse(router, topic, payload, retained=retain) if not is_sighting(e)]
    assert isinstance(event, RatingEvent)
    assert (event.device_id, event.point, event.value) == (device.id, device.point, value)


@pytest.mark.parametrize("device", ORG_DEVICES, ids=lambda d: d.id)
def test_device_online_parses_back(router: TopicRouter, device: DeviceConfig) -> None:
    topic, payload, _qos, retain = device_online(device, False, root=ROOT)
    assert retain
    [event] = parse(router, topic, payload, retained=retain)
    assert event == StatusEvent(device.site, device.id, False, None, NOW)


def test_device_press_without_mapping_is_refused() -> None:
    device = DeviceConfig("one", "zigbee2mqtt", "MSK-1", "W2", actions={"single": "good"})
    with pytest.raises(ValueError):
        device_press(device, "bad", NOW, root=ROOT)


def test_bad_payloads_are_dead_lettered_with_their_reason(router: TopicRouter) -> None:
    examples = bad_payloads(ROOT, "MSK-1", "W1", NOW)
    assert {"not_json", "bad_field", "bad_value", "unknown_point", "future_ts", "bad_ts", "too_large"} <= {
        b.reason for b in examples
    }
    for bad in examples:
        with pytest.raises(PayloadError) as caught:
            parse(router, bad.topic, bad.payload)
        assert caught.value.reason == bad.reason, bad.label


# --------------------------------------------------------------------------- traffic plan


def is_sighting(event: object) -> bool:
    """The status a zigbee2mqtt state message carries besides its press (device health)."""
    return isinstance(event, StatusEvent) and event.online is None


def replay(router: TopicRouter, planned: list[Planned], start: datetime) -> list[RatingEvent | PresenceEvent]:
    """Deliver each planned message as a live subscriber would, and check it against its intent."""
    stored: list[RatingEvent | PresenceEvent] = []
    for item in planned:
        received = start + timedelta(seconds=item.at)
        message = InboundMessage(item.topic, item.payload, item.retain, received)
        expect = item.expect
        if expect.kind == "bad":
            with pytest.raises(PayloadError) as caught:
                router.parse(message)
            assert caught.value.reason == expect.value, item
            continue
        events = [e for e in router.parse(message) if not is_sighting(e)]
        if expect.kind == "ignored":
            assert events == [], item
            continue
        [event] = events
        if expect.kind == "rating":
            assert isinstance(event, RatingEvent), item
            assert (event.site, event.point, event.device_id, event.value) == (
                expect.site,
                expect.point,
                expect.device_id,
                expect.value,
            )
            assert abs(event.ts - received) < timedelta(milliseconds=10)
            stored.append(event)
        elif expect.kind == "presence":
            assert isinstance(event, PresenceEvent), item
            assert (event.site, event.point, event.state) == (expect.site, expect.point, expect.value)
            assert abs(event.ts - received) < timedelta(milliseconds=10)
            stored.append(event)
        else:
            assert isinstance(event, StatusEvent) and event.online is True and event.device_id == expect.device_id
    return stored


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("presence", [True, False])
def test_plan_parses_back_into_the_intended_events(router: TopicRouter, seed: int, presence: bool) -> None:
    plan = TrafficPlan(ORG_DEVICES, rate=8, duration=60, bad_share=0.1, presence=presence, seed=seed)
    planned = plan.schedule(NOW)
    stored = replay(router, planned, NOW)
    kinds = Counter(p.expect.kind for p in planned)
    assert kinds["rating"] > 0 and kinds["bad"] > 0 and (kinds["presence"] > 0) == presence
    uids = [e.event_uid for e in stored]
    assert len(uids) == len(set(uids))  # no intended event is swallowed as a duplicate


@pytest.mark.parametrize("seed", [1, 2])
def test_compressed_high_rate_plan_still_parses_back(router: TopicRouter, seed: int) -> None:
    planned = TrafficPlan(ORG_DEVICES, rate=100, duration=10, bad_share=0.05, seed=seed).schedule(NOW)
    stored = replay(router, planned, NOW)
    assert len({e.event_uid for e in stored}) == len(stored) > 100


def test_every_device_kind_takes_part(router: TopicRouter) -> None:
    planned = TrafficPlan(ORG_DEVICES, rate=5, duration=120, seed=4).schedule(NOW)
    assert {p.expect.device_id for p in planned if p.expect.kind == "rating"} == {d.id for d in ORG_DEVICES}


def test_presence_visits_are_start_rating_end(router: TopicRouter) -> None:
    planned = TrafficPlan(ORG_DEVICES, rate=4, duration=120, seed=5, session_seconds=(4, 12)).schedule(NOW)
    state: dict[tuple[str, str], str] = {}
    for item in planned:
        key = (item.expect.site or "", item.expect.point or "")
        if item.expect.kind == "presence":
            previous = state.get(key, "end")
            assert (previous, item.expect.value) in {("end", "start"), ("start", "end"), ("rated", "end")}
            state[key] = item.expect.value or ""
        elif item.expect.kind == "rating":
            assert state.get(key) == "start", "a rating outside a client's visit"
            state[key] = "rated"


@pytest.mark.parametrize(("rate", "duration"), [(1, 30), (4, 30), (20, 10), (50, 5)])
@pytest.mark.parametrize("seed", range(10))
def test_every_visit_begun_is_ended_within_the_plan(rate: float, duration: float, seed: int) -> None:
    planned = TrafficPlan(ORG_DEVICES, rate=rate, duration=duration, bad_share=0.1, seed=seed).schedule(NOW)
    last = {p.topic: p.expect.value for p in planned if p.expect.kind == "presence"}
    assert last and set(last.values()) == {"end"}


def test_presence_carries_the_same_ticket_at_start_and_end() -> None:
    planned = TrafficPlan(ORG_DEVICES, rate=4, duration=60, seed=6).schedule(NOW)
    open_tickets: dict[str, bytes] = {}
    for item in planned:
        if item.expect.kind != "presence":
            continue
        ticket = item.payload.split(b'"ticket":')[1]
        if item.expect.value == "start":
            open_tickets[item.topic] = ticket
        else:
            assert open_tickets.pop(item.topic) == ticket


def test_plan_rate_duration_and_order() -> None:
    plan = TrafficPlan(ORG_DEVICES, rate=10, duration=30, seed=7)
    planned = plan.schedule(NOW)
    assert len(planned) == plan.count == 300
    offsets = [p.at for p in planned]
    assert offsets == sorted(offsets) and offsets[-1] < 30


def test_negative_share_is_respected() -> None:
    planned = TrafficPlan(ORG_DEVICES, rate=50, duration=100, negative_share=0.3, presence=False, seed=8).schedule(NOW)
    values = Counter(p.expect.value for p in planned if p.expect.kind == "rating")
    share = values["bad"] / sum(values.values())
    assert 0.25 < share < 0.35


def test_same_seed_and_start_give_the_same_plan() -> None:
    plan = TrafficPlan(ORG_DEVICES, rate=5, duration=20, bad_share=0.1, seed=9)
    assert plan.schedule(NOW) == plan.schedule(NOW)
    assert list(plan.messages(NOW)) == [p.message for p in plan.schedule(NOW)]


def test_a_rerun_is_not_deduplicated_against_the_previous_run(router: TopicRouter) -> None:
    plan = TrafficPlan(ORG_DEVICES, rate=5, duration=30, seed=10)
    later = NOW + timedelta(minutes=1)
    first = {e.event_uid for e in replay(router, plan.schedule(NOW), NOW)}
    second = {e.event_uid for e in replay(router, plan.schedule(later), later)}
    assert first and not first & second


def test_plan_needs_a_device_that_can_rate() -> None:
    with pytest.raises(ValueError):
        TrafficPlan([DeviceConfig("mute", "zigbee2mqtt", "MSK-1", "W2")])
    with pytest.raises(ValueError):
        TrafficPlan(ORG_DEVICES, negative_share=1.5)


# --------------------------------------------------------------------------- run_simulation


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_run_simulation_publishes_the_plan_at_its_pace() -> None:
    plan = TrafficPlan(ORG_DEVICES, rate=4, duration=10, seed=11)
    clock = FakeClock()
    sent: list[tuple[str, bytes, int, bool]] = []
    progress: list[tuple[int, int]] = []

    async def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        sent.append((topic, payload, qos, retain))

    planned = await run_simulation(
        publish, plan, clock.sleep, lambda done, total: progress.append((done, total)), start=NOW, clock=clock
    )
    assert sent == [p.message for p in plan.schedule(NOW)] == [p.message for p in planned]
    assert clock.now == pytest.approx(planned[-1].at)
    assert progress[-1] == (40, 40) and len(progress) == 40


async def test_run_simulation_does_not_sleep_when_publishing_is_behind() -> None:
    plan = TrafficPlan(ORG_DEVICES, rate=100, duration=1, seed=12)
    clock = FakeClock()

    async def slow_publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        clock.now += 0.05  # five times slower than the plan

    await run_simulation(slow_publish, plan, clock.sleep, start=NOW, clock=clock)
    assert clock.sleeps == []


def test_plan_start_time_may_be_any_zone() -> None:
    local = NOW.astimezone(datetime.now().astimezone().tzinfo)
    plan = TrafficPlan(ORG_DEVICES, rate=2, duration=5, seed=13)
    assert plan.schedule(local) == plan.schedule(NOW.astimezone(UTC))
