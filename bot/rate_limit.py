"""In-memory limits for the public survey endpoints: how often a device or an address may
submit, and whether a submission repeats one the same phone made a moment ago.

Both are O(1) per call and bounded in memory, because the survey endpoint must take a thousand
submissions a second on two cores. Both forget: state lives in one process and is lost on a
restart, which is fine for abuse control (a restart lets a flood through for one window at
most) and is why they decide nothing that must be durable — a repeat is *marked* unreliable,
the submission itself is still stored.

Time comes in as ``now``, a callable returning seconds: ``time.monotonic`` by default (a
wall-clock step must not unlock or lock anyone), a fake in tests, or :func:`clock_seconds` to
share the services' :class:`~bot.clock.Clock`. A step back of the clock counts as no time
passing.

Memory is bounded by ``max_keys``: keys are kept in the order of their last hit and the least
recently seen one is dropped when a new one arrives. Keys idle for a whole window are dropped
as hits go by, so the memory follows the active keys. A flood of more than ``max_keys``
distinct keys inside one window makes the oldest of them forget their history — the price of
the bound; the per-address limit stays in force for such a flood, as addresses cannot be made
up as cheaply as cookies.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from bot.clock import Clock

__all__ = ["Decision", "RepeatDetector", "SlidingWindowLimiter", "clock_seconds"]

_PRUNE_PER_CALL = 2  # idle keys dropped per call: amortised O(1), and more than one so the map shrinks


def clock_seconds(clock: Clock) -> Callable[[], float]:
    """``now`` for the limiters from the services' clock (UTC seconds; a ``FakeClock`` moves it)."""
    return lambda: clock.now().timestamp()


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a hit may pass; if not, how many seconds until one would (``Retry-After``,
    rounded up with ``math.ceil`` for the header)."""

    allowed: bool
    retry_after: float = 0.0


_ALLOW = Decision(True, 0.0)


class _Steady:
    """``now`` that never goes back: a step back of the clock counts as no time passing, and
    time goes on from there, so a corrected wall clock neither locks anyone out for the length
    of the correction nor makes the limiters forget."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._last_raw = -math.inf
        self._offset = 0.0

    def __call__(self) -> float:
        raw = self._now()
        if raw < self._last_raw:
            self._offset += self._last_raw - raw
        self._last_raw = raw
        return raw + self._offset


def _check_bounds(window_seconds: float, max_keys: int) -> None:
    if not (window_seconds > 0 and math.isfinite(window_seconds)):
        raise ValueError(f"window_seconds must be a positive number, got {window_seconds!r}")
    if max_keys < 1:
        raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")


class SlidingWindowLimiter:
    """At most ``limit`` allowed hits per key in any ``window_seconds`` — an exact sliding
    window, not fixed buckets, so a burst at a bucket's edge cannot pass twice the limit.

    Each key keeps the times of its last ``limit`` allowed hits in a ring: a hit passes when
    the oldest of them has left the window, and otherwise ``retry_after`` is exactly when it
    will. Refused hits are not recorded, so hammering does not extend the lock-out. Memory is
    about ``max_keys × (8 × limit + 200)`` bytes at most: meant for limits of a few to a few
    hundred per window (per device: a handful per ten minutes; per address: a hundred a
    minute).
    """

    def __init__(self, limit: int, window_seconds: float, max_keys: int = 100_000, *,
                 now: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}")
        _check_bounds(window_seconds, max_keys)
        self.limit = limit
        self.window_seconds = float(window_seconds)
        self.max_keys = max_keys
        self._now = _Steady(now)
        self._empty = array("d", [-math.inf]) * limit
        # key -> (ring of allowed-hit times, index of the oldest); ordered by last hit
        self._keys: OrderedDict[Hashable, list] = OrderedDict()

    def __len__(self) -> int:
        """How many keys are remembered (bounded by ``max_keys``)."""
        return len(self._keys)

    def hit(self, key: Hashable) -> Decision:
        """Count one hit by ``key`` if it is allowed, and say whether it is."""
        now = self._now()
        keys = self._keys
        entry = keys.get(key)
        if entry is None:
            self._make_room(now)
            entry = keys[key] = [array("d", self._empty), 0]
        else:
            keys.move_to_end(key)
        ring, oldest = entry
        free_at = ring[oldest] + self.window_seconds
        if free_at > now:
            return Decision(False, free_at - now)
        ring[oldest] = now
        entry[1] = (oldest + 1) % self.limit
        return _ALLOW

    def _make_room(self, now: float) -> None:
        keys = self._keys
        horizon = now - self.window_seconds
        for _ in range(_PRUNE_PER_CALL):
            if not keys:
                return
            key, (ring, oldest) = next(iter(keys.items()))
            if ring[oldest - 1] > horizon:  # its newest allowed hit is still in the window
                break
            del keys[key]
        while len(keys) >= self.max_keys:
            keys.popitem(last=False)


class RepeatDetector:
    """Did this device submit for this target less than ``window_seconds`` ago?

    The answer marks a submission unreliable, as the loyalty buttons' repeated presses are
    (``bot.ratings``): the first one counts, each one within the window of the one before it
    does not. The device key is whatever identifies a phone — a cookie id, or a hash of address
    and user agent; the target is what the code named, e.g. ``("point", 17)``.
    """

    def __init__(self, window_seconds: float, max_keys: int = 100_000, *,
                 now: Callable[[], float] = time.monotonic) -> None:
        _check_bounds(window_seconds, max_keys)
        self.window_seconds = float(window_seconds)
        self.max_keys = max_keys
        self._now = _Steady(now)
        self._last_seen: OrderedDict[tuple[Hashable, Hashable], float] = OrderedDict()

    def __len__(self) -> int:
        """How many (device, target) pairs are remembered (bounded by ``max_keys``)."""
        return len(self._last_seen)

    def is_repeat(self, device_key: Hashable, target: Hashable) -> bool:
        """Whether this is a repeat within the window; records the submission either way."""
        now = self._now()
        seen = self._last_seen
        pair = (device_key, target)
        previous = seen.get(pair)
        if previous is None:
            self._make_room(now)
        else:
            seen.move_to_end(pair)
        seen[pair] = now
        return previous is not None and now - previous < self.window_seconds

    def _make_room(self, now: float) -> None:
        seen = self._last_seen
        horizon = now - self.window_seconds
        for _ in range(_PRUNE_PER_CALL):
            if not seen:
                return
            pair, at = next(iter(seen.items()))
            if at > horizon:
                break
            del seen[pair]
        while len(seen) >= self.max_keys:
            seen.popitem(last=False)
