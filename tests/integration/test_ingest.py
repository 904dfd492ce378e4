"""The ingest loop against a real Mosquitto and a real SQLite database.

Most tests use the broker at 127.0.0.1:1883 with a unique topic root, client id and
device topics per test, so they can run next to other test runs. The crash and throughput
tests start a private broker from ``devices/mosquitto.conf`` (the file we ship) so its
queue limits, not the system broker's, are what is tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sqlite3
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import bot.db
from bot.clock import SystemClock
from bot.directory import Directory
from bot.models import DeadLetter, Rating
from bot.org import import_org, parse_org_yaml
from bot.ratings import BatchResult, RatingService, Received
from bot.settings import Settings
from bot.texts import Texts, make_i18n
from devices.contract import DeviceConfig
from devices.ingest import MqttIngest
from devices.routing import TopicRouter
from devices.simulator import bad_payloads, device_press, native_rating
from tests.mosquitto import PrivateBroker

REPO = Path(__file__).resolve().parents[2]
ORG_FILE = REPO / "tests" / "fixtures" / "org.yaml"
HOST = "127.0.0.1"
SYSTEM_PORT = 1883

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- helpers


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``check`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


def unique_org(tag: str) -> str:
    """The fixture org with off-the-shelf device topics made unique to this test."""
    data = yaml.safe_load(ORG_FILE.read_text(encoding="utf-8"))
    for device in data["devices"]:
        if device.get("topic"):
            device["topic"] = f"{device['topic']}-{tag}"
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


async def drop_session(client_id: str, port: int = SYSTEM_PORT) -> None:
    """Connect once with a clean start and expiry 0 so the broker forgets the test's session."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(
            HOST, port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5, clean_start=True,
            properties=Properties(PacketTypes.CONNECT),  # type: ignore[no-untyped-call]
        ):
            pass



@dataclass
class World:
    """One test's database, org, settings and rating service."""

    tag: str
    db_path: Path
    db_url: str
    settings: Settings
    directory: Directory
    service: RatingService

    @property
    def root(self) -> str:
        return self.settings.mqtt_topic_root

    def router(self) -> TopicRouter:
        return TopicRouter(self.root, self.directory.devices, self.directory.points.keys())

    def device(self, device_id: str) -> DeviceConfig:
        return next(d for d in self.directory.devices if d.id == device_id)

    def ingest(self, store: Callable[[list[Received]], Awaitable[BatchResult]] | None = None, **kw: Any) -> MqttIngest:
        kw.setdefault("store_retry_initial", 0.05)
        kw.setdefault("reconnect_initial", 0.1)
        return MqttIngest(self.settings, self.router, store or self.service.store_batch, SystemClock(), **kw)

    def with_port(self, port: int) -> None:
        self.settings = self.settings.model_copy(update={"mqtt_url": f"mqtt://{HOST}:{port}"})


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    tag = uuid.uuid4().hex[:10]
    db_path = tmp_path / "loyalty.sqlite3"
    db_url = f"sqlite://{db_path}"
    await bot.db.upgrade(db_url)
    await bot.db.connect(db_url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        mqtt_url=f"mqtt://{HOST}:{SYSTEM_PORT}",
        mqtt_topic_root=f"t{tag}/v1",
        mqtt_client_id=f"test-ingest-{tag}",
        ingest_batch_size=200,
        ingest_batch_wait_ms=20,
    )
    await import_org(parse_org_yaml(unique_org(tag), source="org.yaml"))
    directory = await Directory.load()
    service = RatingService(settings, SystemClock(), Texts(make_i18n()), lambda: directory)
    try:
        yield World(tag, db_path, db_url, settings, directory, service)
    finally:
        await bot.db.close()
        await drop_session(settings.mqtt_client_id)


@contextlib.asynccontextmanager
async def running(ingest: MqttIngest) -> AsyncIterator[MqttIngest]:
    """Run ``ingest`` until the block ends; the stop is the clean one (store, ack, disconnect)."""
    stop = asyncio.Event()
    task = asyncio.create_task(ingest.run(stop))
    try:
        await asyncio.wait_for(asyncio.shield(ingest.connected.wait()), 10)
        yield ingest
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def publisher(port: int = SYSTEM_PORT) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(HOST, port, identifier=f"test-pub-{uuid.uuid4().hex[:10]}") as client:
        client.pending_calls_threshold = 10**6
        yield client


async def publish_many(client: aiomqtt.Client, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    """QoS 1 publishes in parallel chunks: each waits for its PUBACK, so all are in the broker."""
    for start in range(0, len(messages), 200):
        await asyncio.gather(*(client.publish(t, p, qos=qos) for t, p in messages[start : start + 200]))


def ratings_payloads(root: str, prefix: str, n: int, value: str = "good") -> list[tuple[str, bytes]]:
    """``n`` native ratings at MSK-1/W1, one press per button (``btn-00000`` …), as a busy
    network of desks sends them; thousands of presses of one button inside the repeat-press
    window would measure that rule's look-back query instead of the ingest loop."""
    now = datetime.now(UTC)
    return [
        (f"{root}/MSK-1/W1/rating", native_rating(event_id=f"{prefix}{i:05d}", ts=now, device=f"btn-{i:05d}", value=value))
        for i in range(n)
    ]


def rating_uid(prefix: str, i: int) -> str:
    return f"native:MSK-1:btn-{i:05d}:{prefix}{i:05d}"


async def rating_count(prefix: str = "") -> int:
    return await Rating.filter(event_uid__contains=prefix).count()


async def _count_is(n: int, prefix: str = "") -> bool:
    return await rating_count(prefix) >= n


# --------------------------------------------------------------------------- 1


async def test_native_and_off_the_shelf_presses_are_stored_and_a_duplicate_once(world: World) -> None:
    now = datetime.now(UTC)
    root = world.root
    first = native_rating(event_id="e1", ts=now, device="btn-17", value="good")
    native = [
        (f"{root}/MSK-1/W1/rating", first, 1, False),
        (f"{root}/EKB-1/W1/rating", native_rating(event_id="e2", ts=now, device="ekb-btn-1", value="neutral"), 1, False),
    ]
    presses = [
        device_press(world.device("desk2-remote"), "bad", now, root=root),  # zigbee2mqtt, QoS 1
        device_press(world.device("desk3-tasmota"), "neutral", now, root=root),  # Tasmota, QoS 0
        device_press(world.device("desk4-shelly"), "good", now, root=root),  # Shelly gen2, QoS 1
    ]
    assert [qos for _, _, qos, _ in presses] == [1, 0, 1]
    duplicate = (f"{root}/MSK-1/W1/rating", first, 1, False)  # a QoS 1 redelivery / device retry
    messages = [*native, *presses, duplicate]

    async with running(world.ingest()) as ingest, publisher() as pub:
        for topic, payload, qos, retain in messages:
            await pub.publish(topic, payload, qos=qos, retain=retain)
        await eventually(lambda: ingest.messages >= len(messages), what="all messages handled")

    rows = await Rating.all().order_by("id").values_list("event_uid", "device_id", "office__code", "point__code", "value")
    got = sorted((device, office, point, str(getattr(value, "value", value))) for _, device, office, point, value in rows)
    assert got == sorted(
        [
            ("btn-17", "MSK-1", "W1", "good"),
            ("ekb-btn-1", "EKB-1", "W1", "neutral"),
            ("desk2-remote", "MSK-1", "W2", "bad"),
            ("desk3-tasmota", "MSK-1", "W3", "neutral"),
            ("desk4-shelly", "MSK-1", "W4", "good"),
        ]
    )
    assert sum(1 for uid, *_ in rows if uid == "native:MSK-1:btn-17:e1") == 1
    assert ingest.stored == 6 and ingest.dead_letters == 0  # 5 ratings + the zigbee2mqtt state's battery (device health)
    assert await DeadLetter.all().count() == 0


# --------------------------------------------------------------------------- 2


async def test_bad_payloads_become_dead_letters_and_the_loop_goes_on(world: World) -> None:
    now = datetime.now(UTC)
    bad = bad_payloads(world.root, "MSK-1", "W1", now)
    good = native_rating(event_id="after-bad", ts=now, device="btn-17", value="good")

    async with running(world.ingest()) as ingest, publisher() as pub:
        for item in bad:
            await pub.publish(item.topic, item.payload, qos=1)
        await pub.publish(f"{world.root}/MSK-1/W1/rating", good, qos=1)
        await eventually(lambda: ingest.messages >= len(bad) + 1, what="all messages handled")

    letters = await DeadLetter.all().values_list("topic", "reason", "detail")
    assert sorted(reason for _, reason, _ in letters) == sorted(item.reason for item in bad)
    assert all(detail for _, _, detail in letters)
    assert {topic for topic, _, _ in letters} == {item.topic for item in bad}
    assert await Rating.filter(event_uid="native:MSK-1:btn-17:after-bad").count() == 1
    assert ingest.dead_letters == len(bad)


# --------------------------------------------------------------------------- 3


async def test_events_published_while_down_arrive_once_through_the_persistent_session(world: World) -> None:
    async with running(world.ingest()):
        pass  # the first start creates the session and its subscriptions; then a clean stop

    payloads = ratings_payloads(world.root, "down-", 300)
    async with publisher() as pub:
        await publish_many(pub, payloads)

    async with running(world.ingest()) as ingest:
        await eventually(lambda: _count_is(300, "down-"), what="300 ratings stored")
        await eventually(lambda: ingest.messages >= 300, what="300 messages acknowledged")
    assert await rating_count("down-") == 300
    assert len(set(await Rating.all().values_list("event_uid", flat=True))) == 300
    assert ingest.duplicates == 0


# --------------------------------------------------------------------------- 4a


async def test_a_failed_store_is_not_acknowledged_and_is_retried(world: World) -> None:
    """Phase 1: the database is down for the whole run: nothing stored, so nothing may be
    acknowledged. Phase 2: a restart gets every message again (the broker still holds them
    unacknowledged); the first two attempts fail as well and the same batch is retried."""
    calls: list[int] = []

    async def down(batch: list[Received]) -> BatchResult:
        calls.append(len(batch))
        raise ConnectionError("database is down")

    payloads = ratings_payloads(world.root, "retry-", 50)
    async with running(world.ingest(down)) as failing, publisher() as pub:
        await publish_many(pub, payloads)
        await eventually(lambda: failing.store_failures >= 3, what="three failed store attempts")
    assert failing.messages == 0 and await rating_count("retry-") == 0
    assert len(set(calls)) == 1, f"the same batch is retried, not a new one each time: {calls}"

    attempts = 0

    async def flaky(batch: list[Received]) -> BatchResult:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ConnectionError("database is still warming up")
        return await world.service.store_batch(batch)

    async with running(world.ingest(flaky)) as ingest:
        await eventually(lambda: _count_is(50, "retry-"), what="50 ratings stored after the retries")
        await eventually(lambda: ingest.messages >= 50, what="50 messages acknowledged")
    assert await rating_count("retry-") == 50
    assert ingest.store_failures == 2
    assert ingest.dead_letters == 0


# --------------------------------------------------------------------------- private broker


@pytest_asyncio.fixture
async def broker(tmp_path: Path) -> AsyncIterator[PrivateBroker]:
    data = tmp_path / "mosquitto"
    data.mkdir()
    private = PrivateBroker(data)
    await private.start()
    try:
        yield private
    finally:
        await private.stop()


# --------------------------------------------------------------------------- 5


@pytest.mark.slow
async def test_broker_restarts_reconnect_and_the_queue_survives_qos0_included(world: World, broker: PrivateBroker) -> None:
    """The shipped config's promises: persistence keeps the offline session's queue across a
    broker restart, QoS 0 events (Tasmota, ESPHome) are queued too; and the ingest loop
    reconnects by itself when the broker goes away under it."""
    world.with_port(broker.port)
    async with running(world.ingest()) as ingest:
        async with publisher(broker.port) as pub:
            await publish_many(pub, ratings_payloads(world.root, "before-", 50))
        await eventually(lambda: ingest.messages >= 50, what="50 stored before the broker restart")
        await broker.stop()
        await eventually(lambda: not ingest.connected.is_set(), what="the loss noticed")
        await broker.start()
        await eventually(lambda: ingest.connected.is_set(), what="the reconnect")

    async with publisher(broker.port) as pub:  # the service is down now
        await publish_many(pub, ratings_payloads(world.root, "qos0-", 50), qos=0)
        await publish_many(pub, ratings_payloads(world.root, "qos1-", 50), qos=1)
    await broker.stop()  # and the broker restarts too before the service is back
    await broker.start()

    async with running(world.ingest()) as ingest:
        await eventually(lambda: ingest.messages >= 100, what="the 100 queued events")
    assert await rating_count("before-") == 50
    assert await rating_count("qos0-") == 50
    assert await rating_count("qos1-") == 50


# --------------------------------------------------------------------------- 4b

CHILD = textwrap.dedent(
    """
    import asyncio, logging, signal, sys
    from bot import db
    from bot.clock import SystemClock
    from bot.directory import Directory
    from bot.ratings import RatingService
    from bot.settings import Settings
    from bot.texts import Texts, make_i18n
    from devices.ingest import MqttIngest
    from devices.routing import TopicRouter

    async def main() -> None:
        db_url, mqtt_url, root, client_id, pause = sys.argv[1:6]
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        settings = Settings(_env_file=None, database_url=db_url, mqtt_url=mqtt_url, mqtt_topic_root=root,
                            mqtt_client_id=client_id, ingest_batch_size=50, ingest_batch_wait_ms=10)
        await db.connect(db_url)
        directory = await Directory.load()
        router = TopicRouter(root, directory.devices, directory.points.keys())
        service = RatingService(settings, SystemClock(), Texts(make_i18n()), lambda: directory)

        async def store(batch):
            result = await service.store_batch(batch)
            await asyncio.sleep(float(pause))  # committed, not yet acknowledged: the window a crash hits
            return result

        ingest = MqttIngest(settings, lambda: router, store, SystemClock(), reconnect_initial=0.1)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("LOADED", flush=True)  # imports take seconds: the test starts us early, then says GO
        await loop.run_in_executor(None, sys.stdin.readline)
        task = asyncio.create_task(ingest.run(stop))
        await ingest.connected.wait()
        print("READY", flush=True)
        await task
        await db.close()

    asyncio.run(main())
    """
)


async def spawn_child(world: World, script: Path, port: int, pause: float) -> asyncio.subprocess.Process:
    """Start an ingest process and wait until it has loaded (but not connected)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with script.with_suffix(".log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), world.db_url, f"mqtt://{HOST}:{port}", world.root,
            world.settings.mqtt_client_id, str(pause),
            cwd=str(script.parent), env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
    await expect_line(proc, script, b"LOADED", 30)
    return proc


async def go(proc: asyncio.subprocess.Process, script: Path) -> None:
    """Let a loaded child connect, and wait until it is subscribed."""
    assert proc.stdin is not None
    proc.stdin.write(b"GO\n")
    await proc.stdin.drain()
    await expect_line(proc, script, b"READY", 15)


async def expect_line(proc: asyncio.subprocess.Process, script: Path, word: bytes, timeout: float) -> None:
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    except TimeoutError:
        line = b""
    assert line.strip() == word, f"child did not say {word!r}: {script.with_suffix('.log').read_text()}"


def sqlite_count(path: Path, prefix: str) -> int:
    """Count through a separate connection: what a reader outside the ingest process sees."""
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
        return int(conn.execute("SELECT count(*) FROM rating WHERE event_uid LIKE ?", (f"%{prefix}%",)).fetchone()[0])


@pytest.mark.slow
async def test_sigkill_mid_batch_loses_nothing_and_stores_nothing_twice(world: World, broker: PrivateBroker, tmp_path: Path) -> None:
    private_broker = broker.port
    await bot.db.close()  # the child owns the writes; this process only counts with sqlite3
    script = tmp_path / "ingest_child.py"
    script.write_text(CHILD, encoding="utf-8")
    n = 1000
    payloads = ratings_payloads(world.root, "crash-", n)

    child = await spawn_child(world, script, private_broker, pause=0.03)
    successor = await spawn_child(world, script, private_broker, pause=0.0)  # loads meanwhile
    try:
        await go(child, script)
        async with publisher(private_broker) as pub:
            await publish_many(pub, payloads)
            await eventually(lambda: sqlite_count(world.db_path, "crash-") >= 200, 20, "the first 200 stored")
            child.send_signal(signal.SIGKILL)
            await child.wait()
        at_kill = sqlite_count(world.db_path, "crash-")
        assert 0 < at_kill < n, f"the kill must land mid-way, {at_kill} of {n} were stored"

        child = successor
        await go(child, script)
        await eventually(lambda: sqlite_count(world.db_path, "crash-") >= n, 20, f"all {n} stored after the restart")
        child.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(child.wait(), 15) == 0
    finally:
        for proc in (child, successor):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    with contextlib.closing(sqlite3.connect(world.db_path)) as conn:
        uids = [row[0] for row in conn.execute("SELECT event_uid FROM rating WHERE event_uid LIKE '%crash-%'")]
    assert len(uids) == n
    assert set(uids) == {rating_uid("crash-", i) for i in range(n)}
    await bot.db.connect(world.db_url)  # the fixture closes it


# --------------------------------------------------------------------------- throughput


@pytest.mark.slow
async def test_throughput_of_a_backlog(world: World, broker: PrivateBroker) -> None:
    """5,000 ratings queued while the service is down, then drained: end-to-end rate on SQLite."""
    private_broker = broker.port
    world.with_port(private_broker)
    world.settings = world.settings.model_copy(update={"ingest_batch_size": 500})
    async with running(world.ingest()):
        pass
    n = 5000
    async with publisher(private_broker) as pub:
        await publish_many(pub, ratings_payloads(world.root, "load-", n))

    started = time.monotonic()
    async with running(world.ingest()) as ingest:
        await eventually(lambda: ingest.messages >= n, timeout=30, what=f"{n} messages handled")
        elapsed = time.monotonic() - started
    rate = n / elapsed
    print(f"\ningest throughput: {n} messages in {elapsed:.2f} s = {rate:.0f} msg/s ({ingest.batches} batches)")
    assert await rating_count("load-") == n
    # a guard against pathological regressions (a wake-up per message, a query per event), not
    # the benchmark: the aim is 3,000 msg/s on 2 cores, measured when the machine is quiet
    assert rate > 500, f"ingest is far too slow: {rate:.0f} msg/s"
