"""Arbitrary payloads on every topic the service listens to end as dead letters, not as a stop."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import aiomqtt
from hypothesis import HealthCheck, given, settings, strategies as st

from bot.models import DeadLetter, Rating
from tests.e2e.conftest import STAFF_CHAT, Harness

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=12,
)
NEAR_VALID = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=120), st.integers(), st.none()),
        "ts": st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.just("2999-01-01T00:00:00+00:00")),
        "device": st.one_of(st.text(max_size=20), st.integers()),
        "value": st.one_of(st.sampled_from(["good", "bad", "neutral", "BAD", ""]), st.integers()),
        "state": st.sampled_from(["start", "end", "x"]),
        "action": st.one_of(st.text(max_size=12), st.none()),
        "Button3": st.one_of(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2), st.text()),
        "params": JSON_VALUES,
    },
)
PAYLOADS = st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode()), NEAR_VALID.map(lambda v: json.dumps(v).encode()))


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python reads them, JSON has none


def _is_json(payload: bytes) -> bool:
    """Standard JSON (RFC 8259) in UTF-8, as the contract says devices send."""
    try:
        json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return False
    return True


def generate(topics: list[str]) -> list[tuple[str, bytes]]:
    """Hypothesis draws the messages; they are then published for real."""
    drawn: list[tuple[str, bytes]] = []

    @settings(max_examples=150, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(topic=st.sampled_from(topics), payload=PAYLOADS)
    def draw(topic: str, payload: bytes) -> None:
        drawn.append((topic, payload))

    draw()
    return drawn


async def test_fuzzed_payloads_become_dead_letters_and_good_events_still_flow(harness: Harness) -> None:
    emu = harness.emulator
    app = await harness.start()
    z2m, tasmota, shelly = harness.device("zigbee2mqtt"), harness.device("tasmota"), harness.device("shelly")
    topics = [
        f"{harness.root}/MSK-1/W1/rating",
        f"{harness.root}/MSK-1/W2/presence",
        f"{harness.root}/MSK-1/btn/status",
        f"{harness.root}/NOPE/W9/rating",
        z2m["topic"],
        f"stat/{tasmota['topic']}/RESULT",
        f"{shelly['topic']}/events/rpc",
    ]
    messages = generate(topics)
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"fuzz-{uuid.uuid4().hex[:8]}") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
        good = {"id": "after-fuzz", "ts": datetime.now(UTC).isoformat(), "device": "btn-after", "value": "bad"}
        await client.publish(f"{harness.root}/MSK-1/W3/rating", json.dumps(good).encode(), qos=1)

    await emu.wait_for(lambda: [m for m in emu.bot_messages(STAFF_CHAT) if "Окно 3" in m["text"]], timeout=20)
    assert await Rating.filter(event_uid__contains="after-fuzz").count() == 1
    dead = await DeadLetter.all()
    unknown_site = topics[3]
    to_unknown_site = [p for t, p in messages if t == unknown_site]
    assert len([d for d in dead if d.topic == unknown_site]) == len(to_unknown_site)  # every one kept
    not_json_on_rating = [p for t, p in messages if t == topics[0] and not _is_json(p)]
    kept = [bytes(d.payload) for d in dead if d.topic == topics[0] and d.reason == "not_json"]
    assert sorted(kept) == sorted(not_json_on_rating)
    assert {d.reason for d in dead} >= {"not_json", "unknown_point"}
    assert app.ingest.dead_letters == len(dead)
    assert not any(task.done() for task in app.tasks if task.get_name() == "ingest")
    await asyncio.sleep(0)
