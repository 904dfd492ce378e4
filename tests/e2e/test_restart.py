"""SIGKILL of the real service mid-stream: nothing lost, nothing stored or posted twice.

The service runs as it does in production (``python -m bot.cli run``, settings from the
environment) against a private Mosquitto started from ``devices/mosquitto.conf`` and the Bot
API emulator running in this process. 2,000 QoS 1 ratings are published at a steady pace;
the service is killed with SIGKILL after ~700, the rest are published while it is down (the
broker queues them for its persistent session), then it is started again with the same
environment. Finally a SIGTERM must stop it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiomqtt
import pytest
import yaml

from bot.settings import Settings
from tests.mosquitto import PrivateBroker
from tests.e2e.conftest import MANAGER_CHAT, STAFF_CHAT, unique_org
from tests.telegram_emulator import BotApiEmulator

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

TOTAL = 2000
KILL_AFTER = 700
RATE = 400.0  # messages a second
BAD_EVERY = 10  # every 10th rating is bad: 200 negatives
POINTS = ("W1", "W2", "W3", "W4")
MAX_SUMMARY = 20  # bot.outbox.MAX_SUMMARY: negatives per coalesced message
POST_TIMEOUT = 120.0  # 20 messages a minute per group: the second minute's summaries come ~60 s in
CASE_ID = re.compile(r"#(\d+)\b")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


# --------------------------------------------------------------------------- private broker (as in tests/integration/test_ingest.py)


@contextlib.asynccontextmanager
async def private_broker(tmp_path: Path) -> AsyncIterator[int]:
    """Mosquitto started from the shipped config, on a free port, persisting into tmp_path."""
    data = tmp_path / "mosquitto"
    data.mkdir()
    broker = PrivateBroker(data)
    await broker.start()
    try:
        yield broker.port
    finally:
        await broker.stop()


# --------------------------------------------------------------------------- the service as a process


@dataclass
class Service:
    """``python -m bot.cli run`` with settings from the environment; one log pair per start."""

    tmp_path: Path
    env: dict[str, str]
    runs: list[tuple[asyncio.subprocess.Process, Path, Path]] = field(default_factory=list)
    _files: list[IO[bytes]] = field(default_factory=list)

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self.runs[-1][0]

    @property
    def stderr_path(self) -> Path:
        return self.runs[-1][2]

    async def start(self) -> asyncio.subprocess.Process:
        n = len(self.runs) + 1
        out_path, err_path = self.tmp_path / f"service-{n}.stdout.log", self.tmp_path / f"service-{n}.stderr.log"
        out, err = out_path.open("wb"), err_path.open("wb")
        self._files += [out, err]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=str(self.tmp_path), env=self.env, stdout=out, stderr=err,
        )
        self.runs.append((proc, out_path, err_path))
        return proc

    async def wait_subscribed(self, timeout: float = 60.0) -> None:
        """Until this run's log has the ingest's "MQTT connected" line."""
        deadline = time.monotonic() + timeout
        while "MQTT connected" not in self.stderr_path.read_text(errors="replace"):
            if self.proc.returncode is not None:
                raise AssertionError(f"the service exited with {self.proc.returncode} before subscribing\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the service did not subscribe within {timeout:.0f} s\n{self.logs()}")
            await asyncio.sleep(0.05)

    def logs(self) -> str:
        parts = []
        for i, (proc, out, err) in enumerate(self.runs, 1):
            for path in (out, err):
                text = path.read_text(errors="replace") if path.exists() else ""
                parts.append(f"----- run {i} (exit {proc.returncode}) {path.name} -----\n{text[-20000:]}")
        return "\n".join(parts)

    async def close(self) -> None:
        for proc, _, _ in self.runs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for f in self._files:
            f.close()


def service_env(emulator: BotApiEmulator, db_path: Path, port: int, root: str, client_id: str, org_path: Path) -> dict[str, str]:
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}  # nothing inherited leaks into the settings
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        BOT_TOKEN=emulator.token,
        TELEGRAM_API_URL=emulator.url or "",
        DATABASE_URL=f"sqlite://{db_path}",
        MQTT_URL=f"mqtt://{HOST}:{port}",
        MQTT_TOPIC_ROOT=root,
        MQTT_CLIENT_ID=client_id,
        ORG_FILE=str(org_path),
        LOG_LEVEL="INFO",
        SCHEDULER_INTERVAL_SECONDS="1",
        DIGEST_TIME="off",  # a morning digest would be one more message than the test counts
        HTTP_PORT="0",
    )
    return env


# --------------------------------------------------------------------------- reading the database from outside


def db_query(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """A separate sqlite3 connection: what a reader outside the service sees (WAL)."""
    if not db_path.exists():
        return []
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as conn:
        try:
            return list(conn.execute(sql, args))
        except sqlite3.OperationalError as exc:  # the schema is not there yet
            if "no such table" in str(exc):
                return []
            raise


def rating_counts(db_path: Path) -> tuple[int, int]:
    rows = db_query(db_path, "select count(*), count(distinct event_uid) from rating")
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def committed_sent_ids(db_path: Path) -> set[tuple[int, int]]:
    """(chat, message id) of every outbox row the service has marked sent."""
    rows = db_query(
        db_path, "select chat_id, sent_message_id from outbox_message where status = 'sent' and sent_message_id is not null"
    )
    return {(int(c), int(m)) for c, m in rows}


def emulator_sent_ids(emu: BotApiEmulator) -> set[tuple[int, int]]:
    return {(r.chat_id, r.message_id) for r in emu.sent_log if r.method.lower().startswith("send")}


async def until(check: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str], step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")
        await asyncio.sleep(step)


# --------------------------------------------------------------------------- the publisher


def rating_payload(i: int, device: str, prefix: str) -> tuple[str, bytes, str]:
    """(point, payload, value): every BAD_EVERY-th is bad; the first ones are good (no anomaly alert)."""
    value = "bad" if i % BAD_EVERY == BAD_EVERY - 1 else ("good" if i % 3 else "neutral")
    body = {"id": f"{prefix}{i:05d}", "ts": datetime.now(UTC).isoformat(), "device": device, "value": value}
    return POINTS[i % len(POINTS)], json.dumps(body).encode(), value


async def publish_steadily(port: int, root: str, device: str, prefix: str, published: list[int]) -> None:
    """TOTAL QoS 1 ratings at RATE a second; each awaits its PUBACK, so all are in the broker."""
    tick = 0.025
    per_tick = max(1, round(RATE * tick))
    async with aiomqtt.Client(HOST, port, identifier=f"pub-{uuid.uuid4().hex[:10]}") as client:
        client.pending_calls_threshold = 10**6
        started = time.monotonic()
        for start in range(0, TOTAL, per_tick):
            due = started + start / RATE
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            chunk = [rating_payload(i, device, prefix) for i in range(start, min(start + per_tick, TOTAL))]
            await asyncio.gather(*(client.publish(f"{root}/MSK-1/{point}/rating", body, qos=1) for point, body, _ in chunk))
            published[0] += len(chunk)


# --------------------------------------------------------------------------- the test


async def test_sigkill_mid_stream_stores_and_posts_every_rating_once(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    root, client_id, prefix = f"t{tag}/v1", f"loyalty-restart-{tag}", f"r{tag}-"
    db_path = tmp_path / "db.sqlite3"
    org = unique_org(tag)
    org_path = tmp_path / "org.yaml"
    org_path.write_text(yaml.safe_dump(org, allow_unicode=True), encoding="utf-8")
    device = next(d["id"] for d in org["devices"] if d["kind"] == "native" and d["point"] == "MSK-1/W1")
    expected_uids = {f"native:MSK-1:{device}:{prefix}{i:05d}" for i in range(TOTAL)}
    negatives = sum(1 for i in range(TOTAL) if rating_payload(i, device, prefix)[2] == "bad")

    emu = BotApiEmulator(group_messages_per_minute=20)
    await emu.start()
    emu.add_chat(STAFF_CHAT, "supergroup", "MSK-1 staff")
    emu.add_chat(MANAGER_CHAT, "supergroup", "MSK-1 managers")
    service: Service | None = None
    publisher: asyncio.Task[None] | None = None
    started = time.monotonic()
    try:
        async with private_broker(tmp_path) as port:
            service = Service(tmp_path, service_env(emu, db_path, port, root, client_id, org_path))
            logs = service.logs
            await service.start()
            await service.wait_subscribed()
            print(f"\nservice subscribed after {time.monotonic() - started:.1f} s")

            # ---- publish; SIGKILL after ~KILL_AFTER, while the outbox has nothing in flight
            published = [0]
            publisher = asyncio.create_task(publish_steadily(port, root, device, prefix, published))
            await until(lambda: published[0] >= KILL_AFTER or publisher.done(), 30, f"{KILL_AFTER} published", logs, 0.002)
            killed_at_published, stored_at_kill, sent_before_kill = await kill_when_outbox_settled(service, emu, db_path, published)
            assert service.proc.returncode == -signal.SIGKILL
            assert not publisher.done(), "the kill must land before the last rating is published"
            print(
                f"SIGKILL at {killed_at_published} published, {stored_at_kill} stored, "
                f"{len(sent_before_kill)} messages posted ({time.monotonic() - started:.1f} s)"
            )
            await publisher
            publisher = None
            assert rating_counts(db_path)[0] < TOTAL, "everything was stored before the kill"
            print(f"all {TOTAL} published while down ({time.monotonic() - started:.1f} s)")

            # ---- restart with the same environment; the broker hands over what was queued
            await service.start()
            await service.wait_subscribed()
            await until(lambda: rating_counts(db_path)[0] >= TOTAL, 60, f"{TOTAL} ratings stored", logs, 0.1)
            print(f"all {TOTAL} stored after the restart ({time.monotonic() - started:.1f} s)")
            count, distinct = rating_counts(db_path)
            assert count == distinct == TOTAL, f"{count} rating rows, {distinct} distinct event ids"
            uids = {row[0] for row in db_query(db_path, "select event_uid from rating")}
            assert uids == expected_uids

            bad_ratings = {row[0] for row in db_query(db_path, "select id from rating where value = 'bad'")}
            assert len(bad_ratings) == negatives
            case_rows = db_query(db_path, "select id, rating_id from negative_case")
            per_rating = Counter(rating_id for _, rating_id in case_rows)
            assert set(per_rating) == bad_ratings, "every negative (and only a negative) has a case"
            assert all(n == 1 for n in per_rating.values()), f"negatives with several cases: {per_rating.most_common(3)}"
            cases = {int(case_id) for case_id, _ in case_rows}

            # ---- every negative posted once: its #id in exactly one message of the staff group
            def shown() -> Counter[int]:
                counts: Counter[int] = Counter()
                for message in emu.bot_messages(STAFF_CHAT):
                    counts.update({int(x) for x in CASE_ID.findall(message.get("text") or "")})
                return counts

            await until(lambda: set(shown()) >= cases, POST_TIMEOUT, f"all {negatives} negatives posted", logs, 0.5)
            posted_at = time.monotonic()
            await asyncio.sleep(2.0)  # a repeated post would show up now
            counts = shown()
            messages = emu.bot_messages(STAFF_CHAT)
            pending_after_kill = negatives - len(sent_before_kill_cases(sent_before_kill, emu))
            expected_min = len(sent_before_kill) + math.ceil(pending_after_kill / MAX_SUMMARY)
            print(
                f"all {negatives} negatives posted in {len(messages)} messages ({posted_at - started:.1f} s); "
                f"{len(sent_before_kill)} before the kill, at least {expected_min} expected; "
                f"emulator limit violations {emu.limit_violations}"
            )
            assert set(counts) == cases, f"posted ids that are not cases: {sorted(set(counts) - cases)}"
            repeated = {case: n for case, n in counts.items() if n != 1}
            assert not repeated, f"negatives posted in more than one message: {repeated}\n{emu.dump()}"
            assert len(messages) >= expected_min
            assert len(messages) <= len(sent_before_kill) + pending_after_kill
            assert len({m["text"] for m in messages}) == len(messages), "two messages with the same text"
            sends = [r for r in emu.sent_log if r.chat_id == STAFF_CHAT and r.method.lower() == "sendmessage"]
            assert len(sends) == len(messages), "a message was sent and then lost from the chat"
            assert db_query(db_path, "select count(*) from outbox_message where status != 'sent'") == [(0,)]
            assert db_query(db_path, "select count(*) from dead_letter") == [(0,)]

            # ---- a SIGTERM stops it cleanly
            service.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(service.proc.wait(), 30)
            except TimeoutError:
                raise AssertionError(f"the service did not stop within 30 s of SIGTERM\n{logs()}") from None
            assert code == 0, f"exit code {code} after SIGTERM\n{logs()}"
            assert "stopped cleanly" in service.stderr_path.read_text(errors="replace")
            print(f"clean stop after SIGTERM; total {time.monotonic() - started:.1f} s")
    except BaseException:
        if service is not None:
            print(service.logs())
        raise
    finally:
        if publisher is not None:
            publisher.cancel()
            with contextlib.suppress(BaseException):
                await publisher
        if service is not None:
            await service.close()
        await emu.stop()


async def kill_when_outbox_settled(
    service: Service, emu: BotApiEmulator, db_path: Path, published: list[int]
) -> tuple[int, int, set[tuple[int, int]]]:
    """SIGKILL at a moment when every message Telegram accepted is also marked sent.

    The outbox marks a row sent after Telegram's answer; a kill between the two can repeat
    that one message (the documented, unavoidable window of bot/outbox.py). The emulator
    answers in this process, so checking "all answered sends are committed" and killing in
    one synchronous step (no await in between) keeps the kill out of that window: no answer
    can be produced between the check and the signal. The outbox also stops sending by
    itself once the group's 20-a-minute budget is spent; killing then leaves no request in
    flight either, so that moment is preferred when it comes soon.
    """
    deadline = time.monotonic() + 5.0
    while True:
        sent = emulator_sent_ids(emu)
        group_sends = sum(1 for r in emu.sent_log if r.chat_id == STAFF_CHAT and r.method.lower() == "sendmessage")
        budget_spent = group_sends >= 20
        if (budget_spent or time.monotonic() > deadline) and sent <= committed_sent_ids(db_path):
            service.proc.send_signal(signal.SIGKILL)  # no await since the check: nothing answered in between
            break
        await asyncio.sleep(0.005)
    at_published = published[0]
    await service.proc.wait()
    stored = rating_counts(db_path)[0]
    late = emulator_sent_ids(emu) - sent
    assert not late, f"a request in flight at the kill was answered afterwards: {late}"
    return at_published, stored, sent


def sent_before_kill_cases(sent: set[tuple[int, int]], emu: BotApiEmulator) -> set[int]:
    ids: set[int] = set()
    for chat_id, message_id in sent:
        if chat_id == STAFF_CHAT:
            message = emu.message(chat_id, message_id) or {}
            ids.update(int(x) for x in CASE_ID.findall(message.get("text") or ""))
    return ids
