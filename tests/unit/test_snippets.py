"""Snippet cutting on generated tones, checked to the sample; the snippet window rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speech.snippets import Segment, cut, snippet_window

RATE = 16_000
T0 = 1_741_597_140_000  # an epoch-ms segment start, as in the MQTT audio topic
SPS = RATE // 1000  # samples per ms


def tone(freq: float, seconds: float, amplitude: int = 8000) -> np.ndarray:
    n = round(seconds * RATE)
    return (np.sin(2 * np.pi * freq * np.arange(n) / RATE) * amplitude).astype(np.int16)


def seg(start_ms: int, pcm: np.ndarray) -> Segment:
    return Segment(start_ms, pcm, RATE)


A = tone(440, 1.0)
B = tone(660, 1.0)
C = tone(880, 1.0)


# --- cutting ---------------------------------------------------------------------------------


def test_cut_across_a_boundary_is_the_tail_of_one_and_the_head_of_the_next() -> None:
    result = cut([seg(T0, A), seg(T0 + 1000, B)], T0 + 750, T0 + 1250)
    assert result.pcm.dtype == np.int16
    assert np.array_equal(result.pcm, np.concatenate([A[750 * SPS :], B[: 250 * SPS]]))
    assert (result.gaps, result.covered_ms, result.has_audio) == ([], 500, True)


@pytest.mark.parametrize(("start", "end"), [(0, 1), (3, 1000), (-250, 1999), (17, 2500), (0, 7)])
def test_output_length_is_the_window_to_the_sample(start: int, end: int) -> None:
    result = cut([seg(T0, A), seg(T0 + 1000, B)], T0 + start, T0 + end)
    assert result.pcm.size == (end - start) * RATE // 1000
    assert result.duration_s == (end - start) / 1000


def test_a_gap_between_segments_is_zeros_and_reported() -> None:
    result = cut([seg(T0, A), seg(T0 + 1500, B)], T0 + 500, T0 + 2000)
    gap = slice(500 * SPS, 1000 * SPS)
    assert np.array_equal(result.pcm[: 500 * SPS], A[500 * SPS :])
    assert not result.pcm[gap].any()
    assert np.array_equal(result.pcm[1000 * SPS :], B[: 500 * SPS])
    assert result.gaps == [(T0 + 1000, T0 + 1500)]
    assert (result.covered_ms, result.gap_ms) == (1000, 500)


def test_gaps_at_both_ends_and_between_are_separate_ranges() -> None:
    result = cut([seg(T0, A), seg(T0 + 2000, B)], T0 - 300, T0 + 3400)
    assert result.gaps == [(T0 - 300, T0), (T0 + 1000, T0 + 2000), (T0 + 3000, T0 + 3400)]
    assert result.covered_ms == 2000


def test_input_order_does_not_matter() -> None:
    segments = [seg(T0, A), seg(T0 + 1000, B), seg(T0 + 2000, C)]
    in_order = cut(segments, T0 + 100, T0 + 2900)
    shuffled = cut([segments[2], segments[0], segments[1]], T0 + 100, T0 + 2900)
    assert np.array_equal(in_order.pcm, shuffled.pcm)
    assert np.array_equal(shuffled.pcm, np.concatenate([A, B, C])[100 * SPS : 2900 * SPS])
    assert shuffled.gaps == in_order.gaps == []


def test_a_duplicate_segment_changes_nothing() -> None:
    once = cut([seg(T0, A), seg(T0 + 1000, B)], T0, T0 + 2000)
    twice = cut([seg(T0, A), seg(T0 + 1000, B), seg(T0, A.copy()), seg(T0 + 1000, B)], T0, T0 + 2000)
    assert np.array_equal(once.pcm, twice.pcm)
    assert (twice.gaps, twice.covered_ms) == ([], 2000)


def test_overlap_is_taken_from_the_segment_that_starts_earlier() -> None:
    late = seg(T0 + 600, B)  # overlaps A's last 400 ms, listed (received) first
    result = cut([late, seg(T0, A)], T0, T0 + 1600)
    assert np.array_equal(result.pcm, np.concatenate([A, B[400 * SPS :]]))
    assert result.gaps == []


def test_a_segment_inside_an_earlier_one_contributes_nothing() -> None:
    result = cut([seg(T0, A), seg(T0 + 200, tone(1000, 0.3))], T0, T0 + 1000)
    assert np.array_equal(result.pcm, A)


def test_same_start_prefers_the_longer_segment() -> None:
    short = seg(T0, tone(1000, 0.5))
    result = cut([short, seg(T0, A)], T0, T0 + 1000)
    assert np.array_equal(result.pcm, A)


def test_segments_partly_outside_the_window_are_trimmed() -> None:
    result = cut([seg(T0 - 500, A), seg(T0 + 500, B)], T0, T0 + 1000)
    assert np.array_equal(result.pcm, np.concatenate([A[500 * SPS :], B[: 500 * SPS]]))


@pytest.mark.parametrize(("start", "end"), [(-5000, -1000), (-1000, 0), (2000, 2500), (9000, 60000)])
def test_a_window_outside_all_audio_has_no_audio(start: int, end: int) -> None:
    result = cut([seg(T0, A), seg(T0 + 1000, B)], T0 + start, T0 + end)
    assert not result.has_audio
    assert result.gaps == [(T0 + start, T0 + end)]
    assert result.pcm.size == (end - start) * SPS and not result.pcm.any()


def test_no_segments_at_all_has_no_audio() -> None:
    result = cut([], T0, T0 + 1000)
    assert (result.has_audio, result.gaps, result.covered_ms) == (False, [(T0, T0 + 1000)], 0)


def test_empty_segments_leave_one_merged_gap() -> None:
    empty = np.zeros(0, dtype=np.int16)
    result = cut([seg(T0, A), seg(T0 + 1200, empty), seg(T0 + 1500, empty), seg(T0 + 2000, B)], T0, T0 + 3000)
    assert result.gaps == [(T0 + 1000, T0 + 2000)]


def test_a_segment_at_another_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="decode at 16000"):
        cut([Segment(T0, A, 8000)], T0, T0 + 1000)


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError):
        cut([seg(T0, A)], T0, T0)


def test_segment_pcm_must_be_mono_int16() -> None:
    with pytest.raises(ValueError):
        Segment(T0, A.astype(np.float32), RATE)
    with pytest.raises(ValueError):
        Segment(T0, np.stack([A, A]), RATE)


def test_48k_cut_is_sample_exact_too() -> None:
    pcm = (np.arange(48_000) % 30_000).astype(np.int16)
    result = cut([Segment(T0, pcm, 48_000)], T0 + 1, T0 + 2, rate=48_000)
    assert np.array_equal(result.pcm, pcm[48:96])


def _reference(segments: list[Segment], start_ms: int, end_ms: int) -> np.ndarray:
    """Sample by sample: the earliest-starting (then longest, then first listed) segment wins."""
    out = np.zeros((end_ms - start_ms) * SPS, dtype=np.int16)
    owner = np.full(out.size, -1)
    ranked = sorted(range(len(segments)), key=lambda i: (segments[i].start_ms, -segments[i].pcm.size, i))
    for i in ranked:
        s = segments[i]
        for k in range(s.pcm.size):
            n = (s.start_ms - start_ms) * SPS + k
            if 0 <= n < out.size and owner[n] < 0:
                owner[n], out[n] = i, s.pcm[k]
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 30), st.integers(1, 1000)), max_size=6),
    st.integers(-5, 40),
    st.integers(1, 40),
)
def test_cut_matches_a_sample_by_sample_reference(
    specs: list[tuple[int, int, int]], start: int, length: int
) -> None:
    # tiny segments (ms-scale) with distinct values so any misplaced sample shows
    segments = [seg(at, np.full(ms * SPS, value, dtype=np.int16)) for at, ms, value in specs]
    result = cut(segments, start, start + length)
    assert np.array_equal(result.pcm, _reference(segments, start, start + length))
    gap_samples = sum((b - a) * SPS for a, b in result.gaps)
    assert result.covered_ms * SPS == result.pcm.size - gap_samples
    assert all(a < b for a, b in result.gaps)
    assert all(prev[1] < nxt[0] for prev, nxt in zip(result.gaps, result.gaps[1:]))


# --- the snippet window ----------------------------------------------------------------------

PRESS = T0 + 3_600_000


def test_window_without_presence_is_3_min_before_and_20_s_after() -> None:
    assert snippet_window(PRESS, None) == (PRESS - 180_000, PRESS + 20_000)


def test_window_without_presence_uses_the_configured_spans() -> None:
    assert snippet_window(PRESS, None, before_s=60, after_s=5) == (PRESS - 60_000, PRESS + 5_000)


def test_window_with_presence_is_the_visit_padded_5_s() -> None:
    arrived, left = PRESS - 240_000, PRESS + 30_000
    assert snippet_window(PRESS, (arrived, left)) == (arrived - 5_000, left + 5_000)


def test_window_with_presence_includes_a_press_after_the_client_left() -> None:
    arrived, left = PRESS - 120_000, PRESS - 2_000
    assert snippet_window(PRESS, (arrived, left)) == (arrived - 5_000, PRESS + 5_000)


def test_window_with_an_open_presence_ends_after_s_past_the_press() -> None:
    arrived = PRESS - 60_000
    assert snippet_window(PRESS, (arrived, None)) == (arrived - 5_000, PRESS + 20_000 + 5_000)


def test_long_visit_keeps_the_last_10_min_up_to_20_s_after_the_press() -> None:
    arrived, left = PRESS - 3_600_000, PRESS + 600_000
    assert snippet_window(PRESS, (arrived, left)) == (PRESS + 20_000 - 600_000, PRESS + 20_000)


def test_long_visit_with_an_early_press_keeps_its_first_10_min() -> None:
    arrived, left = PRESS - 60_000, PRESS + 3_600_000
    assert snippet_window(PRESS, (arrived, left)) == (arrived - 5_000, arrived - 5_000 + 600_000)


def test_spans_longer_than_the_cap_end_after_the_press() -> None:
    assert snippet_window(PRESS, None, before_s=900, max_s=300) == (PRESS + 20_000 - 300_000, PRESS + 20_000)


@pytest.mark.parametrize(
    "kwargs", [{"before_s": -1}, {"after_s": -1}, {"max_s": 0}, {"presence_pad_s": -1}]
)
def test_window_refuses_nonsense_spans(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        snippet_window(PRESS, None, **kwargs)


def test_window_refuses_a_presence_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError):
        snippet_window(PRESS, (PRESS, PRESS - 1))
