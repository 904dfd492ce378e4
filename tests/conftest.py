"""Shared fixtures: a migrated database on SQLite always, and on PostgreSQL when reachable."""

from __future__ import annotations

import os
import shutil
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


_templates: dict[str, str] = {}  # dialect -> a migrated database that tests copy instead of migrating


@pytest.fixture(scope="session")
def _drop_templates() -> object:
    """Drops the PostgreSQL template at the end of the session (its tests ran on copies)."""
    yield None
    name = _templates.get("postgres")
    if name:
        import asyncio

        import asyncpg

        async def drop() -> None:
            admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES)
            admin = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

        asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgres"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, _drop_templates: object
) -> AsyncIterator[str]:
    """A fresh database migrated by the committed migrations, as production runs them.

    The migrations run once per session into a template; each test gets a copy (a file copy
    on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL), which is what keeps a few
    hundred database tests within minutes.
    """
    if request.param == "sqlite":
        if "sqlite" not in _templates:
            template = tmp_path_factory.mktemp("db-template") / "template.sqlite3"
            await db.upgrade(f"sqlite://{template}")
            await db.close()
            _templates["sqlite"] = str(template)
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(_templates["sqlite"], path)
        url = f"sqlite://{path}"
        await db.connect(url)
        yield url
        await db.close()
        return
    import asyncpg

    admin_url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    if not await _postgres_reachable(admin_url):
        pytest.skip(f"PostgreSQL not reachable at {admin_url}")
    admin = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    if "postgres" not in _templates:
        template = f"loyalty_tpl_{uuid.uuid4().hex[:10]}"
        await admin.execute(f'CREATE DATABASE "{template}"')
        await db.upgrade(admin_url.rsplit("/", 1)[0] + f"/{template}")
        await db.close()
        _templates["postgres"] = template
    name = f"loyalty_t_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_templates["postgres"]}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await db.connect(url)
        yield url
        await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
