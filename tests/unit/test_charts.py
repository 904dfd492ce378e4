"""KPI charts: every chart for an empty period, one rating and a year decodes as a PNG of the
right size and renders fast; significance marking, Pareto shares, empty states, labels."""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from PIL import Image

from charts import (
    LABELS_EN,
    LABELS_RU,
    ComplianceDay,
    ComplianceRow,
    DailyCounts,
    Labels,
    ReasonCount,
    StaffRow,
    comment_compliance_figure,
    daily_ratings_figure,
    format_period,
    heatmap_span,
    is_significant,
    like_index,
    negatives_heatmap_figure,
    pareto,
    rank_rows,
    reasons_pareto_figure,
    render_comment_compliance,
    render_daily_ratings,
    render_negatives_heatmap,
    render_reasons_pareto,
    render_sales_compliance,
    render_staff_ranking,
    sales_compliance_figure,
    staff_ranking_figure,
)
from charts.gallery import Sample, chart_renderers, main, sample
from charts.kpi import series
from charts.style import PALETTE, title_lines
from charts.text import _glyph, text_width, texts_in

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2024, 5, 7)  # a Tuesday


def empty_sample() -> Sample:
    return Sample(DAY, DAY, "Москва, Тверская 1", (9, 20), [], [], [[0] * 24 for _ in range(7)], [], [], [])


def one_rating_sample() -> Sample:
    heat = [[0] * 24 for _ in range(7)]
    heat[1][14] = 1
    return Sample(
        DAY, DAY, "Москва, Тверская 1", (9, 20),
        days=[DailyCounts(DAY, bad=1)], staff=[StaffRow("Анна Иванова", bad=1)], heatmap=heat,
        compliance=[ComplianceDay(DAY, due=1, on_time=0)], reasons=[ReasonCount("Долгое ожидание", 1)],
        sales=[ComplianceRow("Анна Иванова", 100.0, 1)],
    )


SAMPLES: dict[str, Callable[[], Sample]] = {
    "empty": empty_sample,
    "one rating": one_rating_sample,
    "year": lambda: sample(date(2023, 6, 1), 366, seed=11),
}
CHARTS = [name for name in chart_renderers(sample()) if name != "reasons-empty"]


@pytest.fixture(scope="module")
def month() -> Sample:
    return sample()


def said(fig: Figure) -> set[str]:
    """What the figure's labels say, each with line breaks as spaces (wrapping is layout)."""
    return {" ".join(t.split()) for t in texts_in(fig)}


def png_size(data: bytes) -> tuple[int, int]:
    """Decode the whole image (not only the header) and return its pixel size."""
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


# --- every chart, every kind of period ------------------------------------------------------


@pytest.mark.parametrize("period", SAMPLES)
@pytest.mark.parametrize("chart", CHARTS)
def test_chart_is_a_decodable_png_of_1200_by_800(chart: str, period: str) -> None:
    assert png_size(chart_renderers(SAMPLES[period]())[chart]()) == (1200, 800)


@pytest.mark.parametrize("render", [
    lambda size: render_daily_ratings([DailyCounts(DAY, 3, 1, 1)], "t", size=size),
    lambda size: render_staff_ranking([StaffRow("Анна", 3, 1, 1)], "t", size=size),
    lambda size: render_negatives_heatmap([[1] * 24] * 7, "t", size=size),
    lambda size: render_comment_compliance([ComplianceDay(DAY, 2, 1)], "t", size=size),
    lambda size: render_reasons_pareto([ReasonCount("Очередь", 2)], "t", size=size),
    lambda size: render_sales_compliance([ComplianceRow("Анна", 80, 6)], "t", size=size),
])
def test_chart_takes_another_pixel_size(render: Callable[[tuple[int, int]], bytes]) -> None:
    assert png_size(render((900, 600))) == (900, 600)


def test_each_chart_renders_well_under_a_second(month: Sample, capsys: pytest.CaptureFixture[str]) -> None:
    """Target is 150 ms per chart on 2 cores (see the report); the bound here is loose so a
    busy CI machine does not fail it. Medians are printed for the record."""
    year = SAMPLES["year"]()
    medians: dict[str, tuple[float, float]] = {}
    for name in CHARTS:
        row = []
        for s in (month, year):
            render = chart_renderers(s)[name]
            render()  # warm: glyph and font caches
            times = []
            for _ in range(5):
                start = time.perf_counter()
                render()
                times.append((time.perf_counter() - start) * 1000)
            row.append(statistics.median(times))
        medians[name] = (row[0], row[1])
    with capsys.disabled():
        print("\nchart render, median of 5 (ms): " + ", ".join(
            f"{name} {m:.0f}/{y:.0f}" for name, (m, y) in medians.items()) + "  (month/year)")
    assert max(max(v) for v in medians.values()) < 1000


def test_rendering_imports_no_pyplot() -> None:
    code = (
        "import sys, charts, charts.kpi, charts.style, charts.text, charts.gallery\n"
        "for render in charts.gallery.chart_renderers(charts.gallery.sample()).values(): render()\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_same_data_gives_the_same_png_bytes(month: Sample) -> None:
    render = chart_renderers(month)["daily-ratings"]
    assert render() == render()


def test_gallery_writes_every_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == sorted(f"{name}.png" for name in chart_renderers(sample()))
    assert all(png_size(p.read_bytes()) == (1200, 800) for p in tmp_path.glob("*.png"))


# --- formulas and helpers -------------------------------------------------------------------


def test_like_index_follows_the_design_formula() -> None:
    assert like_index(6, 2, 2) == pytest.approx(40.0)


def test_like_index_of_no_ratings_is_none() -> None:
    assert like_index(0, 0, 0) is None


def test_significance_threshold_is_inclusive() -> None:
    assert (is_significant(9, 10), is_significant(10, 10)) == (False, True)


def test_daily_series_fills_missing_days_with_zeros() -> None:
    starts, counts, weekly = series([DailyCounts(DAY, 1), DailyCounts(DAY + timedelta(days=2), 2)],
                                    ("good", "neutral", "bad"))
    assert (starts, counts[:, 0].tolist(), weekly) == ([DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)],
                                                         [1, 0, 2], False)


def test_long_periods_are_summed_by_monday_weeks() -> None:
    days = [DailyCounts(date(2024, 1, 1) + timedelta(days=i), good=1) for i in range(366)]
    starts, counts, weekly = series(days, ("good", "neutral", "bad"))
    assert weekly and counts[:, 0].sum() == 366 and all(s.weekday() == 0 for s in starts[1:])


def test_ranking_puts_small_counts_after_every_significant_row() -> None:
    rows = [StaffRow("новичок", good=3), StaffRow("хороший", good=20, bad=2), StaffRow("слабый", good=8, bad=8)]
    ranking = rank_rows(rows, lambda r: r.like_index, lambda r: r.total, lambda r: r.name, min_count=10)
    assert [r.name for r in ranking.rows] == ["хороший", "слабый", "новичок"]


def test_long_ranking_keeps_the_best_and_the_worst() -> None:
    rows = [StaffRow(f"s{i:02d}", good=10 + i, bad=10) for i in range(30)]
    ranking = rank_rows(rows, lambda r: r.like_index, lambda r: r.total, lambda r: r.name, min_count=10,
                        max_rows=10)
    names = [None if r is None else r.name for r in ranking.rows]
    assert (names[0], names[5], names[-1], ranking.elided) == ("s29", None, "s00", 21)


# --- not significant: hatched, faded, explained ---------------------------------------------


def _hatched_rows(fig: Figure) -> int:
    return sum(len(c.get_paths()) for c in fig.findobj(PolyCollection)
               if c.get_gid() == "not-significant" and c.get_hatch() == "//")


def test_staff_with_few_ratings_are_hatched_and_explained() -> None:
    fig = staff_ranking_figure([StaffRow("Анна", good=30, bad=2), StaffRow("Олег", good=4)], "t", min_ratings=10)
    # Олег's like-index bar plus his one non-empty count segment
    assert (_hatched_rows(fig), LABELS_RU.not_significant.format(min_n=10) in said(fig)) == (2, True)


def test_staff_threshold_is_a_parameter() -> None:
    fig = staff_ranking_figure([StaffRow("Анна", good=30, bad=2), StaffRow("Олег", good=4)], "t", min_ratings=3)
    assert _hatched_rows(fig) == 0


def test_sales_compliance_marks_few_conversations() -> None:
    fig = sales_compliance_figure([ComplianceRow("Анна", 90, 12), ComplianceRow("Олег", 100, 2)], "t",
                                  min_conversations=5)
    assert _hatched_rows(fig) == 1


# --- Pareto ---------------------------------------------------------------------------------


def test_pareto_sorts_descending_with_cumulative_percentages() -> None:
    bars = pareto([ReasonCount("b", 20), ReasonCount("a", 50), ReasonCount("c", 30)])
    assert [(b.label, b.count, round(b.cumulative_pct, 6)) for b in bars] == [
        ("a", 50, 50.0), ("c", 30, 80.0), ("b", 20, 100.0)]


def test_pareto_folds_the_tail_into_one_last_other_bar() -> None:
    reasons = [ReasonCount(f"r{i}", 10 - i) for i in range(6)]  # 10, 9, 8, 7, 6, 5 = 45
    bars = pareto(reasons, max_bars=4, other="Прочее")
    assert [(b.label, b.count, round(b.cumulative_pct, 1)) for b in bars] == [
        ("r0", 10, 22.2), ("r1", 9, 42.2), ("r2", 8, 60.0), ("Прочее", 18, 100.0)]


def test_pareto_merges_equal_reasons_and_drops_zeros() -> None:
    bars = pareto([ReasonCount("Очередь ", 2), ReasonCount("Очередь", 1), ReasonCount("Грубость", 0)])
    assert [(b.label, b.count) for b in bars] == [("Очередь", 3)]


def test_pareto_chart_plots_the_cumulative_line() -> None:
    fig = reasons_pareto_figure([ReasonCount("a", 3), ReasonCount("b", 1)], "t")
    assert [t for t in texts_in(fig) if t.endswith("%") and t[0].isdigit()] == ["75 %", "100 %"]


def test_pareto_keeps_a_reason_outside_control_only_if_every_merged_one_is() -> None:
    bars = pareto([ReasonCount("Цены", 2, outside=True), ReasonCount("Цены ", 1, outside=True),
                   ReasonCount("Очередь", 2, outside=True), ReasonCount("Очередь", 1), ReasonCount("Грубость", 1)])
    assert [(b.label, b.count, b.outside) for b in bars] == [
        ("Очередь", 3, False), ("Цены", 3, True), ("Грубость", 1, False)]


def test_reasons_outside_control_are_hatched_with_a_note() -> None:
    fig = reasons_pareto_figure([ReasonCount("Цены", 5, outside=True), ReasonCount("Грубость", 3),
                                 ReasonCount("Нет в наличии", 2, outside=True)], "t")
    ax = fig.axes[0]
    hatched = next(c for c in ax.collections if c.get_gid() == "outside")
    own = next(c for c in ax.collections if c.get_gid() == "reasons")
    assert (len(hatched.get_paths()), hatched.get_hatch(), len(own.get_paths()), own.get_hatch()) == (2, "//", 1, None)
    assert LABELS_RU.outside_control in said(fig)
    plain = reasons_pareto_figure([ReasonCount("Грубость", 3)], "t")
    assert LABELS_RU.outside_control not in said(plain)


# --- empty states ---------------------------------------------------------------------------


@pytest.mark.parametrize("reasons", [[], [ReasonCount("Очередь", 0)]])
def test_no_reasons_draws_an_honest_empty_state(reasons: list[ReasonCount]) -> None:
    fig = reasons_pareto_figure(reasons, "Причины недовольства · МСК-1 · 01.05–31.05.2024")
    assert (fig.axes, LABELS_RU.no_reasons in said(fig)) == ([], True)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: daily_ratings_figure([], "t"), LABELS_RU.no_ratings),
    (lambda: staff_ranking_figure([StaffRow("Анна")], "t"), LABELS_RU.no_ratings),
    (lambda: negatives_heatmap_figure([], "t"), LABELS_RU.no_negatives),
    (lambda: comment_compliance_figure([ComplianceDay(DAY, 0, 0)], "t"), LABELS_RU.no_due),
    (lambda: sales_compliance_figure([], "t"), LABELS_RU.no_conversations),
])
def test_every_chart_says_when_the_period_has_no_data(build: Callable[[], Figure], message: str) -> None:
    assert message in said(build())


def test_empty_state_keeps_the_title() -> None:
    title = "Причины недовольства · МСК-1 · 01.05–31.05.2024"
    assert title in said(reasons_pareto_figure([], title))


# --- labels, titles, colours ----------------------------------------------------------------


@pytest.mark.parametrize("labels", [LABELS_RU, LABELS_EN], ids=["ru", "en"])
def test_every_label_has_glyphs_in_the_chart_font(labels: Labels) -> None:
    strings = [v if isinstance(v, str) else " ".join(v) for v in (getattr(labels, f) for f in labels.__slots__)]
    missing = {c for s in strings for c in s if not c.isspace() and _glyph(c, False)[3] == 0}
    assert missing == set()


def test_decomposed_letters_are_drawn_composed() -> None:
    assert text_width("Андрей", 16) == text_width(unicodedata.normalize("NFD", "Андрей"), 16)


def test_english_labels_replace_russian_ones(month: Sample) -> None:
    fig = daily_ratings_figure(month.days, "Ratings by day", LABELS_EN)
    assert {"Good", "Like-index"} <= said(fig) and "Хорошо" not in said(fig)


def test_weekday_rows_are_monday_first() -> None:
    fig = negatives_heatmap_figure([[1] * 24] * 7, "t")
    texts = texts_in(fig)
    assert [t for t in texts if t in LABELS_RU.weekdays] == ["Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс"]


def test_heatmap_span_widens_working_hours_to_every_negative() -> None:
    heat = [[0] * 24 for _ in range(7)]
    heat[4][21] = 2
    assert heatmap_span(heat, (9, 20)) == (9, 22)


def test_heatmap_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="7 weekdays × 24 hours"):
        render_negatives_heatmap([[0] * 24] * 6, "t")


def test_compliance_day_rejects_more_on_time_than_due() -> None:
    with pytest.raises(ValueError, match="on_time"):
        ComplianceDay(DAY, due=1, on_time=2)


def test_title_breaks_between_its_parts_and_fits_the_width() -> None:
    lines = title_lines("Когда больно: негативные оценки по дням недели и часам · Москва, Тверская 1 · "
                        "01.05–31.05.2024", 1152)
    assert lines == ["Когда больно: негативные оценки по дням недели и часам",
                     "Москва, Тверская 1 · 01.05–31.05.2024"]


def test_title_never_runs_past_the_figure() -> None:
    lines = title_lines("Очень " * 60, 1152)
    assert len(lines) == 2 and all(text_width(line, 21, bold=True) <= 1152 for line in lines)


def test_format_period_states_both_ends() -> None:
    assert (format_period(date(2024, 5, 1), date(2024, 5, 31)),
            format_period(date(2023, 12, 15), date(2024, 1, 14)),
            format_period(DAY, DAY)) == ("01.05–31.05.2024", "15.12.2023–14.01.2024", "07.05.2024")


@pytest.mark.parametrize("chart", [c for c in CHARTS if c != "negatives-heatmap"])
def test_charts_use_only_the_palette(month: Sample, chart: str) -> None:
    """At most six colours (Okabe–Ito plus greys) besides black and white text."""
    builders = {
        "daily-ratings": lambda: daily_ratings_figure(month.days, "t"),
        "staff-ranking": lambda: staff_ranking_figure(month.staff, "t"),
        "comment-compliance": lambda: comment_compliance_figure(month.compliance, "t", target_pct=90),
        "reasons-pareto": lambda: reasons_pareto_figure(month.reasons, "t"),
        "sales-compliance": lambda: sales_compliance_figure(month.sales, "t", target_pct=80),
    }
    fig = builders[chart]()
    colours = set()
    for artist in fig.findobj(lambda a: hasattr(a, "get_facecolor") or hasattr(a, "get_color")):
        for getter in ("get_facecolor", "get_edgecolor", "get_color"):
            value = getattr(artist, getter, None)
            if value is None or artist is fig or artist.__class__.__name__ in ("Rectangle", "Spine"):
                continue
            got = value()
            for c in ([got] if isinstance(got, str) or getattr(got, "ndim", 1) == 1 else list(got)):
                if len(c) and (isinstance(c, str) or c[-1] > 0):
                    colours.add(to_hex(c, keep_alpha=False))
    assert colours - {"#000000", "#ffffff"} <= {to_hex(c) for c in PALETTE}
