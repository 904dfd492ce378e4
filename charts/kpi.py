"""KPI charts for managers' reports: data in, PNG bytes out.

Each chart is a pair: ``x_figure(data, title, labels)`` builds a matplotlib ``Figure`` (tests
inspect its artists) and ``render_x(...)`` returns it as PNG bytes. Neither touches the
database, Telegram or the clock: callers pass counts already computed in the office's time
zone and a title that states the period and the scope (``"… · Москва, Тверская 1 ·
01.05–31.05.2024"``, see :func:`charts.style.format_period`). Rendering is CPU work (tens of
milliseconds): call ``render_x`` in an executor, never on the event loop.

Every chart has an honest empty state, a figure saying there is no data for the period, so a
report never sends a blank picture or fails on an empty week.

Formulas follow DESIGN.md: like-index ``(N+ − N-) / N × 100``; comment compliance is
negatives commented before their deadline over negatives due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Generic, TypeVar

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from charts.style import (
    ANNOT_PT,
    BAD,
    GOOD,
    INK,
    LABEL_PT,
    LABELS_RU,
    LINE,
    MUTED,
    NEUTRAL,
    SIZE,
    TICK_PT,
    Chart,
    Labels,
    bars,
    draw_axis_texts,
    fmt_signed,
    grid,
    nice_ticks,
    px_height,
    to_png,
    x_labels,
    y_labels,
)
from charts.text import Text, draw_texts, text_width, wrap_to_width

__all__ = [
    "MIN_CONVERSATIONS",
    "MIN_RATINGS",
    "ComplianceDay",
    "ComplianceRow",
    "DailyCounts",
    "Heatmap",
    "ParetoBar",
    "Ranking",
    "ReasonCount",
    "StaffRow",
    "comment_compliance_figure",
    "daily_ratings_figure",
    "heatmap_span",
    "is_significant",
    "like_index",
    "negatives_heatmap_figure",
    "pareto",
    "rank_rows",
    "reasons_pareto_figure",
    "render_comment_compliance",
    "render_daily_ratings",
    "render_negatives_heatmap",
    "render_reasons_pareto",
    "render_sales_compliance",
    "render_staff_ranking",
    "sales_compliance_figure",
    "staff_ranking_figure",
]

MIN_RATINGS = 10  # fewer ratings than this: an employee's like-index is not significant
MIN_CONVERSATIONS = 5  # the same for sales-standard compliance
WEEKLY_AFTER_DAYS = 62  # longer periods are drawn by week
MAX_ROWS = 20  # employees on one ranking chart
MAX_REASONS = 7  # bars on the Pareto chart, the last one "other" when there are more reasons

_MARGIN = 24
_HATCH = "//"
_FADED = 0.35  # alpha of not-significant bars
_NAME_PX = 300  # names longer than this are cut with "…"
_MIN_SLOTS = 6  # ranking charts with fewer rows keep this row height
# One hue (vermillion) from pale to dark: reads in greyscale and for every colour vision.
_HEAT = LinearSegmentedColormap.from_list("negatives", ["#FBE3D2", "#F2B48A", BAD, "#7A3500"])
_HEAT_ZERO = "#F4F4F4"

T = TypeVar("T")

# Seven rows (Monday … Sunday) of 24 counts (hours 0 … 23 in the office's time zone).
Heatmap = Sequence[Sequence[int]]


def _check_counts(obj: object, *fields: str) -> None:
    for name in fields:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a non-negative int, got {value!r}")


@dataclass(frozen=True, slots=True)
class DailyCounts:
    """Valid ratings of one local day."""

    day: date
    good: int = 0
    neutral: int = 0
    bad: int = 0

    def __post_init__(self) -> None:
        _check_counts(self, "good", "neutral", "bad")

    @property
    def total(self) -> int:
        return self.good + self.neutral + self.bad


@dataclass(frozen=True, slots=True)
class StaffRow:
    """One employee's valid ratings in the period."""

    name: str
    good: int = 0
    neutral: int = 0
    bad: int = 0

    def __post_init__(self) -> None:
        _check_counts(self, "good", "neutral", "bad")

    @property
    def total(self) -> int:
        return self.good + self.neutral + self.bad

    @property
    def like_index(self) -> float | None:
        return like_index(self.good, self.neutral, self.bad)


@dataclass(frozen=True, slots=True)
class ComplianceDay:
    """Negatives whose comment deadline fell on ``day``, and how many were commented in time."""

    day: date
    due: int = 0
    on_time: int = 0

    def __post_init__(self) -> None:
        _check_counts(self, "due", "on_time")
        if self.on_time > self.due:
            raise ValueError(f"ComplianceDay {self.day}: on_time {self.on_time} > due {self.due}")


@dataclass(frozen=True, slots=True)
class ReasonCount:
    """How often a reason for dissatisfaction was given (kiosk reasons, transcript rules);
    ``outside``: the reason is outside the employee's control (stock, price, queue)."""

    reason: str
    count: int
    outside: bool = False

    def __post_init__(self) -> None:
        _check_counts(self, "count")


@dataclass(frozen=True, slots=True)
class ComplianceRow:
    """One employee's sales-standard compliance (0–100 %) over ``conversations`` scored."""

    name: str
    score_pct: float
    conversations: int

    def __post_init__(self) -> None:
        _check_counts(self, "conversations")
        if not 0 <= self.score_pct <= 100:
            raise ValueError(f"ComplianceRow {self.name!r}: score_pct {self.score_pct} is outside 0…100")


@dataclass(frozen=True, slots=True)
class ParetoBar:
    label: str
    count: int
    cumulative_pct: float
    is_other: bool = False
    outside: bool = False  # outside the employee's control: drawn hatched


@dataclass(frozen=True, slots=True)
class Ranking(Generic[T]):
    """Rows to draw, best first; ``None`` marks the elided middle of a long ranking."""

    rows: list[T | None]
    elided: int  # significant rows left out in the middle
    hidden_small: int  # not-significant rows left out at the bottom


# --- pure helpers -------------------------------------------------------------------------


def like_index(good: int, neutral: int, bad: int) -> float | None:
    """``(N+ − N-) / N × 100``; ``None`` when there are no ratings."""
    total = good + neutral + bad
    return None if total == 0 else (good - bad) / total * 100


def is_significant(count: int, min_count: int = MIN_RATINGS) -> bool:
    """Whether ``count`` ratings (or conversations) are enough to rank someone by them."""
    return count >= min_count


def rank_rows(
    items: Iterable[T],
    value: Callable[[T], float],
    count: Callable[[T], int],
    name: Callable[[T], str],
    *,
    min_count: int,
    max_rows: int = MAX_ROWS,
) -> Ranking[T]:
    """Significant rows by ``value`` descending, then the not-significant ones, at most
    ``max_rows`` in all.

    Rows with a zero count are dropped. Rows below ``min_count`` come after every significant
    row (one good rating must not top the chart) and are the first left out. When the
    significant rows alone do not fit, the best and the worst are kept and the middle elided.
    """
    if max_rows < 3:
        raise ValueError("max_rows must be at least 3")
    present = [i for i in items if count(i) > 0]

    def order(item: T) -> tuple[float, int, str]:
        return (-value(item), -count(item), name(item))

    significant = sorted((i for i in present if is_significant(count(i), min_count)), key=order)
    small = sorted((i for i in present if not is_significant(count(i), min_count)), key=order)
    if len(significant) > max_rows:
        top = max_rows // 2
        bottom = max_rows - 1 - top
        rows: list[T | None] = [*significant[:top], None, *significant[len(significant) - bottom :]]
        return Ranking(rows, len(significant) - top - bottom, len(small))
    room = max_rows - len(significant)
    return Ranking([*significant, *small[:room]], 0, max(0, len(small) - room))


def pareto(reasons: Iterable[ReasonCount], max_bars: int = MAX_REASONS, other: str = "Прочее") -> list[ParetoBar]:
    """Reasons by count descending with the cumulative share; the tail beyond ``max_bars``
    becomes one last ``other`` bar (last whatever its size, as Pareto charts do).

    Equal reasons (after trimming spaces) are merged, outside the employee's control only if
    every one merged is; zero counts are dropped.
    """
    if max_bars < 2:
        raise ValueError("max_bars must be at least 2")
    merged: dict[str, int] = {}
    outside: dict[str, bool] = {}
    for r in reasons:
        key = " ".join(r.reason.split()) or "?"
        merged[key] = merged.get(key, 0) + r.count
        outside[key] = outside.get(key, True) and r.outside
    items = sorted(((k, v) for k, v in merged.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    tail = 0
    if len(items) > max_bars:
        tail = sum(v for _, v in items[max_bars - 1 :])
        items = items[: max_bars - 1]
    total = sum(v for _, v in items) + tail
    bars_: list[ParetoBar] = []
    running = 0
    for label, count in items:
        running += count
        bars_.append(ParetoBar(label, count, running / total * 100, outside=outside[label]))
    if tail:
        bars_.append(ParetoBar(other, tail, 100.0, is_other=True))
    return bars_


def series(rows: Iterable[object], fields: tuple[str, ...],
           weekly_after: int = WEEKLY_AFTER_DAYS) -> tuple[list[date], np.ndarray, bool]:
    """Counts per day from the first to the last day given (missing days are zeros), or per
    Monday-based week when that span is longer than ``weekly_after`` days (each week labelled
    by its first day in the span). Repeated days add up. Returns starts, counts, weekly."""
    by_day: dict[date, np.ndarray] = {}
    for row in rows:
        day = row.day  # type: ignore[attr-defined]
        counts = np.array([getattr(row, f) for f in fields], dtype=np.int64)
        by_day[day] = by_day[day] + counts if day in by_day else counts
    if not by_day:
        return [], np.zeros((0, len(fields)), dtype=np.int64), False
    first, last = min(by_day), max(by_day)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    zero = np.zeros(len(fields), dtype=np.int64)
    matrix = np.array([by_day.get(d, zero) for d in days])
    if len(days) <= weekly_after:
        return days, matrix, False
    starts = [i for i, d in enumerate(days) if i == 0 or d.weekday() == 0]
    return [days[i] for i in starts], np.add.reduceat(matrix, starts, axis=0), True


# --- shared layouts -----------------------------------------------------------------------


def _label_column(texts: Iterable[str], size: float = TICK_PT) -> float:
    return max((text_width(t, size) for t in texts), default=0.0)


def _axis_title_px() -> float:
    return px_height(LABEL_PT) + 12


def _series_chart(
    chart: Chart,
    starts: list[date],
    stacks: list[tuple[np.ndarray, str]],
    line: np.ndarray,
    *,
    left_label: str,
    right_label: str,
    right_range: tuple[float, float],
    right_ticks: list[int],
    right_fmt: Callable[[int], str],
    legend: list[tuple[str, str, str]],
    notes: list[str],
    target: tuple[float, str] | None = None,
) -> Figure:
    """Stacked bars per day or week on the left scale, one line on a right scale, and an
    optional target (value on the right scale, legend text) as a dashed line."""
    w, h = chart.w, chart.h
    if target is not None:
        legend = [*legend, ("dash", MUTED, target[1])]
    totals = np.sum([v for v, _ in stacks], axis=0)
    yt = nice_ticks(float(totals.max()))
    left_texts = [str(t) for t in yt]
    right_texts = [right_fmt(t) for t in right_ticks]
    left = _MARGIN + _axis_title_px() + _label_column(left_texts) + 10
    right = _MARGIN + _axis_title_px() + _label_column(right_texts) + 10
    top = chart.top + chart.legend(legend, left, chart.top) + 14
    bottom = chart.notes(notes) + px_height(TICK_PT) + 30
    ax = chart.axes(left, top, right, bottom)
    ax.spines["right"].set_visible(True)
    ax.spines["right"].set_color(LINE)

    n = len(starts)
    x = np.arange(n)
    base = np.zeros(n)
    for values, color in stacks:
        bars(ax, x, values, base=base, color=color, gid=color)
        base = base + values
    pad = max(0.0, (7 - n) / 2)  # a few bars stay bar-sized rather than filling the width
    ax.set_xlim(-0.6 - pad, n - 0.4 + pad)
    ax.set_ylim(0, yt[-1])
    grid(ax, yt[1:])

    lo, hi = right_range
    margin = (hi - lo) * 0.03

    def frac(v: np.ndarray | float) -> np.ndarray | float:
        return (np.asarray(v, dtype=float) - lo + margin) / (hi - lo + 2 * margin)

    on_axes_y = blended_transform_factory(ax.transData, ax.transAxes)
    markersize = 8 if n <= 31 else 6 if n <= 62 else 4
    ax.plot(x, frac(line), color=LINE, linewidth=3, marker="o", markersize=markersize, transform=on_axes_y,
            clip_on=False, zorder=4, gid="line")
    axes_texts = [Text(t, 1, float(frac(v)), TICK_PT, color=LINE, ha="left", va="center", dx=10)
                  for v, t in zip(right_ticks, right_texts, strict=True)]
    if target is not None:
        value = target[0]
        ax.add_collection(LineCollection([[(0, frac(value)), (1, frac(value))]], colors=MUTED, linewidths=1.5,
                                         linestyles="--", transform=ax.transAxes, zorder=3, gid="target"),
                          autolim=False)

    label_w = text_width("00.00", TICK_PT) + 22
    slot = (w - left - right) / max(n, 7)
    step = max(1, int(np.ceil(label_w / slot)))
    ticks = list(range(0, n, step))
    draw_axis_texts(
        ax,
        x=x_labels(ticks, [f"{starts[i]:%d.%m}" for i in ticks]),
        y=y_labels(yt, left_texts),
        axes=axes_texts,
    )
    mid = top + (h - top - bottom) / 2
    chart.text(left_label, _MARGIN + px_height(LABEL_PT) / 2, mid, LABEL_PT, ha="center", va="center", rotation=90)
    chart.text(right_label, w - _MARGIN - px_height(LABEL_PT) / 2, mid, LABEL_PT, ha="center", va="center",
               rotation=90, color=LINE)
    return chart.finish()


def _ranking_chart(
    chart: Chart,
    ranking: Ranking,
    *,
    name: Callable[[object], str],
    significant: Callable[[object], bool],
    labels: Labels,
    notes: list[str],
    legend: list[tuple[str, str, str]] | None,
    panels: list[tuple[float, Callable]],
) -> Figure:
    """Rows top to bottom with names on the left; ``panels`` are (width share, draw(ax, y))."""
    w, h = chart.w, chart.h
    rows = ranking.rows
    names = [labels.more_rows.format(n=ranking.elided) if r is None else _cut(name(r)) for r in rows]
    left = _MARGIN + _label_column(names) + 10
    top = chart.top + (chart.legend(legend, left, chart.top) + 10 if legend else 0) + 6
    bottom = chart.notes(notes) + px_height(TICK_PT) + px_height(LABEL_PT) + 40
    gap, right = 50, _MARGIN + 10
    plot_w = w - left - right - gap * (len(panels) - 1)
    x0 = left
    y = np.arange(len(rows))
    first = None
    for share, draw in panels:
        width = plot_w * share
        ax = chart.axes(x0, top, w - x0 - width, bottom)
        ax.set_ylim(max(len(rows), _MIN_SLOTS) - 0.45, -0.55)  # a few rows stay row-sized, at the top
        if first is None:
            first = ax
            ax.spines["left"].set_visible(True)
        else:
            ax.spines["left"].set_visible(False)
        draw(ax, y)
        x0 += width + gap
    colors = [MUTED if r is None or not significant(r) else INK for r in rows]
    draw_axis_texts(first, y=y_labels(list(y), names, colors=colors))
    return chart.finish()


def _cut(text: str) -> str:
    text = " ".join(text.split())
    if text_width(text, TICK_PT) <= _NAME_PX:
        return text
    while text and text_width(text + "…", TICK_PT) > _NAME_PX:
        text = text[:-1]
    return text.rstrip() + "…"


def _axis_title(ax, text: str, *, below_px: float) -> Text:
    return Text(text, 0.5, 0, LABEL_PT, ha="center", va="top", dy=-below_px)


def _value_labels(values: np.ndarray, rows: list, faint: Callable[[object], bool], texts: list[str], *,
                  inside_from: float, zero: float = 0.0) -> list[Text]:
    """Labels at the ends of horizontal bars: inside (white) for long bars, outside otherwise."""
    out = []
    for yi, (value, r, text) in enumerate(zip(values, rows, texts, strict=True)):
        if r is None:
            continue
        weak = faint(r)
        positive = value >= zero
        inside = abs(value - zero) >= inside_from
        ha = ("right" if positive else "left") if inside else ("left" if positive else "right")
        dx = (-8 if positive else 8) if inside else (8 if positive else -8)
        color = ("white" if not weak else INK) if inside else (MUTED if weak else INK)
        out.append(Text(text, float(value), yi, ANNOT_PT, color=color, ha=ha, va="center", bold=True, dx=dx))
    return out


# --- 1. ratings per day with the like-index -----------------------------------------------


def daily_ratings_figure(
    days: Sequence[DailyCounts],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    weekly_after: int = WEEKLY_AFTER_DAYS,
    size: tuple[int, int] = SIZE,
) -> Figure:
    """Stacked bad/neutral/good bars per day (per week for periods longer than
    ``weekly_after`` days) and the like-index as a line on a second scale (−100…100).
    Days missing between the first and the last given are drawn as days without ratings."""
    chart = Chart(title, size)
    starts, m, weekly = series(days, ("good", "neutral", "bad"), weekly_after)
    if m.sum() == 0:
        return chart.empty(labels.no_ratings)
    good, neutral, bad = m[:, 0], m[:, 1], m[:, 2]
    total = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(total > 0, (good - bad) / np.maximum(total, 1) * 100, np.nan)
    overall = like_index(*(int(v) for v in m.sum(axis=0))) or 0.0
    summary = labels.ratings_summary.format(n=int(total.sum()), index=fmt_signed(overall))
    return _series_chart(
        chart, starts, [(bad, BAD), (neutral, NEUTRAL), (good, GOOD)], index,
        left_label=labels.ratings, right_label=labels.like_index, right_range=(-100, 100),
        right_ticks=[-100, -50, 0, 50, 100], right_fmt=fmt_signed,
        legend=[("box", GOOD, labels.good), ("box", NEUTRAL, labels.neutral), ("box", BAD, labels.bad),
                ("line", LINE, labels.like_index)],
        notes=[summary + (f" · {labels.weekly}" if weekly else "")],
    )


def render_daily_ratings(
    days: Sequence[DailyCounts],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    weekly_after: int = WEEKLY_AFTER_DAYS,
    size: tuple[int, int] = SIZE,
) -> bytes:
    return to_png(daily_ratings_figure(days, title, labels, weekly_after=weekly_after, size=size))


# --- 2. employees ranked by like-index ----------------------------------------------------


def staff_ranking_figure(
    rows: Sequence[StaffRow],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    min_ratings: int = MIN_RATINGS,
    max_rows: int = MAX_ROWS,
    size: tuple[int, int] = SIZE,
) -> Figure:
    """Employees by like-index (left panel) with their good/neutral/bad counts (right panel).

    Employees with fewer than ``min_ratings`` ratings come after the others, hatched and
    faded, with a note saying their result is not significant (see :func:`rank_rows`).
    """
    chart = Chart(title, size)
    ranking = rank_rows(rows, lambda r: r.like_index or 0.0, lambda r: r.total, lambda r: r.name,
                        min_count=min_ratings, max_rows=max_rows)
    if not ranking.rows:
        return chart.empty(labels.no_ratings)

    def significant(r: StaffRow) -> bool:
        return is_significant(r.total, min_ratings)

    shown = ranking.rows
    small = np.array([r is not None and not significant(r) for r in shown])
    sig = np.array([r is not None and significant(r) for r in shown])
    notes = []
    if small.any():
        notes.append(labels.not_significant.format(min_n=min_ratings))
    if ranking.hidden_small:
        notes.append(labels.not_significant_hidden.format(hidden=ranking.hidden_small, min_n=min_ratings))
    index = np.array([0.0 if r is None else (r.like_index or 0.0) for r in shown])
    counts = np.array([(0, 0, 0) if r is None else (r.good, r.neutral, r.bad) for r in shown])
    totals = counts.sum(axis=1)
    title_gap = px_height(TICK_PT) + 20

    def draw_index(ax, y):
        ax.set_xlim(-100, 100)
        bars(ax, y[sig], index[sig], horizontal=True, width=0.7, color=LINE, gid="significant")
        bars(ax, y[small], index[small], horizontal=True, width=0.7, facecolor=LINE, alpha=_FADED, hatch=_HATCH,
             edgecolor=LINE, linewidths=0.8, gid="not-significant")
        grid(ax, [-100, -50, 50, 100], horizontal=False)
        grid(ax, [0], horizontal=False, color=MUTED, width=1.2, zorder=3)
        draw_axis_texts(
            ax,
            x=x_labels([-100, -50, 0, 50, 100], [fmt_signed(v) for v in (-100, -50, 0, 50, 100)]),
            data=_value_labels(index, shown, lambda r: not significant(r), [fmt_signed(v) for v in index],
                               inside_from=72),
            axes=[_axis_title(ax, labels.like_index, below_px=title_gap)],
        )

    def draw_counts(ax, y):
        top = max(1, int(totals.max()))
        panel_px = ax.get_position().width * chart.w
        label_px = text_width(labels.n.format(n=top), ANNOT_PT) + 16
        ax.set_xlim(0, top / max(0.3, 1 - label_px / panel_px))  # room for "n = …" after the longest bar
        ticks = [t for t in nice_ticks(top, 3) if t <= ax.get_xlim()[1]]
        for mask, style in ((sig, {}), (small, {"alpha": _FADED, "hatch": _HATCH, "linewidths": 0.8})):
            left = np.zeros(mask.sum())
            for col, color in ((0, GOOD), (1, NEUTRAL), (2, BAD)):
                extra = {"edgecolor": color} if style else {}
                bars(ax, y[mask], counts[mask, col], base=left, horizontal=True, width=0.7, facecolor=color,
                     gid="not-significant" if style else "significant", **style, **extra)
                left = left + counts[mask, col]
        grid(ax, ticks[1:], horizontal=False)
        texts = [Text(labels.n.format(n=int(t)), float(t), yi, ANNOT_PT,
                      color=MUTED if not significant(r) else INK, va="center", dx=8)
                 for yi, (t, r) in enumerate(zip(totals, shown, strict=True)) if r is not None]
        draw_axis_texts(
            ax,
            x=x_labels(ticks, [str(t) for t in ticks]),
            data=texts,
            axes=[_axis_title(ax, labels.ratings, below_px=title_gap)],
        )

    return _ranking_chart(
        chart, ranking, name=lambda r: r.name, significant=significant, labels=labels, notes=notes,
        legend=[("box", GOOD, labels.good), ("box", NEUTRAL, labels.neutral), ("box", BAD, labels.bad)],
        panels=[(0.6, draw_index), (0.4, draw_counts)],
    )


def render_staff_ranking(
    rows: Sequence[StaffRow],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    min_ratings: int = MIN_RATINGS,
    max_rows: int = MAX_ROWS,
    size: tuple[int, int] = SIZE,
) -> bytes:
    return to_png(staff_ranking_figure(rows, title, labels, min_ratings=min_ratings, max_rows=max_rows, size=size))


# --- 3. when it hurts: negatives by weekday and hour --------------------------------------


def _heatmap_array(counts: Heatmap) -> np.ndarray:
    data = np.asarray(counts, dtype=np.int64) if len(counts) else np.zeros((7, 24), dtype=np.int64)
    if data.shape != (7, 24):
        raise ValueError(f"heatmap must be 7 weekdays × 24 hours, got shape {data.shape}")
    if (data < 0).any():
        raise ValueError("heatmap counts must be non-negative")
    return data


def heatmap_span(counts: Heatmap, hours: tuple[int, int] | None = None) -> tuple[int, int]:
    """Hours ``[start, end)`` to draw: ``hours`` (e.g. the office's working span) widened to
    every hour that has a negative, or the whole day when ``hours`` is None."""
    data = _heatmap_array(counts)
    if hours is None:
        return 0, 24
    start, end = hours
    if not 0 <= start < end <= 24:
        raise ValueError(f"hours must satisfy 0 <= start < end <= 24, got {hours}")
    used = np.flatnonzero(data.sum(axis=0))
    if used.size:
        start, end = min(start, int(used[0])), max(end, int(used[-1]) + 1)
    return start, end


def negatives_heatmap_figure(
    counts: Heatmap,
    title: str,
    labels: Labels = LABELS_RU,
    *,
    hours: tuple[int, int] | None = None,
    size: tuple[int, int] = SIZE,
) -> Figure:
    """"When it hurts": negatives per weekday (rows Mon…Sun) and hour of the office's day.

    ``counts[weekday][hour]``, Monday = 0, hours in the office's time zone. ``hours=(9, 20)``
    draws the working span (widened to any hour that has negatives) instead of 0–23.
    """
    chart = Chart(title, size)
    data = _heatmap_array(counts)
    total = int(data.sum())
    if total == 0:
        return chart.empty(labels.no_negatives)
    start, end = heatmap_span(data, hours)
    part = data[:, start:end]
    cols = end - start
    w, h = chart.w, chart.h
    left = _MARGIN + _label_column(labels.weekdays) + 10
    bottom = chart.notes([labels.heatmap_note.format(n=total)]) + px_height(TICK_PT) + px_height(LABEL_PT) + 40
    ax = chart.axes(left, chart.top + 4, _MARGIN, bottom)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(6.5, -0.5)
    top_value = max(1, int(part.max()))
    rows_idx, cols_idx = np.indices(part.shape)
    gap = 0.06
    xs, ys = cols_idx.ravel(), rows_idx.ravel()
    verts = np.stack([np.c_[xs - 0.5 + gap, ys - 0.5 + gap], np.c_[xs - 0.5 + gap, ys + 0.5 - gap],
                      np.c_[xs + 0.5 - gap, ys + 0.5 - gap], np.c_[xs + 0.5 - gap, ys - 0.5 + gap]], axis=1)
    values = part.ravel()
    colors = np.where(values[:, None] > 0, _HEAT(values / top_value), np.array([[0.957, 0.957, 0.957, 1.0]]))
    ax.add_collection(PolyCollection(verts, facecolors=colors, linewidths=0, gid="cells"), autolim=False)
    cell_px = (w - left - _MARGIN) / cols
    size_pt = ANNOT_PT if text_width(str(top_value), ANNOT_PT, bold=True) < cell_px - 8 else ANNOT_PT - 3
    numbers = [Text(str(v), float(x), float(y), size_pt, color="white" if v > top_value * 0.45 else INK,
                    ha="center", va="center", bold=True)
               for x, y, v in zip(xs, ys, values, strict=True) if v]
    hour_step = 1 if text_width("23", TICK_PT) + 10 < cell_px else 2
    hour_ticks = [c for c in range(cols) if (start + c) % hour_step == 0]
    draw_axis_texts(
        ax,
        x=[*x_labels(hour_ticks, [str(start + c) for c in hour_ticks]),
           Text(labels.hour, (cols - 1) / 2, 0, LABEL_PT, ha="center", va="top", dy=-(px_height(TICK_PT) + 24))],
        y=y_labels(list(range(7)), list(labels.weekdays)),
        data=numbers,
    )
    return chart.finish()


def render_negatives_heatmap(
    counts: Heatmap,
    title: str,
    labels: Labels = LABELS_RU,
    *,
    hours: tuple[int, int] | None = None,
    size: tuple[int, int] = SIZE,
) -> bytes:
    return to_png(negatives_heatmap_figure(counts, title, labels, hours=hours, size=size))


# --- 4. comment compliance over time ------------------------------------------------------


def comment_compliance_figure(
    days: Sequence[ComplianceDay],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    target_pct: float | None = None,
    weekly_after: int = WEEKLY_AFTER_DAYS,
    size: tuple[int, int] = SIZE,
) -> Figure:
    """Negatives due per day (per week for long periods), split into commented on time and
    not, with the on-time share as a line (0–100 %) and an optional target as a dashed line."""
    chart = Chart(title, size)
    starts, m, weekly = series(days, ("due", "on_time"), weekly_after)
    if m.sum() == 0:
        return chart.empty(labels.no_due)
    due, on_time = m[:, 0], m[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(due > 0, on_time / np.maximum(due, 1) * 100, np.nan)
    total_due, total_on_time = int(due.sum()), int(on_time.sum())
    summary = labels.compliance_summary.format(pct=round(total_on_time / total_due * 100), on_time=total_on_time,
                                               due=total_due)
    return _series_chart(
        chart, starts, [(on_time, GOOD), (due - on_time, BAD)], share,
        left_label=labels.due, right_label=labels.on_time_share, right_range=(0, 100),
        right_ticks=[0, 25, 50, 75, 100], right_fmt=str,
        legend=[("box", GOOD, labels.on_time), ("box", BAD, labels.missed), ("line", LINE, labels.on_time_share)],
        notes=[summary + (f" · {labels.weekly}" if weekly else "")],
        target=None if target_pct is None else (target_pct, labels.target.format(pct=f"{target_pct:g}")),
    )


def render_comment_compliance(
    days: Sequence[ComplianceDay],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    target_pct: float | None = None,
    weekly_after: int = WEEKLY_AFTER_DAYS,
    size: tuple[int, int] = SIZE,
) -> bytes:
    return to_png(comment_compliance_figure(days, title, labels, target_pct=target_pct,
                                            weekly_after=weekly_after, size=size))


# --- 5. reasons for dissatisfaction (Pareto) ----------------------------------------------


def reasons_pareto_figure(
    reasons: Sequence[ReasonCount],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    max_bars: int = MAX_REASONS,
    size: tuple[int, int] = SIZE,
) -> Figure:
    """Reasons as bars sorted descending, the cumulative share as a line (0–100 %) with the
    80 % mark; reasons beyond ``max_bars`` make one grey "other" bar at the end. Reasons
    outside the employee's control (``ReasonCount.outside``) are hatched and faded, with a
    note saying so."""
    chart = Chart(title, size)
    found = pareto(reasons, max_bars, labels.other)
    if not found:
        return chart.empty(labels.no_reasons)
    outside = np.array([b.outside and not b.is_other for b in found])
    own = np.array([not b.outside and not b.is_other for b in found])
    other = np.array([b.is_other for b in found])
    w, h = chart.w, chart.h
    n = len(found)
    counts = np.array([b.count for b in found])
    cumulative = np.array([b.cumulative_pct for b in found])
    yt = nice_ticks(float(counts.max()))
    right_ticks = [0, 20, 40, 60, 80, 100]
    left = _MARGIN + _axis_title_px() + _label_column(str(t) for t in yt) + 10
    right = _MARGIN + _axis_title_px() + _label_column(str(t) for t in right_ticks) + 10
    slots = max(n, 5)
    slot_px = (w - left - right) / slots
    reason_pt = ANNOT_PT - 1
    wrapped = ["\n".join(wrap_to_width(b.label, slot_px - 2, reason_pt, max_lines=3)) for b in found]
    lines = max(t.count("\n") + 1 for t in wrapped)
    top = chart.top + chart.legend([("box", BAD, labels.mentions), ("line", LINE, labels.cumulative)], left,
                                   chart.top) + 14
    notes = [labels.outside_control] if outside.any() else []
    bottom = 24 + 10 + lines * px_height(reason_pt) * 1.22 + (chart.notes(notes) + 6 if notes else 0)
    ax = chart.axes(left, top, right, bottom)
    ax.spines["right"].set_visible(True)
    ax.spines["right"].set_color(LINE)
    x = np.arange(n)
    pad = max(0.0, (slots - n) / 2)
    ax.set_xlim(-0.5 - pad, n - 0.5 + pad)
    ax.set_ylim(0, yt[-1])
    bars(ax, x[own], counts[own], width=0.7, color=BAD, gid="reasons")
    bars(ax, x[outside], counts[outside], width=0.7, facecolor=BAD, alpha=_FADED, hatch=_HATCH, edgecolor=BAD,
         linewidths=0.8, gid="outside")
    bars(ax, x[other], counts[other], width=0.7, color=MUTED, gid="other")
    grid(ax, yt[1:])
    axes_h = h - top - bottom
    count_texts = []
    for xi, c, faded in zip(x, counts, outside, strict=True):
        tall = c / yt[-1] * axes_h > px_height(ANNOT_PT) * 1.6
        count_texts.append(Text(str(int(c)), float(xi), 0 if tall else float(c), ANNOT_PT,
                                color="white" if tall and not faded else INK, ha="center", va="bottom", bold=True,
                                dy=8))

    margin = 3.0

    def frac(v):
        return (np.asarray(v, dtype=float) + margin) / (100 + 2 * margin)

    on_axes_y = blended_transform_factory(ax.transData, ax.transAxes)
    ax.add_collection(LineCollection([[(0, frac(80)), (1, frac(80))]], colors=MUTED, linewidths=1.5,
                                     linestyles="--", transform=ax.transAxes, zorder=3), autolim=False)
    ax.plot(x, frac(cumulative), color=LINE, linewidth=3, marker="o", markersize=8, transform=on_axes_y,
            clip_on=False, zorder=4, gid="cumulative")
    # above and left of each point, where the rising line is not; above the first one if the
    # axes' edge is too close on its left
    first_room = (0.5 + pad) * slot_px
    pct_texts = []
    for xi, p in zip(x, cumulative, strict=True):
        text = f"{p:.0f} %"
        if xi == 0 and text_width(text, ANNOT_PT, bold=True) + 10 > first_room:
            pct_texts.append(Text(text, float(xi), float(frac(p)), ANNOT_PT, color=LINE, ha="center", va="bottom",
                                  bold=True, dy=16))
        else:
            pct_texts.append(Text(text, float(xi), float(frac(p)), ANNOT_PT, color=LINE, ha="right", va="bottom",
                                  bold=True, dx=-6, dy=8))
    draw_axis_texts(
        ax,
        x=[Text(t, float(xi), 0, reason_pt, ha="center", va="top", dy=-10) for xi, t in zip(x, wrapped, strict=True)],
        y=y_labels(yt, [str(t) for t in yt]),
        data=count_texts,
        axes=[Text(str(t), 1, float(frac(t)), TICK_PT, color=LINE, ha="left", va="center", dx=10)
              for t in right_ticks],
    )
    draw_texts(ax, pct_texts, on_axes_y, gid="cumulative-labels")
    mid = top + axes_h / 2
    chart.text(labels.mentions, _MARGIN + px_height(LABEL_PT) / 2, mid, LABEL_PT, ha="center", va="center",
               rotation=90)
    chart.text(labels.cumulative, w - _MARGIN - px_height(LABEL_PT) / 2, mid, LABEL_PT, ha="center",
               va="center", rotation=90, color=LINE)
    return chart.finish()


def render_reasons_pareto(
    reasons: Sequence[ReasonCount],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    max_bars: int = MAX_REASONS,
    size: tuple[int, int] = SIZE,
) -> bytes:
    return to_png(reasons_pareto_figure(reasons, title, labels, max_bars=max_bars, size=size))


# --- 6. sales-standard compliance by employee ---------------------------------------------


def sales_compliance_figure(
    rows: Sequence[ComplianceRow],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    min_conversations: int = MIN_CONVERSATIONS,
    target_pct: float | None = None,
    max_rows: int = MAX_ROWS,
    size: tuple[int, int] = SIZE,
) -> Figure:
    """Employees by sales-standard compliance (0–100 %), each with the number of scored
    conversations; fewer than ``min_conversations`` are hatched, faded and ranked last."""
    chart = Chart(title, size)
    ranking = rank_rows(rows, lambda r: r.score_pct, lambda r: r.conversations, lambda r: r.name,
                        min_count=min_conversations, max_rows=max_rows)
    if not ranking.rows:
        return chart.empty(labels.no_conversations)

    def significant(r: ComplianceRow) -> bool:
        return is_significant(r.conversations, min_conversations)

    shown = ranking.rows
    small = np.array([r is not None and not significant(r) for r in shown])
    sig = np.array([r is not None and significant(r) for r in shown])
    score = np.array([0.0 if r is None else r.score_pct for r in shown])
    notes = [labels.conversations_note.format(min_n=min_conversations)]
    if ranking.hidden_small:
        notes.append(labels.conversations_hidden.format(hidden=ranking.hidden_small, min_n=min_conversations))
    ticks = [0, 20, 40, 60, 80, 100]

    def draw(ax, y):
        ax.set_xlim(0, 100)
        bars(ax, y[sig], score[sig], horizontal=True, width=0.7, color=LINE, gid="significant")
        bars(ax, y[small], score[small], horizontal=True, width=0.7, facecolor=LINE, alpha=_FADED, hatch=_HATCH,
             edgecolor=LINE, linewidths=0.8, gid="not-significant")
        grid(ax, ticks[1:], horizontal=False)
        texts = [f"{s:.0f} % · " + labels.n.format(n=r.conversations) if r is not None else ""
                 for s, r in zip(score, shown, strict=True)]
        axes_texts = [_axis_title(ax, labels.compliance, below_px=px_height(TICK_PT) + 20)]
        if target_pct is not None:
            grid(ax, [target_pct], horizontal=False, color=MUTED, width=1.5, style="--", zorder=3)
            axes_texts.append(Text(labels.target.format(pct=f"{target_pct:g}"), target_pct / 100, 1, ANNOT_PT,
                                   color=MUTED, ha="center", va="bottom", dy=4))
        draw_axis_texts(
            ax,
            x=x_labels(ticks, [str(t) for t in ticks]),
            data=_value_labels(score, shown, lambda r: not significant(r), texts, inside_from=70),
            axes=axes_texts,
        )

    if target_pct is not None:
        chart.top += px_height(ANNOT_PT) + 8
    return _ranking_chart(chart, ranking, name=lambda r: r.name, significant=significant, labels=labels,
                          notes=notes, legend=None, panels=[(1.0, draw)])


def render_sales_compliance(
    rows: Sequence[ComplianceRow],
    title: str,
    labels: Labels = LABELS_RU,
    *,
    min_conversations: int = MIN_CONVERSATIONS,
    target_pct: float | None = None,
    max_rows: int = MAX_ROWS,
    size: tuple[int, int] = SIZE,
) -> bytes:
    return to_png(sales_compliance_figure(rows, title, labels, min_conversations=min_conversations,
                                          target_pct=target_pct, max_rows=max_rows, size=size))
