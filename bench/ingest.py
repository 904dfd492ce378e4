"""Ingest benchmark: MQTT → database → Telegram, measured on the real service in-process.

    .venv/bin/python bench/ingest.py                       # SQLite (fresh temp file per phase)
    .venv/bin/python bench/ingest.py --database postgres://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ingest.py --quick               # smoke run (5,000 events, 5 s, 20 s)

The service is built with ``bot.app.build`` and started with ``App.start`` against the Bot API
emulator of the tests; a separate *process* publishes native rating events with paho (QoS 1),
so the publisher does not compete with the service's event loop for the GIL. Each event id
carries its publish time (``id = "<seq>-<time_ns>"``), the commit time is recorded by a thin
wrapper around the ``store_batch`` callable that ``MqttIngest`` holds (stamped after the
transaction has committed), and the Telegram side is read from the emulator's ``sent_log``.

Every phase gets a fresh database (a new SQLite file, or a new PostgreSQL schema that is
dropped afterwards — the ``public`` schema of a shared database is never touched), a fresh
emulator, a unique MQTT topic root and client id. By default a private Mosquitto is started
with the queue limits of ``devices/mosquitto.conf`` on a free port: the system broker runs
with Mosquitto's default ``max_queued_messages 1000`` and silently drops QoS 1 messages once
the service is more than ~2,000 messages behind, which a full-speed publisher causes within
a second (``--mqtt-url mqtt://127.0.0.1:1883`` uses it anyway and reports the loss).

Phases: 1 throughput (N events as fast as the broker takes them), 2 publish→commit latency at
a fixed offered load, 3 press→group-message latency of negatives at a low rate; and on request
0, ``store_batch`` alone fed parsed batches (no MQTT, no Telegram: the database side's ceiling).
It prints a table with the targets and PASS/FAIL, and always exits 0: it is a measurement.

Diagnostics printed with the figures: ``store_batch`` and its steps per batch, event-loop lag,
GC pauses (via ``gc.callbacks``), CPU of the service / publisher / broker / PostgreSQL / the rest
of the machine (others' jobs skew the figures: look at that column first), the event loop's
time split by owner (task or callback), and the Bot API calls the emulator answered.
``--profile 1`` adds cProfile of a phase, ``--slow-callback-ms 100`` logs loop stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import logging
import multiprocessing as mp
import os
import pstats
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.ingest")

TARGET_THROUGHPUT = 3000.0  # events stored per second
TARGET_COMMIT_P99_MS = 100.0  # publish → commit at 500 events/s
TARGET_GROUP_P99_MS = 1000.0  # press → group message at 5 events/s
CASE_REF = re.compile(r"#(\d+)")


# --------------------------------------------------------------------------- small helpers


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no data."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (0 if it is gone)."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_cpu_seconds() -> float:
    """CPU of every process named postgres (the server's backends), for the CPU split."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += proc_cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle/iowait) since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def publish_time(uid: str) -> float:
    """The wall time the publisher embedded in the native event id ``<seq>-<time_ns>``."""
    return int(uid.rsplit(":", 1)[1].split("-", 1)[1]) / 1e9


# --------------------------------------------------------------------------- broker


class Broker:
    """A private Mosquitto with the production queue limits, or an external broker URL."""

    def __init__(self, url: str | None, events: int, workdir: Path) -> None:
        self.external = url
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = workdir
        self.events = events
        self.host = "127.0.0.1"
        self.port = 1883
        self.url = url or ""

    def start(self) -> None:
        if self.external:
            from urllib.parse import urlsplit

            parts = urlsplit(self.external)
            self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
            return
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        # The limits of devices/mosquitto.conf; no persistence (a throw-away broker).
        conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence false",
                    "queue_qos0_messages true",
                    f"max_queued_messages {max(100000, 2 * self.events)}",
                    "max_queued_bytes 268435456",
                    "max_inflight_messages 100",
                    "max_packet_size 1048576",
                    "set_tcp_nodelay true",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            )
        )
        with open(self.workdir / "mosquitto.log", "wb") as log_file:
            self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log_file)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                break
            if self.process.poll() is not None:
                raise SystemExit(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()}")
            time.sleep(0.05)
        self.url = f"mqtt://{self.host}:{self.port}"

    def describe(self) -> str:
        if self.external:
            return f"{self.url} (external)"
        return f"{self.url} (private mosquitto, max_queued_messages {max(100000, 2 * self.events)})"

    def cpu(self) -> float:
        return proc_cpu_seconds(self.process.pid) if self.process else 0.0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


# --------------------------------------------------------------------------- database


class Database:
    """A fresh database per phase: a new SQLite file, or a new PostgreSQL schema."""

    def __init__(self, url: str | None, workdir: Path, keep: bool) -> None:
        self.base = url
        self.workdir = workdir
        self.keep = keep
        self.kind = "sqlite" if not url or url.startswith("sqlite") else "postgres"
        self.schema: str | None = None

    async def fresh(self, tag: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite://{self.workdir}/bench-{tag}.sqlite3"
        import asyncpg

        assert self.base is not None
        self.schema = f"bench_{tag}"
        conn = await asyncpg.connect(self._plain(self.base))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
        finally:
            await conn.close()
        sep = "&" if "?" in self.base else "?"
        return f"{self.base}{sep}schema={self.schema}"

    async def drop(self) -> None:
        if self.kind != "postgres" or self.schema is None or self.keep:
            return
        import asyncpg

        assert self.base is not None
        conn = await asyncpg.connect(self._plain(self.base))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()
        self.schema = None

    @staticmethod
    def _plain(url: str) -> str:
        url = url.split("?", 1)[0]
        for prefix in ("asyncpg://", "postgresql://"):
            if url.startswith(prefix):
                url = "postgres://" + url[len(prefix) :]
        return url

    def describe(self) -> str:
        if self.kind == "sqlite":
            return f"SQLite (fresh file per phase in {self.workdir}, WAL, synchronous=NORMAL)"
        return f"PostgreSQL {self._plain(self.base or '')} (fresh schema bench_<tag> per phase, dropped after)"


# --------------------------------------------------------------------------- org


@dataclass
class Org:
    data: dict[str, Any]
    points: list[tuple[str, str]]  # (site, point) in topic order
    staff_chats: dict[int, str]  # chat id -> office code
    manager_chats: dict[int, str]


def make_org(offices: int, points: int) -> Org:
    """``offices`` × ``points``, each office with its own staff group and manager group."""
    data: dict[str, Any] = {
        "company": "Bench Retail",
        "defaults": {"language": "ru", "comment_deadline_minutes": 30},
        "offices": [],
        "staff": [],
        "roster": [],
        "devices": [],
    }
    all_points: list[tuple[str, str]] = []
    staff_chats: dict[int, str] = {}
    manager_chats: dict[int, str] = {}
    for o in range(offices):
        code = f"B{o + 1:02d}"
        staff_chat = -1009000000000 - 2 * o - 1
        manager_chat = -1009000000000 - 2 * o - 2
        staff_chats[staff_chat] = code
        manager_chats[manager_chat] = code
        data["offices"].append(
            {
                "code": code,
                "name": f"Офис {o + 1}",
                "timezone": "Europe/Moscow",
                "working_hours": {"mon-sun": "00:00-24:00"},
                "staff_chat": staff_chat,
                "manager_chat": manager_chat,
                "points": [{"code": f"W{p + 1:02d}", "name": f"Окно {p + 1}"} for p in range(points)],
            }
        )
        for p in range(points):
            all_points.append((code, f"W{p + 1:02d}"))
        data["staff"].append(
            {"code": f"staff{o + 1:02d}", "name": f"Сотрудник {o + 1}", "role": "staff", "office": code,
             "telegram_id": 700000 + o}
        )
        data["staff"].append(
            {"code": f"mgr{o + 1:02d}", "name": f"Менеджер {o + 1}", "role": "manager", "office": code,
             "telegram_id": 710000 + o}
        )
        data["roster"].append({"staff": f"staff{o + 1:02d}", "point": f"{code}/W01", "days": "daily", "hours": "00:00-24:00"})
    return Org(data, all_points, staff_chats, manager_chats)


# --------------------------------------------------------------------------- publisher process


def publisher_main(
    conn: Any, host: str, port: int, root: str, points: list[tuple[str, str]], devices: int,
    events: int, rate: float | None, negative_share: float, seed: int, window: int, client_id: str,
) -> None:
    """Publish ``events`` native ratings (QoS 1) at ``rate``/s, or as fast as the broker acks.

    At most ``window`` messages are unacknowledged at once, so the embedded publish time is
    when the message went onto the wire, not when it entered paho's local queue.
    """
    import paho.mqtt.client as mqtt

    rng = random.Random(seed)
    inflight = threading.BoundedSemaphore(window)
    acked = 0
    last_ack = 0.0
    lock = threading.Lock()
    connected = threading.Event()

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        connected.set()

    def on_publish(client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        nonlocal acked, last_ack
        with lock:
            acked += 1
            last_ack = time.time()
        inflight.release()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True)
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        conn.send({"error": f"publisher could not connect to {host}:{port}"})
        return
    topics = [f"{root}/{site}/{point}/rating" for site, point in points]
    conn.send({"ready": True})
    conn.recv()  # go
    cpu0 = os.times()
    negatives = 0
    t_start = time.time()
    for i in range(events):
        if rate:
            delay = t_start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        device = rng.randrange(devices)
        if rng.random() < negative_share:
            value = "bad"
            negatives += 1
        else:
            value = "good" if rng.random() < 0.75 else "neutral"
        if not inflight.acquire(timeout=30):
            conn.send({"error": f"publisher: no PUBACK for 30 s after {i} messages (connection lost?)"})
            client.loop_stop()
            return
        now_ns = time.time_ns()
        payload = json.dumps(
            {"id": f"{i}-{now_ns}", "ts": now_ns // 1_000_000, "device": f"btn{device:05d}", "value": value},
            separators=(",", ":"),
        )
        client.publish(topics[device % len(topics)], payload, qos=1)
    t_end = time.time()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if acked >= events:
                break
        time.sleep(0.005)
    cpu1 = os.times()
    client.disconnect()
    client.loop_stop()
    conn.send(
        {
            "published": events, "acked": acked, "negatives": negatives, "t_start": t_start, "t_end": t_end,
            "t_last_ack": last_ack, "cpu": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        }
    )


# --------------------------------------------------------------------------- in-service probes


@dataclass
class Probes:
    """Commit times per event uid, per-batch timings, step timings and event-loop lag."""

    commits: dict[str, float] = field(default_factory=dict)
    batches: list[tuple[float, float, int, int]] = field(default_factory=list)  # t0, t1, messages, new ratings
    steps: dict[str, list[float]] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)
    gc_pauses: dict[int, list[float]] = field(default_factory=lambda: {0: [], 1: [], 2: []})
    _gc_start: float = 0.0
    gc_total: float = 0.0

    def gc_callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_start
            self.gc_pauses[info["generation"]].append(pause)
            self.gc_total += pause

    def gc_seconds(self) -> float:
        return self.gc_total

    def wrap_store(self, store: Any) -> Any:
        commits, batches = self.commits, self.batches

        async def timed_store_batch(batch: Any) -> Any:
            t0 = time.time()
            result = await store(batch)
            t1 = time.time()  # after store_batch returned: the transaction has committed
            for item in batch:
                for event in item.events:
                    uid = getattr(event, "event_uid", None)
                    if uid is not None and uid not in commits:
                        commits[uid] = t1
            batches.append((t0, t1, len(batch), result.ratings))
            return result

        return timed_store_batch

    def wrap_step(self, obj: Any, name: str) -> None:
        original = getattr(obj, name, None)
        if original is None:
            return
        bucket = self.steps.setdefault(name, [])

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                bucket.append(time.perf_counter() - t0)

        setattr(obj, name, timed)

    async def watch_loop(self, stop: asyncio.Event, interval: float = 0.02) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            t0 = loop.time()
            await asyncio.sleep(interval)
            self.lag.append(max(0.0, loop.time() - t0 - interval))


class LoopAccounting:
    """Time spent inside event-loop callbacks, by owner (task coroutine or plain callback).

    Everything the service does runs in these callbacks on one thread, so the split says where
    the event loop's (≈ one core's) time goes. GC pauses land in whichever callback triggered them.
    """

    def __init__(self, gc_seconds: Any = None) -> None:
        self.by_owner: dict[str, float] = {}
        self._original: Any = None
        self._gc_seconds = gc_seconds or (lambda: 0.0)

    def __enter__(self) -> LoopAccounting:
        from asyncio import events

        original = self._original = events.Handle._run
        acc = self.by_owner
        perf = time.perf_counter
        gc_seconds = self._gc_seconds

        def _run(handle: Any) -> None:
            t0 = perf()
            g0 = gc_seconds()
            try:
                original(handle)
            finally:
                in_gc = gc_seconds() - g0
                acc["GC"] = acc.get("GC", 0.0) + in_gc
                t0 += in_gc
                callback = handle._callback
                owner = getattr(callback, "__self__", None)
                if isinstance(owner, asyncio.Task):
                    coro = owner.get_coro()
                    key = getattr(coro, "__qualname__", None) or owner.get_name()
                else:
                    key = getattr(callback, "__qualname__", None) or type(callback).__name__
                acc[key] = acc.get(key, 0.0) + perf() - t0

        events.Handle._run = _run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from asyncio import events

        events.Handle._run = self._original  # type: ignore[method-assign]

    def summary(self, wall: float, top: int = 7) -> str:
        groups: dict[str, float] = {}
        names = {
            "MqttIngest.run": "ingest (collect+parse+store)",
            "Client._on_socket_open.<locals>.callback": "MQTT read (paho)",
            "OutboxSender.run": "outbox",
            "RequestHandler._handle_request": "Bot API emulator",
            "RequestHandler.start": "Bot API emulator",
            "Client._on_socket_register_write.<locals>.callback": "MQTT write (paho)",
            "GC": "GC (all generations)",
        }
        for key, value in self.by_owner.items():
            label = names.get(key, key)
            groups[label] = groups.get(label, 0.0) + value
        ordered = sorted(groups.items(), key=lambda kv: -kv[1])
        busy = sum(groups.values())
        parts = [f"{label} {100 * v / max(wall, 1e-9):.0f} %" for label, v in ordered[:top] if v / max(wall, 1e-9) >= 0.005]
        return f"busy {100 * busy / max(wall, 1e-9):.0f} % of wall: " + " · ".join(parts)


# --------------------------------------------------------------------------- one phase


@dataclass
class PhaseResult:
    name: str
    pub: dict[str, Any]
    probes: Probes
    t_go: float
    cpu: dict[str, float]
    wall: float
    counters: dict[str, int]
    db_ratings: int
    db_cases: int
    outbox_pending: int
    group_latencies: list[float] = field(default_factory=list)
    group_expected: int = 0
    limit_violations: int = 0
    profile_text: str = ""
    heap: dict[str, float] = field(default_factory=dict)
    loop_split: str = ""
    api_calls: dict[str, int] = field(default_factory=dict)


class Runner:
    def __init__(self, args: argparse.Namespace, broker: Broker, database: Database, workdir: Path) -> None:
        self.args = args
        self.broker = broker
        self.database = database
        self.workdir = workdir

    async def store_only(self, events: int, seed: int, profile: bool = False) -> PhaseResult:
        """Phase 0: ``RatingService.store_batch`` alone, fed parsed batches (no MQTT, no outbox).

        The ceiling of the database side: what the ingest loop could reach if receiving,
        parsing and Telegram cost nothing.
        """
        import yaml

        from bot import db
        from bot.app import build
        from bot.models import NegativeCase, Rating
        from bot.org import import_org, load_org_file
        from bot.ratings import Received
        from bot.settings import load_settings
        from devices.contract import InboundMessage

        args = self.args
        tag = uuid.uuid4().hex[:8]
        org = make_org(args.offices, args.points)
        org_path = self.workdir / f"org-{tag}.yaml"
        org_path.write_text(yaml.safe_dump(org.data, allow_unicode=True), encoding="utf-8")
        database_url = await self.database.fresh(tag)
        root = f"bench{tag}/v1"
        settings = load_settings(
            http_port=0,
            bot_token="123456:TEST", database_url=database_url, mqtt_url=self.broker.url or "mqtt://127.0.0.1:1883",
            mqtt_topic_root=root, org_file=org_path,
            ingest_batch_size=args.batch_size, ingest_batch_wait_ms=args.batch_wait_ms,
        )
        app = build(settings)
        probes = Probes()
        store = probes.wrap_store(app.ratings.store_batch)
        for step in ("_store_ratings", "_mark_repeats", "_resolve_presence_and_staff", "_open_cases", "_check_anomalies"):
            probes.wrap_step(app.ratings, step)
        await db.upgrade(database_url)
        await db.connect(database_url)
        await import_org(load_org_file(org_path))
        await app.holder.reload()
        router = app.holder.router
        from datetime import UTC, datetime, timedelta

        max_future = timedelta(seconds=settings.max_future_seconds)
        topics = [f"{root}/{site}/{point}/rating" for site, point in org.points]
        rng = random.Random(seed)
        gc.collect()
        heap = {"objects": len(gc.get_objects())}
        if args.gc_freeze:
            gc.freeze()
        gc.callbacks.append(probes.gc_callback)
        cpu0 = {"service": self_cpu_seconds(), "machine": machine_busy_seconds()}
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        t_go = time.time()
        parse_time = 0.0
        negatives = 0
        done = 0
        while done < events:
            n = min(args.batch_size, events - done)
            t_p = time.perf_counter()
            batch = []
            for i in range(done, done + n):
                device = rng.randrange(args.devices)
                if rng.random() < args.negative_share:
                    value, negatives = "bad", negatives + 1
                else:
                    value = "good" if rng.random() < 0.75 else "neutral"
                now_ns = time.time_ns()
                payload = json.dumps(
                    {"id": f"{i}-{now_ns}", "ts": now_ns // 1_000_000, "device": f"btn{device:05d}", "value": value},
                    separators=(",", ":"),
                ).encode()
                inbound = InboundMessage(topics[device % len(topics)], payload, False, datetime.now(UTC))
                batch.append(Received(inbound, router.parse(inbound, max_future)))
            parse_time += time.perf_counter() - t_p
            await store(batch)
            done += n
        wall = time.time() - t_go
        if profiler:
            profiler.disable()
        gc.callbacks.remove(probes.gc_callback)
        if args.gc_freeze:
            gc.unfreeze()
        cpu = {"service": self_cpu_seconds() - cpu0["service"], "broker": 0.0, "postgres": 0.0, "publisher": 0.0,
               "machine": machine_busy_seconds() - cpu0["machine"]}
        db_ratings = await Rating.all().count()
        db_cases = await NegativeCase.all().count()
        await db.close()
        await self.database.drop()
        pub = {"published": events, "negatives": negatives, "parse_time": parse_time, "t_start": t_go}
        return PhaseResult("0", pub, probes, t_go, cpu, wall, {}, db_ratings, db_cases, 0,
                           profile_text=self._profile_text(profiler, "0"), heap=heap)

    def _profile_text(self, profiler: cProfile.Profile | None, name: str) -> str:
        if profiler is None:
            return ""
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
        stats.print_stats(25)
        out.write("\n--- by cumulative time ---\n")
        stats.sort_stats("cumulative").print_stats(30)
        stats.dump_stats(str(self.workdir / f"profile-{name}.pstats"))
        return out.getvalue()

    async def phase(
        self, name: str, *, events: int, rate: float | None, seed: int, wait_group: bool = False,
        profile: bool = False,
    ) -> PhaseResult:
        import yaml

        from bot.app import build
        from bot.models import NegativeCase, OutboxMessage, OutboxStatus, Rating
        from bot.settings import load_settings
        from tests.telegram_emulator import BotApiEmulator

        args = self.args
        tag = uuid.uuid4().hex[:8]
        org = make_org(args.offices, args.points)
        org_path = self.workdir / f"org-{tag}.yaml"
        org_path.write_text(yaml.safe_dump(org.data, allow_unicode=True), encoding="utf-8")
        database_url = await self.database.fresh(tag)

        emu = BotApiEmulator(group_messages_per_minute=20)
        await emu.start()
        for chat_id, code in org.staff_chats.items():
            emu.add_chat(chat_id, "supergroup", f"{code} staff")
        for chat_id, code in org.manager_chats.items():
            emu.add_chat(chat_id, "supergroup", f"{code} managers")

        root = f"bench{tag}/v1"
        settings = load_settings(
            http_port=0,
            bot_token=emu.token, telegram_api_url=emu.url, database_url=database_url, mqtt_url=self.broker.url,
            mqtt_topic_root=root, mqtt_client_id=f"loyalty-bench-{tag}", org_file=org_path,
            ingest_batch_size=args.batch_size, ingest_batch_wait_ms=args.batch_wait_ms,
        )
        app = build(settings)
        probes = Probes()
        # The callable MqttIngest was built with is RatingService.store_batch, bound in build();
        # wrapping the ingest's reference is the one hook that sees every batch it stores.
        app.ingest._store_batch = probes.wrap_store(app.ingest._store_batch)  # noqa: SLF001
        for step in ("_store_ratings", "_mark_repeats", "_resolve_presence_and_staff", "_open_cases", "_check_anomalies"):
            probes.wrap_step(app.ratings, step)
        stop = asyncio.Event()
        watch_stop = asyncio.Event()
        await app.start(stop)
        await asyncio.wait_for(app.ingest.connected.wait(), 15)
        t_gc = time.perf_counter()
        gc.collect()
        heap = {"objects": len(gc.get_objects()), "frozen": gc.get_freeze_count(), "full_gc": time.perf_counter() - t_gc}
        if args.gc_freeze:  # experiment; App.start itself freezes since the gc.freeze() change
            gc.freeze()
        old_threshold = gc.get_threshold()
        if args.gc_threshold:
            gc.set_threshold(*(int(v) for v in args.gc_threshold.split(",")))

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=publisher_main,
            args=(child, self.broker.host, self.broker.port, root, org.points, args.devices, events, rate,
                  args.negative_share, seed, args.window, f"bench-pub-{tag}"),
            daemon=True,
        )
        proc.start()
        child.close()  # so that a dead publisher shows up as EOFError instead of a hang
        ready = await asyncio.wait_for(asyncio.to_thread(parent.recv), 30)
        if "error" in ready:
            raise SystemExit(ready["error"])

        watcher = asyncio.create_task(probes.watch_loop(watch_stop))
        mono_to_wall = time.time() - time.monotonic()
        profiler = cProfile.Profile() if profile else None
        cpu0 = {"service": self_cpu_seconds(), "broker": self.broker.cpu(),
                "postgres": postgres_cpu_seconds() if self.database.kind == "postgres" else 0.0,
                "machine": machine_busy_seconds()}
        t_go = time.time()
        gc.callbacks.append(probes.gc_callback)
        accounting = LoopAccounting(probes.gc_seconds).__enter__()
        if profiler:
            profiler.enable()
        parent.send("go")
        pub_task = asyncio.ensure_future(asyncio.to_thread(parent.recv))

        # Wait for every published event to be committed (or for progress to stop).
        last_count, last_change = -1, time.monotonic()
        pub: dict[str, Any] | None = None
        while True:
            await asyncio.sleep(0.05)
            if pub is None and pub_task.done():
                pub = pub_task.result()  # EOFError if the publisher died
                if "error" in pub:
                    raise SystemExit(pub["error"])
            count = len(probes.commits)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            if pub is not None and count >= pub["published"]:
                break
            if time.monotonic() - last_change > args.stall_seconds and (pub is not None or count > 0):
                log.warning("%s: no commit for %.0f s; %d of %d committed", name, args.stall_seconds, count, events)
                if pub is None:
                    pub = await asyncio.wait_for(pub_task, 60)
                    if "error" in pub:
                        raise SystemExit(pub["error"])
                break
        assert pub is not None
        wall = time.time() - t_go
        accounting.__exit__()
        loop_split = accounting.summary(wall)

        group_latencies: list[float] = []
        if wait_group:
            group_latencies = await self._wait_group(emu, org, probes, pub, mono_to_wall)
        if profiler:
            profiler.disable()
        gc.callbacks.remove(probes.gc_callback)
        cpu = {"service": self_cpu_seconds() - cpu0["service"], "broker": self.broker.cpu() - cpu0["broker"],
               "postgres": (postgres_cpu_seconds() - cpu0["postgres"]) if self.database.kind == "postgres" else 0.0,
               "publisher": float(pub.get("cpu", 0.0)), "machine": machine_busy_seconds() - cpu0["machine"]}
        if args.heap_census:
            census: dict[str, int] = {}
            for obj in gc.get_objects():
                census[type(obj).__qualname__] = census.get(type(obj).__qualname__, 0) + 1
            top = sorted(census.items(), key=lambda kv: -kv[1])[:12]
            print(f"heap census at end of phase {name}: {sum(census.values()):,} objects; "
                  + ", ".join(f"{k} {v:,}" for k, v in top), file=sys.stderr)
        watch_stop.set()
        await watcher

        db_ratings = await Rating.all().count()
        db_cases = await NegativeCase.all().count()
        outbox_pending = await OutboxMessage.filter(status=OutboxStatus.PENDING).count()
        ing = app.ingest
        counters = {k: getattr(ing, k) for k in ("messages", "stored", "duplicates", "dead_letters", "batches", "store_failures")}
        limit_violations = emu.limit_violations
        api_calls: dict[str, int] = {}
        for request in emu.requests_log:
            if request.method.lower() != "getupdates":
                key = request.method if request.status == 200 else f"{request.method}→{request.status}"
                api_calls[key] = api_calls.get(key, 0) + 1
        stop.set()
        await app.shutdown()
        await emu.stop()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        await self.database.drop()
        if args.gc_freeze:
            gc.unfreeze()
        gc.set_threshold(*old_threshold)

        profile_text = self._profile_text(profiler, name)
        return PhaseResult(
            name, pub, probes, t_go, cpu, wall, counters, db_ratings, db_cases, outbox_pending,
            group_latencies, int(pub.get("negatives", 0)), limit_violations, profile_text, heap, loop_split,
            api_calls,
        )

    async def _wait_group(
        self, emu: Any, org: Org, probes: Probes, pub: dict[str, Any], mono_to_wall: float
    ) -> list[float]:
        """Publish → first sendMessage that shows ``#<case id>`` in the office's staff group."""
        from bot.models import NegativeCase

        expected = int(pub["negatives"])
        first_sent: dict[int, float] = {}
        scanned = 0
        deadline = time.monotonic() + self.args.group_timeout
        while time.monotonic() < deadline:
            log_ = emu.sent_log
            for record in log_[scanned:]:
                if record.method.lower() != "sendmessage" or record.chat_id not in org.staff_chats:
                    continue
                message = emu.message(record.chat_id, record.message_id) or {}
                for ref in CASE_REF.findall(message.get("text", "")):
                    first_sent.setdefault(int(ref), record.at + mono_to_wall)
            scanned = len(log_)
            if len(first_sent) >= expected:
                break
            await asyncio.sleep(0.1)
        pairs = await NegativeCase.all().values_list("id", "rating__event_uid")
        latencies = []
        for case_id, uid in pairs:
            if case_id in first_sent:
                latencies.append(first_sent[case_id] - publish_time(uid))
        return latencies


# --------------------------------------------------------------------------- report


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:,.1f} ms"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, phase: str, figure: str, value: str, target: str = "", result: str = "") -> None:
        self.rows.append((phase, figure, value, target, result))

    def render(self) -> str:
        head = ("phase", "figure", "value", "target", "result")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = "  ".join("-" * w for w in widths)
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
        for row in self.rows:
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return "\n".join(out)


def cpu_line(r: PhaseResult) -> str:
    w = max(r.wall, 1e-9)
    parts = [f"service {r.cpu['service'] / w:.2f}", f"publisher {r.cpu['publisher'] / w:.2f}"]
    if r.cpu["broker"]:
        parts.append(f"broker {r.cpu['broker'] / w:.2f}")
    if r.cpu["postgres"]:
        parts.append(f"postgres {r.cpu['postgres'] / w:.2f}")
    others = r.cpu["machine"] - r.cpu["service"] - r.cpu["publisher"] - r.cpu["broker"] - r.cpu["postgres"]
    parts.append(f"everything else on the machine {max(others, 0.0) / w:.2f}")
    return " · ".join(parts) + " cores"


def gc_line(r: PhaseResult) -> str:
    g2 = r.probes.gc_pauses[2]
    young = r.probes.gc_pauses[0] + r.probes.gc_pauses[1]
    return (f"{len(g2)} · max {ms(max(g2, default=float('nan')))} · total {ms(sum(g2))}"
            f" (gen0/1: {len(young)} · {ms(sum(young))})")


def api_line(r: PhaseResult) -> str:
    return " · ".join(f"{k} {v:,}" for k, v in sorted(r.api_calls.items(), key=lambda kv: -kv[1])) or "none"


def heap_line(r: PhaseResult) -> str:
    frozen = f" (+ {r.heap['frozen']:,.0f} frozen by gc.freeze)" if r.heap.get("frozen") else ""
    if "full_gc" in r.heap:
        return f"{r.heap['objects']:,.0f} objects{frozen} · full gc {ms(r.heap['full_gc'])}"
    return f"{r.heap.get('objects', 0):,.0f} objects{frozen}"


def step_lines(r: PhaseResult) -> list[tuple[str, str]]:
    """Where store_batch's time goes, per batch (ms): median / p99 / share of all store time."""
    b = r.probes.batches
    total = sum(t1 - t0 for t0, t1, _, _ in b) or 1e-9
    rows = []
    store = [t1 - t0 for t0, t1, _, _ in b]
    rows.append(("store_batch", f"p50 {ms(statistics.median(store))} · p99 {ms(percentile(store, 99))} · 100 %"))
    labels = {
        "_store_ratings": "  _store_ratings (all of it)",
        "_mark_repeats": "    _mark_repeats",
        "_resolve_presence_and_staff": "    _resolve_presence_and_staff",
        "_open_cases": "    _open_cases",
        "_check_anomalies": "    _check_anomalies",
    }
    inner = 0.0
    for key, label in labels.items():
        values = r.probes.steps.get(key) or []
        if not values:
            continue
        s = sum(values)
        if key != "_store_ratings":
            inner += s
        rows.append((label, f"p50 {ms(statistics.median(values))} · p99 {ms(percentile(values, 99))} · {100 * s / total:.0f} %"))
    outer = sum(r.probes.steps.get("_store_ratings") or [0.0])
    rows.append(("    uid lookup + row build + bulk insert", f"{100 * (outer - inner) / total:.0f} %"))
    rows.append(("  commit + rest of store_batch", f"{100 * (total - outer) / total:.0f} %"))
    return rows


def report(args: argparse.Namespace, broker: Broker, database: Database, results: dict[str, PhaseResult]) -> str:
    t = Table()
    if "0" in results:
        r = results["0"]
        b = r.probes.batches
        store_total = sum(t1 - t0 for t0, t1, _, _ in b)
        p = f"0 store_batch alone ({r.pub['published']:,} ev)"
        t.add(p, "stored/s inside store_batch", f"{r.db_ratings / max(store_total, 1e-9):,.0f}/s", f"(≥ {TARGET_THROUGHPUT:,.0f}/s)")
        t.add("", "process CPU per event (parse + store)", f"{1e6 * r.cpu['service'] / max(r.pub['published'], 1):.0f} µs"
              f" ⇒ ≤ {r.pub['published'] / max(r.cpu['service'], 1e-9):,.0f}/s on one core")
        t.add("", "parse (router.parse) per event", f"{1e6 * r.pub['parse_time'] / max(r.pub['published'], 1):.0f} µs")
        t.add("", "in DB: ratings · cases", f"{r.db_ratings:,} · {r.db_cases:,}")
        for label, value in step_lines(r):
            t.add("", label, value)
        t.add("", "GC gen2 pauses in phase", gc_line(r))
        t.add("", "heap after start (GC-tracked)", heap_line(r))
    if "1" in results:
        r = results["1"]
        b = r.probes.batches
        n = len(r.probes.commits)
        first_t1 = min(t1 for _, t1, _, _ in b) if b else float("nan")
        last_t1 = max(t1 for _, t1, _, _ in b) if b else float("nan")
        first_batch = next((m for _, t1, m, _ in b if t1 == first_t1), 0)
        sustained = (n - first_batch) / (last_t1 - first_t1) if b and last_t1 > first_t1 else float("nan")
        wall = n / (last_t1 - r.pub["t_start"]) if b else float("nan")
        pub_rate = r.pub["acked"] / max(r.pub["t_last_ack"] - r.pub["t_start"], 1e-9)
        store_busy = sum(t1 - t0 for t0, t1, _, _ in b) / max(last_t1 - r.pub["t_start"], 1e-9)
        p = f"1 throughput ({r.pub['published']:,} ev)"
        t.add(p, "stored/s sustained (1st→last commit)", f"{sustained:,.0f}/s", f"≥ {TARGET_THROUGHPUT:,.0f}/s",
              verdict(sustained >= TARGET_THROUGHPUT if sustained == sustained else False))
        t.add("", "stored/s wall (1st publish→last commit)", f"{wall:,.0f}/s")
        t.add("", "publisher rate (acked by broker)", f"{pub_rate:,.0f}/s")
        t.add("", "committed / published / in DB", f"{n:,} / {r.pub['published']:,} / {r.db_ratings:,}",
              "all", verdict(n >= r.pub["published"] and r.db_ratings >= r.pub["published"]))
        t.add("", "batches · mean size · store busy", f"{len(b):,} · {n / max(len(b), 1):.0f} · {100 * store_busy:.0f} % of wall")
        for label, value in step_lines(r):
            t.add("", label, value)
        t.add("", "negatives → cases · outbox pending at end", f"{r.db_cases:,} · {r.outbox_pending:,}")
        t.add("", "event-loop lag p99 / max", f"{ms(percentile(r.probes.lag, 99))} / {ms(max(r.probes.lag, default=float('nan')))}")
        t.add("", "GC gen2 pauses in phase", gc_line(r))
        t.add("", "heap after start (GC-tracked)", heap_line(r))
        t.add("", "CPU", cpu_line(r))
        t.add("", "event-loop time by owner", r.loop_split)
        t.add("", "Bot API calls (emulator)", api_line(r))
        t.add("", "service CPU per stored event", f"{1e6 * r.cpu['service'] / max(n, 1):.0f} µs"
              f" ⇒ ≤ {n / max(r.cpu['service'], 1e-9):,.0f}/s on one core")
        t.add("", "dead letters · store failures", f"{r.counters['dead_letters']} · {r.counters['store_failures']}")
    if "2" in results:
        r = results["2"]
        lat = [c - publish_time(uid) for uid, c in r.probes.commits.items()]
        offered = r.pub["published"] / max(r.pub["t_end"] - r.pub["t_start"], 1e-9)
        p99 = percentile(lat, 99)
        p = f"2 latency @{args.rate:g}/s × {args.seconds:g} s"
        t.add(p, "offered rate (actual)", f"{offered:,.0f}/s · {r.pub['published']:,} ev")
        t.add("", "publish→commit p50", ms(statistics.median(lat) if lat else float("nan")))
        t.add("", "publish→commit p99", ms(p99), f"≤ {TARGET_COMMIT_P99_MS:.0f} ms", verdict(p99 <= TARGET_COMMIT_P99_MS / 1000 if lat else False))
        t.add("", "publish→commit max", ms(max(lat, default=float("nan"))))
        t.add("", "committed / published", f"{len(lat):,} / {r.pub['published']:,}", "all", verdict(len(lat) >= r.pub["published"]))
        b = r.probes.batches
        store = [t1 - t0 for t0, t1, _, _ in b]
        t.add("", "batches · mean size · store p50/p99",
              f"{len(b):,} · {len(lat) / max(len(b), 1):.0f} · {ms(statistics.median(store) if store else float('nan'))} / {ms(percentile(store, 99))}")
        t.add("", "event-loop lag p99 / max", f"{ms(percentile(r.probes.lag, 99))} / {ms(max(r.probes.lag, default=float('nan')))}")
        t.add("", "GC gen2 pauses in phase", gc_line(r))
        t.add("", "heap after start (GC-tracked)", heap_line(r))
        t.add("", "CPU", cpu_line(r))
        t.add("", "event-loop time by owner", r.loop_split)
        t.add("", "Bot API calls (emulator)", api_line(r))
    if "3" in results:
        r = results["3"]
        lat = r.group_latencies
        p99 = percentile(lat, 99)
        p = f"3 press→group @{args.group_rate:g}/s × {args.group_seconds:g} s"
        t.add(p, "negatives seen in groups / published", f"{len(lat)} / {r.group_expected}", "all", verdict(len(lat) >= r.group_expected))
        t.add("", "press→group p50", ms(statistics.median(lat) if lat else float("nan")))
        t.add("", "press→group p99", ms(p99), f"≤ {TARGET_GROUP_P99_MS:.0f} ms", verdict(p99 <= TARGET_GROUP_P99_MS / 1000 if lat else False))
        t.add("", "press→group max", ms(max(lat, default=float("nan"))))
        commit = [r.probes.commits[uid] - publish_time(uid) for uid in r.probes.commits]
        t.add("", "publish→commit p50 / p99 (all events)", f"{ms(statistics.median(commit) if commit else float('nan'))} / {ms(percentile(commit, 99))}")
        t.add("", "429s from the emulator (group limit)", str(r.limit_violations))
        t.add("", "event-loop time by owner", r.loop_split)
        t.add("", "Bot API calls (emulator)", api_line(r))
    head = [
        f"Loyalty Desk ingest bench · {database.describe()}",
        f"broker {broker.describe()} · {args.offices} offices × {args.points} points, {args.devices:,} buttons, "
        f"{args.negative_share:.0%} negatives · batch {args.batch_size} / {args.batch_wait_ms} ms · "
        f"{os.cpu_count()} CPUs",
    ]
    return "\n".join(head) + "\n\n" + t.render()


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--database", default=None, help="postgres://… to bench PostgreSQL (a fresh schema per phase); default SQLite")
    p.add_argument("--mqtt-url", default=None, help="use this broker instead of a private mosquitto")
    p.add_argument("--events", type=int, default=50_000, help="phase 1: events published as fast as possible")
    p.add_argument("--rate", type=float, default=500.0, help="phase 2: offered events per second")
    p.add_argument("--seconds", type=float, default=20.0, help="phase 2: duration")
    p.add_argument("--group-rate", type=float, default=5.0, help="phase 3: events per second")
    p.add_argument("--group-seconds", type=float, default=60.0, help="phase 3: duration")
    p.add_argument("--negative-share", type=float, default=0.10)
    p.add_argument("--offices", type=int, default=10)
    p.add_argument("--points", type=int, default=10, help="points per office")
    p.add_argument("--devices", type=int, default=10_000, help="distinct buttons (spread evenly over the points)")
    p.add_argument("--batch-size", type=int, default=500, help="INGEST_BATCH_SIZE")
    p.add_argument("--batch-wait-ms", type=int, default=20, help="INGEST_BATCH_WAIT_MS")
    p.add_argument("--window", type=int, default=1000, help="publisher: max unacknowledged QoS 1 messages")
    p.add_argument("--phases", default="1,2,3",
                   help="which phases to run, e.g. 1 or 2,3; 0 = store_batch alone (no MQTT/Telegram), a diagnostic")
    p.add_argument("--quick", action="store_true", help="smoke run: 5,000 events, 5 s, 20 s")
    p.add_argument("--profile", default="", help="cProfile these phases (e.g. 1), print the top functions")
    p.add_argument("--stall-seconds", type=float, default=30.0, help="give up waiting after this long without a commit")
    p.add_argument("--group-timeout", type=float, default=90.0, help="phase 3: wait this long for the last group message")
    p.add_argument("--keep", action="store_true", help="keep the work dir / PostgreSQL schemas")
    p.add_argument("--slow-callback-ms", type=float, default=0.0,
                   help="asyncio debug mode: log every event-loop step longer than this (finds what blocks the loop)")
    p.add_argument("--gc-freeze", action="store_true",
                   help="experiment: gc.freeze() after App.start (a no-op where App.start already freezes)")
    p.add_argument("--gc-threshold", default="", help="experiment: gc.set_threshold(a,b,c) after App.start, e.g. 50000,20,100")
    p.add_argument("--heap-census", action="store_true", help="print the most common object types at the end of each phase")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.quick:  # smaller defaults; values given explicitly win
        for name, value in (("events", 5_000), ("seconds", 5.0), ("group_seconds", 20.0)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    return args


async def amain(args: argparse.Namespace) -> None:
    if args.slow_callback_ms:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = args.slow_callback_ms / 1000
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    broker = Broker(args.mqtt_url, args.events, workdir)
    database = Database(args.database, workdir, args.keep)
    broker.start()
    runner = Runner(args, broker, database, workdir)
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    profiled = {p.strip() for p in args.profile.split(",") if p.strip()}
    results: dict[str, PhaseResult] = {}
    try:
        if "0" in phases:
            print(f"phase 0: store_batch alone, {args.events:,} events …", file=sys.stderr, flush=True)
            results["0"] = await runner.store_only(args.events, seed=0, profile="0" in profiled)
        if "1" in phases:
            print(f"phase 1: {args.events:,} events as fast as possible …", file=sys.stderr, flush=True)
            results["1"] = await runner.phase("1", events=args.events, rate=None, seed=1, profile="1" in profiled)
        if "2" in phases:
            n = int(args.rate * args.seconds)
            print(f"phase 2: {n:,} events at {args.rate:g}/s …", file=sys.stderr, flush=True)
            results["2"] = await runner.phase("2", events=n, rate=args.rate, seed=2, profile="2" in profiled)
        if "3" in phases:
            n = int(args.group_rate * args.group_seconds)
            print(f"phase 3: {n:,} events at {args.group_rate:g}/s …", file=sys.stderr, flush=True)
            results["3"] = await runner.phase(
                "3", events=n, rate=args.group_rate, seed=3, wait_group=True, profile="3" in profiled
            )
    finally:
        broker.stop()
        print(report(args, broker, database, results), flush=True)
        for name, r in results.items():
            if r.profile_text:
                print(f"\n=== cProfile, phase {name} (main thread: event loop; stats in {workdir}) ===")
                print(r.profile_text)
        if not args.keep and not profiled:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
