"""Rate limiting and repeat detection on a fake clock: exactly ``limit`` per sliding window,
an exact ``retry_after``, one key's flood leaves the others alone, memory stays bounded."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from bot.clock import FakeClock
from bot.rate_limit import Decision, RepeatDetector, SlidingWindowLimiter, clock_seconds


class Seconds:
    """A float clock that moves only when told."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Seconds:
    return Seconds()


def allowed_count(limiter: SlidingWindowLimiter, key: object, hits: int) -> int:
    return sum(limiter.hit(key).allowed for _ in range(hits))


def test_exactly_limit_hits_pass_in_a_window(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(5, 60, now=clock)
    assert [limiter.hit("phone").allowed for _ in range(7)] == [True] * 5 + [False] * 2


def test_hits_spread_over_the_window_still_total_the_limit(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(5, 60, now=clock)
    results = []
    for _ in range(12):
        results.append(limiter.hit("phone").allowed)
        clock.advance(4.9)  # 12 hits in 58.8 s: all inside one window
    assert sum(results) == 5


def test_retry_after_is_when_the_oldest_hit_leaves_the_window(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(3, 60, now=clock)
    for step in (0, 10, 10):  # hits at 0, 10, 20 s
        clock.advance(step)
        limiter.hit("phone")
    clock.advance(5)  # at 25 s
    assert limiter.hit("phone") == Decision(False, pytest.approx(35.0))


def test_a_hit_passes_exactly_at_retry_after(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(2, 60, now=clock)
    limiter.hit("phone")
    clock.advance(1)
    limiter.hit("phone")
    refused = limiter.hit("phone")
    clock.advance(refused.retry_after - 0.001)
    early = limiter.hit("phone").allowed
    clock.advance(0.001)
    assert (early, limiter.hit("phone")) == (False, Decision(True, 0.0))


def test_window_slides_one_hit_frees_one_slot(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(3, 60, now=clock)
    for _ in range(3):
        limiter.hit("phone")
        clock.advance(20)  # hits at 0, 20, 40; now 60
    # at 60 s the hit of 0 s has left: one slot, then none until 80 s
    first, second = limiter.hit("phone"), limiter.hit("phone")
    assert (first.allowed, second.allowed, second.retry_after) == (True, False, pytest.approx(20.0))


def test_refused_hits_do_not_extend_the_lock_out(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(2, 60, now=clock)
    allowed_count(limiter, "phone", 2)
    for _ in range(59):
        clock.advance(1)
        limiter.hit("phone")
    clock.advance(1)
    assert limiter.hit("phone").allowed


def test_a_flood_from_one_key_passes_only_the_limit(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(10, 60, now=clock)
    passed = 0
    for _ in range(1_000):
        passed += limiter.hit("10.0.0.1").allowed
        clock.advance(0.01)  # 1,000 hits in 10 s
    assert passed == 10


def test_a_flood_from_one_key_leaves_other_keys_alone(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(10, 60, now=clock)
    allowed_count(limiter, "10.0.0.1", 1_000)
    assert [allowed_count(limiter, f"10.0.0.{i}", 10) for i in range(2, 6)] == [10, 10, 10, 10]


def test_memory_is_bounded_by_max_keys(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(3, 60, max_keys=100, now=clock)
    sizes = []
    for i in range(1_000):
        limiter.hit(f"cookie-{i}")
        sizes.append(len(limiter))
    assert max(sizes) == 100


def test_the_least_recently_seen_key_is_forgotten_first(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(1, 60, max_keys=3, now=clock)
    for key in ("a", "b", "c"):
        limiter.hit(key)
    limiter.hit("a")  # refused, but "a" is now the most recently seen
    limiter.hit("d")  # evicts "b"
    assert (limiter.hit("a").allowed, limiter.hit("c").allowed, limiter.hit("b").allowed) == (False, False, True)


def test_idle_keys_are_dropped_as_traffic_goes_on(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(3, 60, now=clock)
    for i in range(50):
        limiter.hit(f"morning-{i}")
    clock.advance(61)
    for i in range(30):
        limiter.hit(f"noon-{i}")
    assert len(limiter) == 30


def test_a_clock_stepping_back_counts_as_no_time_passing(clock: Seconds) -> None:
    limiter = SlidingWindowLimiter(1, 60, now=clock)
    limiter.hit("phone")
    clock.t -= 3_600  # the wall clock was corrected by an hour
    refused = limiter.hit("phone")
    clock.advance(60)
    assert (refused.retry_after, limiter.hit("phone").allowed) == (60.0, True)  # not locked out for an hour


def test_the_services_clock_drives_the_limiter() -> None:
    fake = FakeClock(datetime(2024, 5, 7, 12, tzinfo=UTC))
    limiter = SlidingWindowLimiter(1, 600, now=clock_seconds(fake))
    limiter.hit("phone")
    refused = limiter.hit("phone")
    fake.advance(600)
    assert (refused.retry_after, limiter.hit("phone").allowed) == (pytest.approx(600.0), True)


def test_a_hundred_thousand_hits_take_well_under_a_second() -> None:
    limiter = SlidingWindowLimiter(5, 600)
    keys = [f"cookie-{i % 20_000}" for i in range(100_000)]
    started = time.perf_counter()
    for key in keys:
        limiter.hit(key)
    assert time.perf_counter() - started < 1.0  # ~0.1 s: ≥ 1,000 hits/s is a rounding error


@pytest.mark.parametrize(("args", "message"), [((0, 60), "limit"), ((1, 0), "window"), ((1, float("inf")), "window"),
                                               ((1, 60, 0), "max_keys")])
def test_nonsense_limits_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlidingWindowLimiter(*args)


# --- repeats --------------------------------------------------------------------------------


def test_first_submission_is_not_a_repeat(clock: Seconds) -> None:
    assert RepeatDetector(600, now=clock).is_repeat("cookie-1", ("point", 17)) is False


def test_same_phone_same_target_within_the_window_is_a_repeat(clock: Seconds) -> None:
    repeats = RepeatDetector(600, now=clock)
    repeats.is_repeat("cookie-1", ("point", 17))
    clock.advance(599)
    assert repeats.is_repeat("cookie-1", ("point", 17)) is True


def test_same_phone_after_the_window_is_not_a_repeat(clock: Seconds) -> None:
    repeats = RepeatDetector(600, now=clock)
    repeats.is_repeat("cookie-1", ("point", 17))
    clock.advance(600)
    assert repeats.is_repeat("cookie-1", ("point", 17)) is False


def test_each_repeat_restarts_the_window_as_button_presses_do(clock: Seconds) -> None:
    repeats = RepeatDetector(600, now=clock)
    answers = []
    for _ in range(4):
        answers.append(repeats.is_repeat("cookie-1", ("point", 17)))
        clock.advance(400)  # each within 600 s of the one before, the last 1,200 s after the first
    assert answers == [False, True, True, True]


def test_another_target_or_another_phone_is_not_a_repeat(clock: Seconds) -> None:
    repeats = RepeatDetector(600, now=clock)
    repeats.is_repeat("cookie-1", ("point", 17))
    assert (repeats.is_repeat("cookie-1", ("staff", 17)), repeats.is_repeat("cookie-2", ("point", 17))) == \
        (False, False)


def test_repeat_memory_is_bounded_and_follows_active_pairs(clock: Seconds) -> None:
    repeats = RepeatDetector(600, max_keys=100, now=clock)
    peak = 0
    for i in range(1_000):
        repeats.is_repeat(f"cookie-{i}", ("point", 1))
        peak = max(peak, len(repeats))
    clock.advance(601)
    for i in range(10):
        repeats.is_repeat(f"later-{i}", ("point", 1))
    assert (peak, len(repeats)) == (100, 90)  # each new pair drops up to two idle ones
