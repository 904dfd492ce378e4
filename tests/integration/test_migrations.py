"""Upgrading a database that already holds data, as `loyalty run` does on every start."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from tortoise import Tortoise, connections
from tortoise.migrations.api import migrate

from bot import db
from bot.db import tortoise_config
from tests.conftest import DEFAULT_POSTGRES, _postgres_reachable


async def _upgrade_with_rows(url: str) -> list[dict]:
    config = tortoise_config(url)
    await migrate(config=config, target="models.0001_initial")
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    conn = connections.get(next(iter(config["connections"])))
    await conn.execute_script(
        "INSERT INTO office (code, name, timezone, working_hours, language, comment_deadline_minutes, post_positive,"
        " hourly_digest) VALUES ('MSK-1', 'M', 'Europe/Moscow', '{}', 'ru', 30, false, false)"
    )
    await Tortoise.close_connections()
    await db.upgrade(url)  # to the head: columns added to tables that have rows
    await db.connect(url)
    conn = connections.get(next(iter(config["connections"])))
    rows = await conn.execute_query_dict("SELECT code FROM office")
    applied = await conn.execute_query_dict("SELECT name FROM tortoise_migrations ORDER BY name")
    await db.close()
    return [*rows, *applied]


COMMITTED = sorted(p.stem for p in (Path(__file__).parents[2] / "migrations" / "models").glob("0*.py"))


async def test_sqlite_upgrades_in_place(tmp_path: Path) -> None:
    result = await _upgrade_with_rows(f"sqlite://{tmp_path}/old.sqlite3")
    assert result[0] == {"code": "MSK-1"}
    assert [r["name"] for r in result[1:]] == COMMITTED


async def test_postgres_upgrades_in_place() -> None:
    import asyncpg

    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    if not await _postgres_reachable(admin_url):
        pytest.skip(f"PostgreSQL not reachable at {admin_url}")
    name = f"loyalty_m_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        result = await _upgrade_with_rows(admin_url.rsplit("/", 1)[0] + f"/{name}")
        assert result[0] == {"code": "MSK-1"}
        assert [r["name"] for r in result[1:]] == COMMITTED
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
