"""Keeping ``rating_tally`` in step with ``rating``: the counts reports add up.

A company-wide month is ~80,000 ratings but ~25,000 tally rows (one per point, employee, day,
kind and exclusion reason that occurred), and the rows are narrow, so the report's grouped
queries read a fraction of the pages. Ratings never change after insert; ``add_tallies`` runs
in the inserting transaction and upserts the batch's counts in one statement per 500 keys,
keys sorted so that two ingest processes on PostgreSQL lock tally rows in the same order.

The upsert (``INSERT … ON CONFLICT … DO UPDATE``) is the same on SQLite ≥ 3.24 and
PostgreSQL; only the placeholders differ, which Tortoise leaves to the caller for raw SQL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.models import Rating

__all__ = ["TallyKey", "add_tallies", "add_tally_counts", "backfill_comment_seconds", "rebuild_tallies", "tally_keys"]

TallyKey = tuple[date, int, int, int, str, str]  # local_date, office, point, staff (0: nobody), value, reason ('' valid)

_COLUMNS = ("local_date", "office_id", "point_id", "staff_id", "value", "excluded_reason")
_CHUNK = 500


def tally_keys(ratings: Iterable[Rating]) -> Counter[TallyKey]:
    """How many of ``ratings`` fall under each tally key."""
    keys: Counter[TallyKey] = Counter()
    for r in ratings:
        if r.local_date is None:  # only rows from before local dates existed; the migration filled them
            continue
        reason = r.excluded_reason.value if r.excluded_reason is not None else ""
        keys[(r.local_date, r.office_id, r.point_id, r.staff_id or 0, str(r.value.value), reason)] += 1  # type: ignore[attr-defined]
    return keys


def _client() -> BaseDBAsyncClient:
    return Rating._meta.db  # inside ``in_transaction()``: the transaction's connection


def _postgres(client: BaseDBAsyncClient) -> bool:
    return client.capabilities.dialect == "postgres"


def _upsert_sql(client: BaseDBAsyncClient, rows: int) -> str:
    width = len(_COLUMNS) + 1
    if _postgres(client):
        groups = ("(" + ", ".join(f"${row * width + i + 1}" for i in range(width)) + ")" for row in range(rows))
    else:
        groups = ("(" + ", ".join("?" * width) + ")" for _ in range(rows))
    key = ", ".join(_COLUMNS)
    return (
        f"INSERT INTO rating_tally ({key}, ratings) VALUES {', '.join(groups)} "
        f"ON CONFLICT ({key}) DO UPDATE SET ratings = rating_tally.ratings + excluded.ratings"
    )


async def add_tallies(ratings: Iterable[Rating], client: BaseDBAsyncClient | None = None) -> int:
    """Count freshly inserted ``ratings`` into the tally; call it in the inserting transaction.

    Returns the number of tally keys touched.
    """
    return await add_tally_counts(tally_keys(ratings), client)


async def add_tally_counts(keys: Counter[TallyKey], client: BaseDBAsyncClient | None = None) -> int:
    """``add_tallies`` for counts the caller has made itself (the ingest counts as it builds rows)."""
    if not keys:
        return 0
    client = client or _client()
    postgres = _postgres(client)
    ordered = sorted(keys.items())
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        values: list[Any] = []
        for (day, office, point, staff, value, reason), count in chunk:
            values += [day if postgres else day.isoformat(), office, point, staff, value, reason, count]
        await client.execute_query(_upsert_sql(client, len(chunk)), values)
    return len(ordered)


async def rebuild_tallies(client: BaseDBAsyncClient) -> None:
    """Recount every tally from ``rating``: for the migration that adds the table and bulk loads."""
    await client.execute_script("DELETE FROM rating_tally")
    await client.execute_script(
        "INSERT INTO rating_tally (local_date, office_id, point_id, staff_id, value, excluded_reason, ratings) "
        "SELECT local_date, office_id, point_id, COALESCE(staff_id, 0), value, COALESCE(excluded_reason, ''), COUNT(*) "
        "FROM rating WHERE local_date IS NOT NULL "
        "GROUP BY local_date, office_id, point_id, COALESCE(staff_id, 0), value, COALESCE(excluded_reason, '')"
    )


async def backfill_comment_seconds(client: BaseDBAsyncClient) -> None:
    """Fill ``negative_case.comment_seconds`` for cases commented before the column existed."""
    if _postgres(client):
        seconds = "EXTRACT(EPOCH FROM (negative_case.commented_at - rating.ts))"
    else:
        seconds = "(julianday(negative_case.commented_at) - julianday(rating.ts)) * 86400.0"
    await client.execute_script(
        f"UPDATE negative_case SET comment_seconds = (SELECT {seconds} FROM rating WHERE rating.id = negative_case.rating_id) "
        "WHERE commented_at IS NOT NULL AND comment_seconds IS NULL"
    )
