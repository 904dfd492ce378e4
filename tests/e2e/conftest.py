"""The whole service in-process: a real aiogram Bot against the emulator, real Mosquitto, SQLite."""

from __future__ import annotations

import asyncio
import contextvars
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from bot.app import App, build
from bot.clock import Clock
from bot.settings import load_settings
from tests.telegram_emulator import BotApiEmulator

FIXTURE_ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
STAFF_CHAT = -1001000000001
MANAGER_CHAT = -1001000000002
EXTRA_STAFF = [
    {"code": "sidorov", "name": "Павел Сидоров", "role": "staff", "office": "MSK-1", "telegram_id": 5003},
    {"code": "kozlova", "name": "Ольга Козлова", "role": "staff", "office": "MSK-1", "telegram_id": 5004},
    {"code": "orlov", "name": "Денис Орлов", "role": "staff", "office": "MSK-1", "telegram_id": 5005},
]


def unique_org(tag: str) -> dict[str, Any]:
    """The fixture org with device topics made unique, so tests never hear each other."""
    org = copy.deepcopy(yaml.safe_load(FIXTURE_ORG.read_text(encoding="utf-8")))
    org["staff"].extend(copy.deepcopy(EXTRA_STAFF))
    for device in org["devices"]:
        device["id"] = f"{device['id']}-{tag}"
        if device.get("topic"):
            device["topic"] = f"{device['topic']}-{tag}"
    return org


class Harness:
    def __init__(self, tmp_path: Path, emulator: BotApiEmulator) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.root = f"t{self.tag}/v1"
        self.tmp_path = tmp_path
        self.emulator = emulator
        self.org = unique_org(self.tag)
        self.org_path = tmp_path / "org.yaml"
        self.database_url = f"sqlite://{tmp_path}/loyalty.sqlite3"
        self.apps: list[tuple[App, asyncio.Event, contextvars.Context]] = []

    def device(self, kind: str) -> dict[str, Any]:
        return next(d for d in self.org["devices"] if d["kind"] == kind)

    def settings(self, **overrides: Any):
        self.org_path.write_text(yaml.safe_dump(self.org, allow_unicode=True), encoding="utf-8")
        values: dict[str, Any] = dict(
            bot_token=self.emulator.token,
            telegram_api_url=self.emulator.url,
            database_url=self.database_url,
            mqtt_topic_root=self.root,
            mqtt_client_id=f"loyalty-test-{self.tag}",
            org_file=self.org_path,
            scheduler_interval_seconds=0.2,
            ingest_batch_wait_ms=10,
            http_port=0,  # a free port: tests run side by side and 8080 may be taken
            # no morning digests: after 09:00 in an office's zone they would take the Bot API
            # calls (and the faults) a test arranges for its own messages
            digest_time="off",
        )
        values.update(overrides)
        return load_settings(**values)

    async def start(self, clock: Clock | None = None, **overrides: Any) -> App:
        app = build(self.settings(**overrides), clock=clock)
        stop = asyncio.Event()
        await app.start(stop)
        await asyncio.wait_for(app.ingest.connected.wait(), 10)
        # Tortoise keeps connections in a context variable; teardown runs in another context
        self.apps.append((app, stop, contextvars.copy_context()))
        return app

    async def stop_all(self) -> None:
        for app, stop, context in self.apps:
            stop.set()
            await asyncio.create_task(app.shutdown(), context=context)
        self.apps.clear()

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"pub-{uuid.uuid4().hex[:8]}") as client:
            await client.publish(topic, payload, qos=qos, retain=retain)


@pytest.fixture
async def emulator() -> AsyncIterator[BotApiEmulator]:
    emu = BotApiEmulator(group_messages_per_minute=20)
    await emu.start()
    emu.add_chat(STAFF_CHAT, "supergroup", "MSK-1 staff")
    emu.add_chat(MANAGER_CHAT, "supergroup", "MSK-1 managers")
    for user_id, name in [(5001, "Анна"), (5002, "Олег"), (5003, "Павел"), (5004, "Ольга"), (5005, "Денис"), (5201, "Admin"), (7777, "Stranger")]:
        emu.add_user(user_id, name)
    yield emu
    await emu.stop()


@pytest.fixture
async def harness(tmp_path: Path, emulator: BotApiEmulator) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, emulator)
    yield h
    await h.stop_all()


Publish = Callable[[str, bytes], Awaitable[None]]
