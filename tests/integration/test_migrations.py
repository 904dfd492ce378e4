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
        " hourly_digest) VALUES ('MSK-1', 'M', 'Europe/Moscow', '{}', 'ru', 30, false, false);"
        "INSERT INTO point (office_id, code, name) VALUES (1, 'W1', 'W');"
        # 21:30 UTC on the 1st is 00:30 on the 2nd in Moscow: the backfill must say the 2nd
        "INSERT INTO rating (event_uid, device_id, office_id, point_id, value, ts, received_at)"
        " VALUES ('e1', 'btn', 1, 1, 'bad', '2026-11-01 21:30:00+00:00', '2026-11-01 21:30:01+00:00');"
        "INSERT INTO presence_event (event_uid, point_id, state, ts) VALUES ('p1', 1, 'start', '2026-11-01 21:29:00+00:00');"
        # commented 12.5 minutes after the press
        "INSERT INTO negative_case (rating_id, office_id, overdue, commented_at)"
        " VALUES (1, 1, false, '2026-11-01 21:42:30+00:00')"
    )
    await Tortoise.close_connections()
    await db.upgrade(url)  # to the head: columns added to tables that have rows
    await db.connect(url)
    conn = connections.get(next(iter(config["connections"])))
    rows = await conn.execute_query_dict("SELECT code FROM office")
    applied = await conn.execute_query_dict("SELECT name FROM tortoise_migrations ORDER BY name")
    local = await conn.execute_query_dict("SELECT local_date, local_hour FROM rating")
    presence = await conn.execute_query_dict("SELECT local_date FROM presence_event")
    assert [(str(r["local_date"]), r["local_hour"]) for r in local] == [("2026-11-02", 0)]
    assert [str(r["local_date"]) for r in presence] == ["2026-11-02"]
    tallies = await conn.execute_query_dict(
        "SELECT local_date, office_id, point_id, staff_id, value, excluded_reason, ratings FROM rating_tally"
    )
    assert [tuple(map(str, r.values())) for r in tallies] == [("2026-11-02", "1", "1", "0", "bad", "", "1")]
    seconds = await conn.execute_query_dict("SELECT comment_seconds FROM negative_case")
    assert abs(seconds[0]["comment_seconds"] - 750.0) < 0.01
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
