"""Sample PNGs of every chart from a deterministic synthetic month: what the README shows.

    .venv/bin/python -m charts.gallery docs/charts            # writes the PNGs
    .venv/bin/python -m charts.gallery docs/charts --lang en  # English labels and titles
    .venv/bin/python -m charts.gallery --bench 15             # median render time per chart

The data is one office (Moscow, 8 employees, open Mon–Fri 09–20 and Sat 10–18) in May 2024:
ratings by hour with busier, grumpier lunch and evening hours, one new employee with too few
ratings to rank, comment deadlines mostly met, kiosk reasons for part of the negatives, and
scored conversations for the sales standard. Same seed, same pictures, so regenerating them
changes the files only when the charts change.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from charts.kpi import (
    ComplianceDay,
    ComplianceRow,
    DailyCounts,
    ReasonCount,
    StaffRow,
    render_comment_compliance,
    render_daily_ratings,
    render_negatives_heatmap,
    render_reasons_pareto,
    render_sales_compliance,
    render_staff_ranking,
)
from charts.style import LABELS_EN, LABELS_RU, Labels, format_period

__all__ = ["Sample", "chart_renderers", "main", "sample"]

# name, P(good), P(bad) at quiet hours; neutral is the rest
_STAFF: tuple[tuple[str, float, float], ...] = (
    ("Анна Иванова", 0.86, 0.03),
    ("Мария Смирнова", 0.80, 0.05),
    ("Дмитрий Кузнецов", 0.74, 0.08),
    ("Елена Попова", 0.82, 0.04),
    ("Сергей Васильев", 0.62, 0.16),
    ("Ольга Новикова", 0.77, 0.07),
    ("Игорь Фёдоров", 0.70, 0.10),
    ("Татьяна Морозова", 0.75, 0.10),  # joins for the last few days: too few ratings to rank
)
_NEWCOMER_DAYS = 1
_HOURS = {0: (9, 20), 1: (9, 20), 2: (9, 20), 3: (9, 20), 4: (9, 20), 5: (10, 18)}  # Sunday closed
_BUSY = {12: 1.7, 13: 1.8, 18: 1.6, 19: 1.4}  # clients per hour multiplier
_REASONS: tuple[tuple[str, float], ...] = (
    ("Долгое ожидание в очереди", 0.34),
    ("Не решили мой вопрос", 0.2),
    ("Невежливый сотрудник", 0.14),
    ("Навязывали услуги", 0.1),
    ("Ошибка в документах", 0.07),
    ("Работало одно окно", 0.06),
    ("Душно, негде присесть", 0.04),
    ("Не приняли карту", 0.025),
    ("Непонятные тарифы", 0.015),
    ("Долго искали заказ", 0.01),
)
_REASON_SHARE = 0.45  # negatives for which the kiosk got a reason
# reasons outside the employee's control: hatched on the chart
_OUTSIDE = {"Долгое ожидание в очереди", "Работало одно окно", "Душно, негде присесть", "Непонятные тарифы"}
_ON_TIME = 0.86


@dataclass(frozen=True, slots=True)
class Sample:
    """Inputs for every chart over one period and scope."""

    first: date
    last: date
    scope: str
    hours: tuple[int, int]
    days: list[DailyCounts]
    staff: list[StaffRow]
    heatmap: list[list[int]]
    compliance: list[ComplianceDay]
    reasons: list[ReasonCount]
    sales: list[ComplianceRow]


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: stable across Python versions, unlike library samplers."""
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def sample(first: date = date(2024, 5, 1), days: int = 31, *, seed: int = 7,
           scope: str = "Москва, Тверская 1", ratings_per_hour: float = 5.5) -> Sample:
    """A deterministic synthetic period for one office (see the module docstring)."""
    rng = random.Random(seed)
    last = first + timedelta(days=days - 1)
    daily: list[DailyCounts] = []
    per_staff = {name: [0, 0, 0] for name, _, _ in _STAFF}
    heat = [[0] * 24 for _ in range(7)]
    due: dict[date, list[int]] = {}
    reasons = {r: 0 for r, _ in _REASONS}
    reason_names, reason_weights = zip(*_REASONS, strict=True)
    for offset in range(days):
        day = first + timedelta(days=offset)
        wd = day.weekday()
        counts = [0, 0, 0]
        if wd in _HOURS:
            on_shift = [s for s in _STAFF if s[0] != _STAFF[-1][0] or offset >= days - _NEWCOMER_DAYS]
            for hour in range(*_HOURS[wd]):
                busy = _BUSY.get(hour, 1.0)
                for _ in range(_poisson(rng, ratings_per_hour * busy)):
                    name, p_good, p_bad = rng.choice(on_shift)
                    if name == _STAFF[-1][0] and rng.random() < 0.5:  # the newcomer serves fewer clients
                        name, p_good, p_bad = rng.choice(on_shift[:-1])
                    p_bad = min(0.6, p_bad * busy * (1.4 if wd == 0 else 1.0))
                    u = rng.random()
                    value = 2 if u < p_bad else 0 if u < p_bad + p_good else 1
                    counts[value] += 1
                    per_staff[name][value] += 1
                    if value == 2:
                        heat[wd][hour] += 1
                        deadline = day if hour < 19 else day + timedelta(days=1)
                        slot = due.setdefault(deadline, [0, 0])
                        slot[0] += 1
                        slot[1] += rng.random() < (_ON_TIME if name != "Сергей Васильев" else 0.6)
                        if rng.random() < _REASON_SHARE:
                            reasons[rng.choices(reason_names, reason_weights)[0]] += 1
        daily.append(DailyCounts(day, *counts))
    compliance = [ComplianceDay(d, n, ok) for d, (n, ok) in sorted(due.items()) if d <= last]
    sales = []
    for i, (name, p_good, _) in enumerate(_STAFF):
        conversations = 2 if i == len(_STAFF) - 1 else 4 + rng.randrange(10)
        score = max(0.0, min(100.0, p_good * 100 + rng.uniform(-12, 8)))
        sales.append(ComplianceRow(name, round(score, 1), conversations))
    return Sample(
        first=first, last=last, scope=scope, hours=(9, 20), days=daily,
        staff=[StaffRow(n, *c) for n, c in per_staff.items()], heatmap=heat, compliance=compliance,
        reasons=[ReasonCount(r, c, outside=r in _OUTSIDE) for r, c in reasons.items() if c], sales=sales,
    )


_TITLES = {
    "ru": {
        "daily": "Оценки клиентов по дням",
        "staff": "Сотрудники по лайк-индексу",
        "heatmap": "Когда больно: негативные оценки по дням недели и часам",
        "compliance": "Комментарии к негативам в срок",
        "reasons": "Причины недовольства",
        "sales": "Соблюдение стандарта продаж",
    },
    "en": {
        "daily": "Customer ratings by day",
        "staff": "Employees by like-index",
        "heatmap": "When it hurts: negative ratings by weekday and hour",
        "compliance": "Negatives commented on time",
        "reasons": "Reasons for dissatisfaction",
        "sales": "Sales-standard compliance",
    },
}


def chart_renderers(s: Sample, lang: str = "ru") -> dict[str, Callable[[], bytes]]:
    """``file stem -> render()`` for every chart of the sample, titled with period and scope."""
    labels: Labels = LABELS_RU if lang == "ru" else LABELS_EN
    titles = _TITLES[lang]
    period = format_period(s.first, s.last)

    def title(key: str) -> str:
        return f"{titles[key]} · {s.scope} · {period}"

    return {
        "daily-ratings": lambda: render_daily_ratings(s.days, title("daily"), labels),
        "staff-ranking": lambda: render_staff_ranking(s.staff, title("staff"), labels),
        "negatives-heatmap": lambda: render_negatives_heatmap(s.heatmap, title("heatmap"), labels, hours=s.hours),
        "comment-compliance": lambda: render_comment_compliance(s.compliance, title("compliance"), labels,
                                                                target_pct=90),
        "reasons-pareto": lambda: render_reasons_pareto(s.reasons, title("reasons"), labels),
        "sales-compliance": lambda: render_sales_compliance(s.sales, title("sales"), labels, target_pct=80),
        "reasons-empty": lambda: render_reasons_pareto([], title("reasons"), labels),
    }


def _bench(runs: int) -> None:
    """Median and worst render time per chart for the month sample, a year and an empty period."""
    month = sample()
    year = sample(date(2023, 6, 1), 366, seed=11)
    empty = Sample(month.first, month.last, month.scope, month.hours, [], [], [[0] * 24 for _ in range(7)], [], [],
                   [])
    for renderers in (chart_renderers(month),):
        for render in renderers.values():
            render()  # warm-up: font cache, first canvas
    print(f"ms per render, median of {runs}: wall (CPU of this process)")
    print(f"{'chart':<20} {'month':>11} {'year':>11} {'empty':>11}")
    for name in chart_renderers(month):
        if name == "reasons-empty":
            continue
        cells = []
        for s in (month, year, empty):
            render = chart_renderers(s)[name]
            wall, cpu = [], []
            for _ in range(runs):
                start, start_cpu = time.perf_counter(), time.process_time()
                render()
                wall.append((time.perf_counter() - start) * 1000)
                cpu.append((time.process_time() - start_cpu) * 1000)
            cells.append(f"{statistics.median(wall):4.0f} ({statistics.median(cpu):3.0f})")
        print(f"{name:<20} " + " ".join(f"{c:>11}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m charts.gallery", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", type=Path, help="where to write the PNGs")
    parser.add_argument("--lang", choices=("ru", "en"), default="ru")
    parser.add_argument("--bench", type=int, metavar="RUNS", help="time each chart RUNS times instead")
    args = parser.parse_args(argv)
    if args.bench:
        _bench(args.bench)
        return 0
    if args.outdir is None:
        parser.error("give OUTDIR (e.g. docs/charts) or --bench RUNS")
    args.outdir.mkdir(parents=True, exist_ok=True)
    renderers = chart_renderers(sample(), args.lang)
    suffix = "" if args.lang == "ru" else f".{args.lang}"
    for i, (name, render) in enumerate(renderers.items(), 1):
        start = time.perf_counter()
        png = render()
        ms = (time.perf_counter() - start) * 1000
        path = args.outdir / f"{name}{suffix}.png"
        path.write_bytes(png)
        print(f"[{i}/{len(renderers)}] {path}  {len(png) // 1024} KB  {ms:.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
