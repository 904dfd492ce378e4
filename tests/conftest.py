"""Shared fixtures: a migrated database on SQLite always, and on PostgreSQL when reachable."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import db

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/test"


async def _postgres_reachable(url: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1), timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database (the committed migrations, as production runs them)."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path}/test.sqlite3"
        await db.upgrade(url)
        await db.connect(url)
        yield url
        await db.close()
        return
    import asyncpg

    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    if not await _postgres_reachable(admin_url):
        pytest.skip(f"PostgreSQL not reachable at {admin_url}")
    name = f"loyalty_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await db.upgrade(url)
        await db.connect(url)
        yield url
        await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
