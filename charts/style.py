"""What every chart shares: palette, type sizes, labels, the figure, its axes and its PNG.

Charts go to phones through Telegram, so they are 1200×800 px with large type (ticks 16 pt at
100 dpi on a 12-inch-wide figure), use at most six colours from the Okabe–Ito palette (safe
for the common colour-vision deficiencies) and speak Russian first.

matplotlib is used through its object API only: a ``Figure`` with an Agg canvas, no
``pyplot`` (no global figure registry; rendering in an executor thread is safe) and no
``rcParams`` changes. Layout is computed in pixels from measured text rather than with
``bbox_inches="tight"`` or constrained layout, which would lay every chart out twice, and
matplotlib's ticks are not used: every label is drawn by :mod:`charts.text`, so a chart
costs a few dozen milliseconds rather than a few hundred.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch
from matplotlib.transforms import IdentityTransform, blended_transform_factory
from PIL import Image

from charts.text import Text, draw_texts, text_width, wrap_to_width

__all__ = [
    "BAD",
    "DPI",
    "GOOD",
    "LABELS_EN",
    "LABELS_RU",
    "LINE",
    "MUTED",
    "NEUTRAL",
    "PALETTE",
    "SIZE",
    "Chart",
    "Labels",
    "format_period",
    "to_png",
]

# Okabe–Ito: the six colours used anywhere in the charts.
GOOD = "#009E73"  # bluish green
NEUTRAL = "#E69F00"  # orange
BAD = "#D55E00"  # vermillion
LINE = "#0072B2"  # blue: like-index, shares, scores
MUTED = "#666666"  # grey: notes, reference lines, empty states, "other"
GRID = "#DDDDDD"  # light grey: grid and frames
PALETTE = (GOOD, NEUTRAL, BAD, LINE, MUTED, GRID)
INK = "black"

DPI = 100
SIZE: tuple[int, int] = (1200, 800)  # pixels

TITLE_PT = 21
LABEL_PT = 17
TICK_PT = 16
ANNOT_PT = 15
NOTE_PT = 14
EMPTY_PT = 24

_MARGIN = 24  # pixels around the figure's content
_TITLE_LINES = 2


@dataclass(frozen=True, slots=True)
class Labels:
    """Every word a chart prints; :data:`LABELS_RU` is the default, :data:`LABELS_EN` the other.

    Strings with ``{…}`` are ``str.format`` templates. Counts are written as ``n = 12`` rather
    than with a noun, so no language needs plural forms here.
    """

    good: str = "Хорошо"
    neutral: str = "Нормально"
    bad: str = "Плохо"
    ratings: str = "Оценок"
    like_index: str = "Лайк-индекс"
    weekly: str = "по неделям (с понедельника)"
    weekdays: tuple[str, ...] = ("Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс")
    hour: str = "Час (время офиса)"
    heatmap_note: str = "Цифры — негативные оценки за период; всего {n}"
    on_time: str = "В срок"
    missed: str = "Позже срока или без комментария"
    due: str = "Негативов к комментированию"
    on_time_share: str = "Доля в срок, %"
    target: str = "цель {pct} %"
    mentions: str = "Упоминаний"
    cumulative: str = "Накопленная доля, %"
    other: str = "Прочее"
    compliance: str = "Соблюдение стандарта, %"
    n: str = "n = {n}"
    more_rows: str = "… ещё {n} …"
    ratings_summary: str = "Оценок: {n} · лайк-индекс: {index}"
    compliance_summary: str = "Итого в срок: {pct} % ({on_time} из {due})"
    not_significant: str = "Штриховка: меньше {min_n} оценок, результат не значим"
    not_significant_hidden: str = "Не показано сотрудников с числом оценок меньше {min_n}: {hidden}"
    conversations_note: str = "n — оценённых разговоров; штриховка: меньше {min_n}, результат не значим"
    conversations_hidden: str = "Не показано сотрудников с числом разговоров меньше {min_n}: {hidden}"
    no_ratings: str = "Нет оценок за период"
    no_negatives: str = "Нет негативных оценок за период"
    no_due: str = "За период не было негативов, которые нужно было прокомментировать"
    no_reasons: str = "Нет данных о причинах недовольства за период"
    no_conversations: str = "Нет оценённых разговоров за период"
    outside_control: str = "Штриховка: причины вне зоны ответственности сотрудника (цены, наличие, очередь)"


LABELS_RU = Labels()

LABELS_EN = Labels(
    good="Good",
    neutral="Neutral",
    bad="Bad",
    ratings="Ratings",
    like_index="Like-index",
    weekly="by week (starting Monday)",
    weekdays=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    hour="Hour (office time)",
    heatmap_note="Numbers are negative ratings in the period; {n} in all",
    on_time="On time",
    missed="Late or not commented",
    due="Negatives due a comment",
    on_time_share="Share on time, %",
    target="target {pct} %",
    mentions="Mentions",
    cumulative="Cumulative share, %",
    other="Other",
    compliance="Standard compliance, %",
    n="n = {n}",
    more_rows="… {n} more …",
    ratings_summary="Ratings: {n} · like-index: {index}",
    compliance_summary="On time overall: {pct} % ({on_time} of {due})",
    not_significant="Hatched: fewer than {min_n} ratings, not significant",
    not_significant_hidden="Not shown, fewer than {min_n} ratings: {hidden}",
    conversations_note="n — conversations scored; hatched: fewer than {min_n}, not significant",
    conversations_hidden="Not shown, fewer than {min_n} conversations: {hidden}",
    no_ratings="No ratings in the period",
    no_negatives="No negative ratings in the period",
    no_due="No negatives were due a comment in the period",
    no_reasons="No data on reasons for dissatisfaction in the period",
    no_conversations="No conversations scored in the period",
    outside_control="Hatched: reasons outside the employee's control (prices, stock, queue)",
)


def format_period(first: date, last: date) -> str:
    """``01.05–31.05.2024``, ``15.12.2023–14.01.2024``, ``07.05.2024``: for chart titles."""
    if first == last:
        return f"{first:%d.%m.%Y}"
    if first.year == last.year:
        return f"{first:%d.%m}–{last:%d.%m.%Y}"
    return f"{first:%d.%m.%Y}–{last:%d.%m.%Y}"


def title_lines(title: str, width_px: float, max_lines: int = _TITLE_LINES) -> list[str]:
    """The title in at most ``max_lines`` lines, broken at " · " separators where possible
    (``Что · Где · Когда`` splits between its parts), otherwise between words."""
    parts = [p.strip() for p in title.split(" · ") if p.strip()] or [""]
    lines: list[str] = []
    for part in parts:
        if lines and text_width(f"{lines[-1]} · {part}", TITLE_PT, bold=True) <= width_px:
            lines[-1] = f"{lines[-1]} · {part}"
        else:
            lines.extend(wrap_to_width(part, width_px, TITLE_PT, bold=True, max_lines=max_lines))
    if len(lines) > max_lines:
        rest = " ".join(lines[max_lines - 1 :])
        lines = [*lines[: max_lines - 1], *wrap_to_width(rest, width_px, TITLE_PT, bold=True, max_lines=1)]
    return lines


def fmt_signed(value: float) -> str:
    """``+42``, ``−7``, ``0``: the like-index as people write it."""
    text = f"{value:+.0f}"
    return "0" if text in ("+0", "-0") else text.replace("-", "−")


def px_height(points: float) -> float:
    return points * DPI / 72


class Chart:
    """A figure being drawn, in pixel coordinates (``y`` counted from the top).

    It collects figure-level labels and draws them as one collection in :meth:`finish`.
    """

    def __init__(self, title: str, size: tuple[int, int] = SIZE) -> None:
        self.w, self.h = size
        self.fig = Figure(figsize=(self.w / DPI, self.h / DPI), dpi=DPI, facecolor="white")
        FigureCanvasAgg(self.fig)
        self._texts: list[Text] = []
        lines = title_lines(title, self.w - 2 * _MARGIN)
        self.text("\n".join(lines), _MARGIN, _MARGIN, TITLE_PT, bold=True, va="top")
        # the first free pixel row below the title
        self.top = _MARGIN + px_height(TITLE_PT) * (0.73 + 1.22 * (len(lines) - 1)) + 22

    # -- figure-level drawing in pixels from the top-left corner --

    def text(self, text: str, x: float, y: float, size: float, **kw) -> None:
        self._texts.append(Text(text, x, self.h - y, size, **kw))

    def notes(self, lines: Sequence[str]) -> float:
        """Footnotes at the bottom left; returns the pixels they take."""
        step = px_height(NOTE_PT) * 1.45
        for i, line in enumerate(reversed(lines)):
            self.text(line, _MARGIN - 6, self.h - 14 - i * step, NOTE_PT, color=MUTED, va="bottom")
        return len(lines) * step + (14 if lines else 0)

    def legend(self, items: Sequence[tuple[str, str, str]], x: float, y: float) -> float:
        """A row of ``(kind, colour, label)`` keys, kind ``"box"``, ``"line"`` (with a marker)
        or ``"dash"``, starting at ``(x, y)`` (top left) and wrapping at the right margin;
        returns its height."""
        box = px_height(ANNOT_PT) * 0.9
        row_h = px_height(ANNOT_PT) * 1.6
        cx, cy = x, y
        boxes, lines = [], []
        for kind, color, label in items:
            width = box * (1 if kind == "box" else 1.8) + 8 + text_width(label, ANNOT_PT)
            if cx > x and cx + width > self.w - _MARGIN:
                cx, cy = x, cy + row_h
            mid = self.h - (cy + box / 2)
            if kind in ("line", "dash"):
                lines.append(((cx, cx + box * 0.9, cx + box * 1.8), (mid, mid, mid), color, kind))
                key_w = box * 1.8
            else:
                boxes.append(([(cx, mid - box / 2), (cx, mid + box / 2), (cx + box, mid + box / 2),
                               (cx + box, mid - box / 2)], color))
                key_w = box
            self.text(label, cx + key_w + 8, cy + box / 2, ANNOT_PT, va="center")
            cx += width + 28
        if boxes:
            self.fig.add_artist(PolyCollection([b for b, _ in boxes], facecolors=[c for _, c in boxes],
                                               linewidths=0, transform=IdentityTransform()))
        for xs, ys, color, kind in lines:
            style = {"linewidth": 3, "marker": "o", "markersize": 7, "markevery": [1]} if kind == "line" else \
                {"linewidth": 1.5, "linestyle": "--"}
            self.fig.add_artist(Line2D(xs, ys, color=color, transform=IdentityTransform(), **style))
        return cy - y + row_h

    def axes(self, left: float, top: float, right: float, bottom: float) -> Axes:
        """Axes occupying the given pixel box (distances from each figure edge), no ticks."""
        ax = self.fig.add_axes((left / self.w, bottom / self.h, (self.w - left - right) / self.w,
                                (self.h - top - bottom) / self.h))
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_color(MUTED)
        ax.patch.set_visible(False)
        return ax

    def empty(self, message: str) -> Figure:
        """The honest empty state: a sentence saying there is nothing to draw."""
        top = self.top
        self.fig.add_artist(FancyBboxPatch(
            (60 / self.w, 60 / self.h), 1 - 120 / self.w, (self.h - top - 80) / self.h,
            boxstyle="round,pad=0,rounding_size=0.02", transform=self.fig.transFigure, facecolor="none",
            edgecolor=GRID, linewidth=2, linestyle="--",
        ))
        lines = [line for part in message.split("\n") for line in wrap_to_width(part, self.w - 180, EMPTY_PT)]
        self.text("\n".join(lines), self.w / 2, (top + self.h - 60) / 2, EMPTY_PT, color=MUTED, ha="center",
                  va="center")
        return self.finish()

    def finish(self) -> Figure:
        draw_texts(self.fig, self._texts, IdentityTransform(), gid="figure-texts")
        self._texts = []
        return self.fig


# --- drawing into axes (all cheap: collections, no ticks) ---------------------------------


def bars(ax: Axes, pos: Sequence[float], length: Sequence[float], *, base: Sequence[float] | float = 0.0,
         width: float = 0.8, horizontal: bool = False, gid: str | None = None, **style) -> PolyCollection:
    """Bars as one collection: ``pos`` along the category axis, ``length`` from ``base``."""
    pos = np.asarray(pos, dtype=float)
    length = np.asarray(length, dtype=float)
    start = np.broadcast_to(np.asarray(base, dtype=float), pos.shape)
    keep = length != 0
    p, s, e = pos[keep], start[keep], start[keep] + length[keep]
    a, b = p - width / 2, p + width / 2
    if horizontal:
        verts = np.stack([np.c_[s, a], np.c_[s, b], np.c_[e, b], np.c_[e, a]], axis=1)
    else:
        verts = np.stack([np.c_[a, s], np.c_[a, e], np.c_[b, e], np.c_[b, s]], axis=1)
    style.setdefault("linewidths", 0)
    collection = PolyCollection(verts, **style)
    if gid:
        collection.set_gid(gid)
    ax.add_collection(collection, autolim=False)
    return collection


def grid(ax: Axes, values: Sequence[float], *, horizontal: bool = True, color: str = GRID, width: float = 1.0,
         style: str = "solid", zorder: float = 0.5) -> None:
    """Grid or reference lines across the axes at data ``values`` (y when ``horizontal``)."""
    if horizontal:
        segs = [[(0, v), (1, v)] for v in values]
        transform = blended_transform_factory(ax.transAxes, ax.transData)
    else:
        segs = [[(v, 0), (v, 1)] for v in values]
        transform = blended_transform_factory(ax.transData, ax.transAxes)
    ax.add_collection(LineCollection(segs, colors=color, linewidths=width, linestyles=style, transform=transform,
                                     zorder=zorder), autolim=False)


def x_labels(positions: Sequence[float], texts: Sequence[str], *, size: float = TICK_PT,
             color: str = INK) -> list[Text]:
    """Tick labels under the axes at data x ``positions``."""
    return [Text(t, p, 0, size, color=color, ha="center", va="top", dy=-10)
            for p, t in zip(positions, texts, strict=True)]


def y_labels(positions: Sequence[float], texts: Sequence[str], *, size: float = TICK_PT,
             colors: Sequence[str] | None = None) -> list[Text]:
    """Tick labels left of the axes at data y ``positions``."""
    colors = colors or [INK] * len(texts)
    return [Text(t, 0, p, size, color=c, ha="right", va="center", dx=-10)
            for p, t, c in zip(positions, texts, colors, strict=True)]


def draw_axis_texts(ax: Axes, *, x: Sequence[Text] = (), y: Sequence[Text] = (), data: Sequence[Text] = (),
                    axes: Sequence[Text] = ()) -> None:
    """Draw labels anchored in (data x, axes y), (axes x, data y), data and axes coordinates."""
    draw_texts(ax, list(x), blended_transform_factory(ax.transData, ax.transAxes), gid="x-labels")
    draw_texts(ax, list(y), blended_transform_factory(ax.transAxes, ax.transData), gid="y-labels")
    draw_texts(ax, list(data), ax.transData, gid="data-labels")
    draw_texts(ax, list(axes), ax.transAxes, gid="axes-labels")


def nice_ticks(top: float, count: int = 5) -> list[int]:
    """Integer ticks from 0 covering ``top``: 0, 5, 10 … with a 1-2-5 step."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    magnitude = 10 ** int(np.floor(np.log10(raw))) if raw >= 1 else 1
    step = next((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), 10 * magnitude)
    step = max(1, int(step))
    return list(range(0, int(np.ceil(top / step)) * step + 1, step))


def to_png(fig: Figure) -> bytes:
    """The figure as an RGB PNG of exactly its pixel size, with no timestamp or version inside
    (the same data gives the same bytes). The fastest zlib level: charts are flat colour, so
    files stay around 100 KB, and encoding is the largest single cost of a render."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
