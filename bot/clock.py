"""Time as a dependency: domain code asks a ``Clock``, tests hand it a ``FakeClock``.

Deadlines, reminders and retry backoff all wait on time; with ``FakeClock`` a test jumps past
them with ``advance`` instead of sleeping for real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """The two things about time that services need; ``now`` is UTC-aware."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock, for production."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told; sleepers wake when it passes their deadline.

    ``advance``/``set`` resolve the futures of due sleepers at once; the woken tasks run at
    the loop's next turn, so a test typically awaits ``asyncio.sleep(0)`` (or the task) after.
    """

    def __init__(self, start: datetime) -> None:
        self._now = _utc(start)
        self._order = itertools.count()  # equal deadlines wake in the order they slept
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Return once fake time reaches now + ``seconds``; ``<= 0`` just yields once."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + timedelta(seconds=seconds), next(self._order), future))
        await future

    def advance(self, delta: float | timedelta) -> None:
        """Move forward by ``delta`` seconds (or a timedelta) and wake who is due."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError(f"a clock does not go back; got {delta!r}")
        self.set(self._now + step)

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (not earlier than now) and wake who is due."""
        at = _utc(at)
        if at < self._now:
            raise ValueError(f"a clock does not go back: {at.isoformat()} < {self._now.isoformat()}")
        self._now = at
        while self._sleepers and self._sleepers[0][0] <= at:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():  # a cancelled sleeper leaves a done future behind
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are still waiting, so a test can check a task is parked."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    @property
    def next_deadline(self) -> datetime | None:
        """When the earliest waiting sleeper is due, so a test can jump straight to it."""
        pending = [d for d, _, f in self._sleepers if not f.done()]
        return min(pending) if pending else None


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"FakeClock needs a timezone-aware datetime, got naive {at.isoformat()}")
    return at.astimezone(UTC)


async def wait_first(*awaitables: Awaitable[object], timeout: float | None = None) -> None:
    """Return when any of them finishes (or after ``timeout``) and cancel the rest: how the
    background loops sleep until their next pass, their wake-up event or the stop signal."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
