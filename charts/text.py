"""Text as glyph outlines, many labels in one ``PathCollection``: the charts' fast text.

A matplotlib ``Text`` costs about a millisecond to draw and a tick several (each is two lines,
two texts and a grid line), so a chart with forty labels spends most of its time on them. Here
a label is the outlines of its glyphs (DejaVu Sans, cached per character), and all labels of
one coordinate system are one collection that Agg fills in a single call. Kerning comes from
the font; no shaping is done, which Cyrillic and Latin do not need. Characters the font lacks
show as its "missing glyph" box. Sizes are in points, offsets in pixels.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.ft2font import Kerning, LoadFlags
from matplotlib.path import Path
from matplotlib.transforms import IdentityTransform, Transform

__all__ = ["Text", "TextCollection", "draw_texts", "text_width", "texts_in", "wrap_to_width"]

_SCALE = 100.0  # glyphs are loaded at 100 pt, 72 dpi: outline units are points at that size
_CAP = 0.73  # cap and digit height of DejaVu Sans, in em
_DESCENT = 0.24
_LINE = 1.22  # line spacing, in em


@dataclass(frozen=True, slots=True)
class Text:
    """One label: ``text`` anchored at ``(x, y)`` in the collection's coordinates."""

    text: str
    x: float
    y: float
    size: float
    color: str = "black"
    ha: str = "left"  # left | center | right
    va: str = "baseline"  # baseline | center | top | bottom (of capitals and digits)
    bold: bool = False
    rotation: int = 0  # 0 or 90 (reads bottom to top)
    dx: float = 0.0  # pixels
    dy: float = 0.0


def _font(bold: bool):
    return get_font(findfont(FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")))


@lru_cache(maxsize=4096)
def _glyph(char: str, bold: bool) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Outline (points at 100 pt), advance and glyph index; the font's box when it lacks one."""
    if unicodedata.category(char) in ("Mn", "Me", "Cf", "Cc"):  # joiners, selectors, controls
        return np.zeros((0, 2)), np.zeros(0, dtype=np.uint8), 0.0, 0
    font = _font(bold)
    font.set_size(_SCALE, 72)
    index = font.get_char_index(ord(char))
    glyph = font.load_glyph(index, flags=LoadFlags.NO_HINTING)
    verts, codes = font.get_path()
    return np.asarray(verts, dtype=float), np.asarray(codes, dtype=np.uint8), glyph.linearHoriAdvance / 65536, index


@lru_cache(maxsize=8192)
def _kern(left: int, right: int, bold: bool) -> float:
    font = _font(bold)
    font.set_size(_SCALE, 72)
    return font.get_kerning(left, right, Kerning.DEFAULT) / 64


@lru_cache(maxsize=512)  # names, numbers, labels: repeated across renders; a few MB at most
def _line(text: str, bold: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Outline of one line at 100 pt with the baseline at y = 0; its advance width.
    Text is composed first (NFC), so a decomposed "й" keeps its breve."""
    text = unicodedata.normalize("NFC", text)
    parts_v, parts_c = [], []
    x, previous = 0.0, None
    for char in text:
        verts, codes, advance, index = _glyph(char, bold)
        if previous is not None:
            x += _kern(previous, index, bold)
        if len(codes):
            parts_v.append(verts + (x, 0.0))
            parts_c.append(codes)
        x += advance
        previous = index
    if not parts_v:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.uint8), x
    return np.concatenate(parts_v), np.concatenate(parts_c), x


def text_width(text: str, size: float, *, bold: bool = False, dpi: float = 100) -> float:
    """Width in pixels of the widest line of ``text`` at ``size`` points."""
    return max(_line(line, bold)[2] for line in text.split("\n")) * size / _SCALE * dpi / 72


def wrap_to_width(text: str, width_px: float, size: float, *, bold: bool = False, max_lines: int = 3,
                  dpi: float = 100) -> list[str]:
    """Greedy word wrap by measured width; a word too long for a line is hyphenated; lines
    beyond ``max_lines`` are dropped and the last kept one ends with "…"."""

    def fits(s: str) -> bool:
        return text_width(s, size, bold=bold, dpi=dpi) <= width_px

    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        while not fits(word) and len(word) > 3:
            cut = _hyphen_cut(word, fits)
            lines.append(word[:cut] + "-")
            word = word[cut:]
        current = word
    if current or not lines:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1].rstrip("-")
        while last and not fits(last + "…"):
            last = last[:-1].rstrip()
        lines = [*lines[: max_lines - 1], last + "…"]
    return lines


_VOWELS = frozenset("аеёиоуыэюяaeiouy")


def _hyphen_cut(word: str, fits) -> int:
    """Where to hyphenate ``word``: the longest prefix that fits, moved back (by at most three
    letters) to just after a vowel followed by a consonant, which is a syllable break often
    enough in Russian and English; each part keeps at least two letters."""
    cut = len(word) - 2
    while cut > 2 and not fits(word[:cut] + "-"):
        cut -= 1
    for c in range(cut, max(2, cut - 3) - 1, -1):
        if word[c - 1].lower() in _VOWELS and word[c].lower() not in _VOWELS and word[c].isalpha():
            return c
    return max(2, cut)


def _path(item: Text, dpi: float) -> Path:
    scale = item.size / _SCALE * dpi / 72
    em = item.size * dpi / 72
    lines = item.text.split("\n")
    if item.va == "top":
        first_baseline = -_CAP * em
    elif item.va == "bottom":
        first_baseline = _DESCENT * em + (len(lines) - 1) * _LINE * em
    elif item.va == "center":
        first_baseline = -_CAP * em / 2 + (len(lines) - 1) * _LINE * em / 2
    else:
        first_baseline = 0.0
    verts_all, codes_all = [], []
    for i, line in enumerate(lines):
        verts, codes, advance = _line(line, item.bold)
        if not len(codes):
            continue
        width = advance * scale
        shift_x = {"left": 0.0, "center": -width / 2, "right": -width}[item.ha]
        verts_all.append(verts * scale + (shift_x, first_baseline - i * _LINE * em))
        codes_all.append(codes)
    if not verts_all:
        return Path(np.zeros((1, 2)), [Path.MOVETO])
    verts = np.concatenate(verts_all)
    if item.rotation == 90:
        verts = np.column_stack([-verts[:, 1], verts[:, 0]])
    elif item.rotation:
        raise ValueError("rotation must be 0 or 90")
    return Path(verts + (item.dx, item.dy), np.concatenate(codes_all))


class TextCollection(PathCollection):
    """Labels drawn as outlines; ``texts`` keeps what they say (for tests and debugging)."""

    def __init__(self, texts: Sequence[str], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.texts = tuple(texts)


def texts_in(fig) -> list[str]:
    """Every label drawn with :func:`draw_texts` in ``fig``, in drawing order."""
    return [t for c in fig.findobj(TextCollection) for t in c.texts]


def draw_texts(parent, items: Sequence[Text], transform: Transform, *, gid: str | None = None,
               zorder: float = 5) -> TextCollection | None:
    """Add ``items`` to ``parent`` (an Axes or a Figure) as one collection; anchors are in
    ``transform``'s coordinates (``ax.transData``, ``ax.transAxes``, ``fig.transFigure``…)."""
    if not items:
        return None
    dpi = parent.figure.dpi
    collection = TextCollection(
        [i.text for i in items], [_path(i, dpi) for i in items],
        offsets=np.array([(i.x, i.y) for i in items], dtype=float), offset_transform=transform, transform=IdentityTransform(),
        facecolors=[i.color for i in items], edgecolors="none", linewidths=0, zorder=zorder,
    )
    collection.set_clip_on(False)
    if gid:
        collection.set_gid(gid)
    if hasattr(parent, "add_collection"):
        parent.add_collection(collection, autolim=False)
    else:
        parent.add_artist(collection)
    return collection
