"""Cut the audio of one conversation out of a desk's recording segments, to the sample.

A desk recorder publishes its recording in segments (usually a minute each, any length),
each with the epoch ms of its first sample. Segments arrive late, out of order, twice, or
not at all; :func:`cut` turns whatever is stored into exactly the samples of one window:

* **timeline** — sample ``n`` of a segment sits at ``start_ms + n * 1000 / rate``; a segment's
  first sample lands on the window's sample grid at ``round((seg.start_ms - start_ms) * rate / 1000)``
  (exact for 8, 16, 48 kHz, where a millisecond is a whole number of samples)
* **length** — the output always has ``(end_ms - start_ms) * rate // 1000`` samples
* **order** — input order does not matter: segments are sorted by start (then longest first,
  then input order, so two identical starts still give one answer)
* **overlap and duplicates** — where segments overlap, the one that *starts earlier* wins and
  the later one contributes only what lies past the earlier one's end. The earlier segment is
  the recording that was already running, so the cut stays continuous across the overlap; a
  re-sent duplicate changes nothing; and the answer never depends on arrival order
* **gaps** — samples no segment covers are zeros, reported in :attr:`Cut.gaps` as merged
  ``(start_ms, end_ms)`` ranges; :attr:`Cut.has_audio` is false when nothing overlaps at all
* **rate** — every segment must already be at the cut's rate (decode with
  ``speech.audio.decode_pcm(data, rate)``); a mismatch is a ``ValueError``, not a silent resample

:func:`snippet_window` chooses the window for a negative rating (DESIGN "Audio snippet").
Pure functions, numpy only; the caller decodes, and encodes the result with
``speech.audio.encode_ogg_opus``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np

DEFAULT_RATE: Final = 16_000
BEFORE_S: Final = 180.0  # DESIGN: 3 min before the press when presence is unknown
AFTER_S: Final = 20.0  # ... and 20 s after it
MAX_S: Final = 600.0  # no snippet is longer than 10 min, whatever presence says
PRESENCE_PAD_S: Final = 5.0
"""Added on both sides of a presence interval: sensors and queue terminals are seconds late,
and the greeting and the goodbye are part of the conversation."""


@dataclass(frozen=True, slots=True, eq=False)
class Segment:
    """One recorder segment, decoded: mono ``int16`` PCM whose first sample is at ``start_ms``."""

    start_ms: int
    pcm: np.ndarray
    rate: int = DEFAULT_RATE

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.pcm.ndim != 1 or self.pcm.dtype != np.int16:
            raise ValueError(f"segment PCM must be 1-D int16, got {self.pcm.ndim}-D {self.pcm.dtype}")

    @property
    def end_ms(self) -> float:
        """Epoch ms just past the last sample."""
        return self.start_ms + self.pcm.size * 1000 / self.rate


@dataclass(frozen=True, slots=True, eq=False)
class Cut:
    """The window's audio: ``pcm`` always spans ``start_ms``–``end_ms`` exactly, zeros where nothing was."""

    pcm: np.ndarray
    rate: int
    start_ms: int
    end_ms: int
    gaps: list[tuple[int, int]]  # epoch-ms ranges with no audio, merged, in order
    covered_ms: int  # ms of the window that real audio covers

    @property
    def has_audio(self) -> bool:
        """False when no segment overlaps the window: do not send a snippet of silence."""
        return self.covered_ms > 0

    @property
    def duration_s(self) -> float:
        return self.pcm.size / self.rate

    @property
    def gap_ms(self) -> int:
        return sum(end - start for start, end in self.gaps)


def _div_round(numerator: int, denominator: int) -> int:
    """Integer division rounding half up: exact on epoch-scale numbers, unlike floats."""
    return (2 * numerator + denominator) // (2 * denominator)


def _sample_to_ms(start_ms: int, index: int, rate: int) -> int:
    return start_ms + _div_round(index * 1000, rate)


def cut(segments: Iterable[Segment], start_ms: int, end_ms: int, rate: int = DEFAULT_RATE) -> Cut:
    """The samples of ``[start_ms, end_ms)`` from ``segments``; see the module doc for the rules."""
    if end_ms <= start_ms:
        raise ValueError(f"empty window: {start_ms}..{end_ms}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    length = (end_ms - start_ms) * rate // 1000
    out = np.zeros(length, dtype=np.int16)

    placed: list[tuple[int, int, int, Segment]] = []  # (first sample in window, -length, input order, seg)
    for order, seg in enumerate(segments):
        if seg.rate != rate:
            raise ValueError(
                f"segment at {seg.start_ms} is {seg.rate} Hz, the cut is {rate} Hz: decode at {rate}"
            )
        if seg.pcm.size == 0:
            continue
        offset = _div_round((int(seg.start_ms) - start_ms) * rate, 1000)
        placed.append((offset, -seg.pcm.size, order, seg))
    placed.sort(key=lambda item: item[:3])

    gaps: list[tuple[int, int]] = []  # in samples of the window
    cursor = 0  # every sample before it is decided: filled, or a gap already recorded
    for offset, _, _, seg in placed:
        seg_end = offset + seg.pcm.size
        if seg_end <= cursor or offset >= length:
            continue  # wholly covered by earlier segments, ended before the window, or starts after it
        first = max(offset, cursor)  # the earlier-starting segment keeps the overlap
        last = min(seg_end, length)
        if first > cursor:
            gaps.append((cursor, first))
        out[first:last] = seg.pcm[first - offset : last - offset]
        cursor = last
    if cursor < length:
        gaps.append((cursor, length))

    gap_samples = sum(b - a for a, b in gaps)
    return Cut(
        pcm=out,
        rate=rate,
        start_ms=start_ms,
        end_ms=end_ms,
        gaps=[(_sample_to_ms(start_ms, a, rate), _sample_to_ms(start_ms, b, rate)) for a, b in gaps],
        covered_ms=_div_round((length - gap_samples) * 1000, rate),
    )


def snippet_window(
    press_ms: int,
    presence: tuple[int, int | None] | None,
    before_s: float = BEFORE_S,
    after_s: float = AFTER_S,
    max_s: float = MAX_S,
    *,
    presence_pad_s: float = PRESENCE_PAD_S,
) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of the snippet for a negative pressed at ``press_ms``.

    * presence known ``(arrived_ms, left_ms)``: from arrival to departure, widened by
      ``presence_pad_s`` on each side, and stretched to include the press if it fell outside
      (a client who presses on the way out). ``left_ms`` ``None`` (still at the desk when the
      rating is handled) means ``press_ms + after_s``.
    * presence unknown: ``[press − before_s, press + after_s]``.
    * longer than ``max_s``: the ``max_s`` that end ``after_s`` past the press — what the
      client rated happened just before they pressed — moved later only as far as needed to
      stay inside the window (a press in the first minutes of a long visit).

    The end may lie in the future: the caller waits for the segments (end + one segment
    length + upload latency) before cutting.
    """
    if min(before_s, after_s, presence_pad_s) < 0 or max_s <= 0:
        raise ValueError("before_s, after_s and presence_pad_s must be >= 0, max_s > 0")
    after_ms = round(after_s * 1000)
    max_ms = round(max_s * 1000)
    if presence is None:
        start, end = press_ms - round(before_s * 1000), press_ms + after_ms
    else:
        arrived, left = presence
        if left is None:
            left = max(press_ms, arrived) + after_ms
        if left < arrived:
            raise ValueError(f"presence ends before it starts: {arrived}..{left}")
        pad = round(presence_pad_s * 1000)
        start, end = min(arrived, press_ms) - pad, max(left, press_ms) + pad
    if end - start > max_ms:
        capped_end = min(end, press_ms + after_ms)
        capped_start = max(start, capped_end - max_ms)
        start, end = capped_start, capped_start + max_ms
    return start, end
