"""Reports benchmark: ``/report`` on a year of ratings, command → last chart, through the real bot.

    .venv/bin/python bench/reports.py seed                      # 1,000,000 ratings → /tmp SQLite file
    .venv/bin/python bench/reports.py measure                   # 20 runs per scenario on that file
    .venv/bin/python bench/reports.py seed --database postgres://postgres@127.0.0.1:5432/bench_reports
    .venv/bin/python bench/reports.py measure --database postgres://postgres@127.0.0.1:5432/bench_reports
    .venv/bin/python bench/reports.py all --quick               # smoke run: 100k ratings, temp SQLite, 5 runs

``seed`` migrates the database (``bot.db.upgrade``), imports a generated organisation through
``bot.org.import_org`` (40 offices in nine Russian time zones with their working hours, 10
points and a native button each, 500 staff: front staff, a manager per office, quality, an
admin; everyone with a Telegram id), then bulk-inserts a year of ratings that look like the
real thing: inside working hours with lunch and evening peaks, weekdays busier, a seasonal
wave, offices and employees of different size and quality (≈ 70 % good, 15 % neutral, 15 %
bad), repeated presses excluded, the employee on duty at the point that day, the office's
local day and hour fixed as the ingest fixes them. Every valid negative gets its
``NegativeCase`` (deadline; commented on time, late or never — the never ones already
reminded and escalated, so the deadline scheduler has nothing to send), four offices count
clients with queue-terminal ``start`` events and sixteen enter them with ``/served``, so the
served figures exist. About 60 % of the bad ratings came from a kiosk or a QR page with one to
three reasons for dissatisfaction (a weighted list, some outside the employee's control), and
about 5 % of the ratings are followed by an NPS answer (22 % detractors, 53 % promoters).
Rows go in with ``executemany`` through the Tortoise connection in 20,000-row transactions on SQLite and with ``COPY`` on the raw asyncpg connection on
PostgreSQL (foreign-key triggers off for the load: the generated rows refer to rows that
exist); a table's plain indexes are dropped for its load and rebuilt after, from their own
definitions. PostgreSQL then gets ``VACUUM ANALYZE``, which autovacuum would do after such a
load anyway; SQLite gets no ``ANALYZE``, as in production, unless ``--analyze``. Nothing is
rated in the last two hours, so no deadline falls due while measuring.

``measure`` starts the service in-process (``bot.app.build`` + ``App.start``) against the Bot
API emulator of the tests, with a unique MQTT topic root and client id; the org is not
re-imported. Today's digests are marked as sent first so 40 morning digests do not land in
the middle of the runs. As the admin it sends ``/report 30d`` (company) and ``/report staff
CODE 365d`` (one employee of an office with presence data: their served figures come from
presence events) through ``emu.user_message`` and times each run from the send to the
emulator's record of the album (one ``sendMediaGroup``, so all photos arrive together); the
text summary's arrival is shown too. ``ReportService.build`` is wrapped (on the instance, as
a probe) to split every run into query / render / the rest (handler, upload, emulator).
Then, per scenario, without Telegram: ``ReportService.build`` called directly with every SQL
statement timed and labelled by the ``KpiService`` method that issued it; each chart's
``render_*`` timed separately on the same data; ``KpiService.summary`` alone; and one
hand-written SQL statement computing the same summary figures (counts by value and
exclusion, comment compliance; both periods, as the report compares with the previous one;
not the served figures nor the median time to comment), checked against ``summary``'s numbers. ``--explain N`` prints the plans of the N slowest
statements per scenario (``EXPLAIN QUERY PLAN`` / ``EXPLAIN (ANALYZE, BUFFERS)``).

Prints markdown tables with targets and met/not met, and always exits 0: it is a measurement.
The machine has 2 cores and other jobs may be running: the CPU line says how busy the rest of
the machine was while measuring; look at it first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import machine_busy_seconds, percentile, postgres_cpu_seconds, self_cpu_seconds  # noqa: E402

DEFAULT_DATABASE = "sqlite:///tmp/loyalty-bench-reports.sqlite3"
TARGET_P95 = {"sqlite": 1.0, "postgres": 0.7}  # seconds, command → last chart
TARGET_CHART_MS = 150.0
TARGET_QUERY_RATIO = 2.0
BATCH = {"sqlite": 20_000, "postgres": 50_000}
RECENT_GAP_HOURS = 2  # nothing rated in the last two hours: no deadline falls due while measuring
DAYS = 365


# --------------------------------------------------------------------------- small helpers


def ms(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    return f"{seconds * 1000:.1f} ms" if abs(seconds) < 0.01 else f"{seconds * 1000:,.0f} ms"


def p50(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p95(values: Sequence[float]) -> float:
    return percentile(list(values), 95)


def kind_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite://") :].split("?", 1)[0])


def pg_parts(url: str) -> tuple[str, str]:
    """(URL of the server's ``postgres`` database, database name) for a postgres:// URL."""
    plain = url.split("?", 1)[0]
    for prefix in ("asyncpg://", "postgresql://"):
        if plain.startswith(prefix):
            plain = "postgres://" + plain[len(prefix) :]
    base, _, name = plain.rpartition("/")
    return f"{base}/postgres", name


class Progress:
    """One ``\\r`` line on stderr: percent, rows/s, ETA (a line every 5 s when stderr is not a TTY)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(total, 1), 0
        self.started = self.shown = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.every = 0.2 if self.tty else 5.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.shown >= self.every and (self.tty or self.done < self.total):
            self.shown = now
            self._show(now)

    def _show(self, now: float, end: str = "") -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        bar = "#" * int(24 * self.done / self.total)
        line = (f"{self.label:<16} [{bar:<24}] {100 * self.done / self.total:5.1f} %  {self.done:>10,} rows"
                f"  {rate:>9,.0f} rows/s  ETA {eta:4.0f} s")
        if self.tty:
            print(f"\r{line}", end=end, file=sys.stderr, flush=True)
        else:  # a log file: whole lines, every 5 s and at the end
            print(line, file=sys.stderr, flush=True)

    def close(self) -> float:
        now = time.perf_counter()
        self._show(now, end="\n")
        return now - self.started


# --------------------------------------------------------------------------- the organisation

# (code prefix, city, zone, offices): 40 offices over nine zones, Moscow the heaviest
CITIES = [
    ("MSK", "Москва", "Europe/Moscow", 14), ("SPB", "Санкт-Петербург", "Europe/Moscow", 6),
    ("KGD", "Калининград", "Europe/Kaliningrad", 2), ("SMR", "Самара", "Europe/Samara", 3),
    ("EKB", "Екатеринбург", "Asia/Yekaterinburg", 4), ("NSK", "Новосибирск", "Asia/Novosibirsk", 4),
    ("KJA", "Красноярск", "Asia/Krasnoyarsk", 2), ("IRK", "Иркутск", "Asia/Irkutsk", 2),
    ("VVO", "Владивосток", "Asia/Vladivostok", 3),
]
STREETS = ["Ленина", "Мира", "Советская", "Гагарина", "Центральная", "Тверская", "Садовая", "Победы",
           "Пушкина", "Кирова", "Московская", "Лесная"]
HOURS = [  # office hours, org-file form
    {"mon-fri": "09:00-20:00", "sat": "10:00-18:00"},
    {"mon-sun": "10:00-22:00"},
    {"mon-fri": "08:30-19:30", "sat-sun": "10:00-17:00"},
    {"mon-sat": "09:00-21:00", "sun": "10:00-19:00"},
]
SURNAMES = ["Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов", "Новиков",
            "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов",
            "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Соловьёв", "Белов"]
FIRST_M = ["Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Артём", "Илья", "Кирилл", "Михаил",
           "Никита", "Роман", "Егор", "Павел", "Денис"]
FIRST_F = ["Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Екатерина", "Светлана", "Юлия",
           "Дарья", "Алина", "Ксения", "Виктория", "Полина"]
COMMENTS = ["Клиент ждал дольше обычного, очередь", "Не было нужного товара", "Сбой кассы, извинились",
            "Клиент недоволен ценой", "Долго оформляли документы", "Поговорили, вопрос решён",
            "Нажал случайно, по словам клиента", "Передали старшему смены"]
ADMIN_TELEGRAM_ID = 990_000_001
PRESENCE_OFFICES = 4  # the first offices count clients with queue terminals (presence "start" events)
MANUAL_OFFICES = 16  # the next ones enter clients served with /served


@dataclass
class OfficePlan:
    code: str
    zone: ZoneInfo
    hours: dict[str, str]
    weight: float
    deadline: int
    served: str | None  # "presence", "manual" or None
    front: list[str] = field(default_factory=list)  # front staff codes
    manager: str = ""
    staff_chat: int = 0


def make_org(rng: Any) -> tuple[dict[str, Any], list[OfficePlan]]:
    """The org YAML (as a dict for ``OrgFile``) and what the rating generator needs to know."""
    data: dict[str, Any] = {
        "company": "Bench Retail", "defaults": {"language": "ru", "comment_deadline_minutes": 30},
        "offices": [], "staff": [], "roster": [], "devices": [],
    }
    plans: list[OfficePlan] = []
    for prefix, city, zone, count in CITIES:
        for n in range(count):
            i = len(plans)
            code = f"{prefix}-{n + 1}"
            hours = HOURS[i % len(HOURS)]
            deadline = [30, 30, 30, 20, 60][i % 5]
            served = "presence" if i < PRESENCE_OFFICES else "manual" if i < PRESENCE_OFFICES + MANUAL_OFFICES else None
            weight = float(rng.lognormal(0.25 if prefix == "MSK" else 0.0, 0.35))
            plan = OfficePlan(code, ZoneInfo(zone), hours, weight, deadline, served,
                              staff_chat=-1002_000_000_000 - 2 * i - 1)
            plans.append(plan)
            data["offices"].append({
                "code": code, "name": f"{city}, {STREETS[(i * 5) % len(STREETS)]} {3 + 7 * n}", "timezone": zone,
                "working_hours": hours, "staff_chat": plan.staff_chat, "manager_chat": plan.staff_chat - 1,
                "comment_deadline_minutes": deadline,
                "points": [{"code": f"W{p + 1}", "name": f"Окно {p + 1}"} for p in range(10)],
            })
            for p in range(10):
                data["devices"].append({"id": f"btn-{code}-W{p + 1}", "kind": "native", "point": f"{code}/W{p + 1}"})

    def person(n: int) -> str:
        if rng.random() < 0.6:
            return f"{SURNAMES[n % len(SURNAMES)]}а {FIRST_F[(n * 7) % len(FIRST_F)]}"
        return f"{SURNAMES[n % len(SURNAMES)]} {FIRST_M[(n * 11) % len(FIRST_M)]}"

    data["staff"].append({"code": "admin", "name": "Администратор Бенча", "role": "admin", "telegram_id": ADMIN_TELEGRAM_ID})
    for q in range(2):
        data["staff"].append({"code": f"quality{q + 1}", "name": person(900 + q), "role": "quality",
                              "telegram_id": ADMIN_TELEGRAM_ID + 1 + q})
    # 457 front staff: the 17 heaviest offices get 12, the others 11
    heavy = set(sorted(range(len(plans)), key=lambda i: -plans[i].weight)[:17])
    serial = 0
    for i, plan in enumerate(plans):
        plan.manager = f"m{i + 1:02d}"
        data["staff"].append({"code": plan.manager, "name": person(700 + i), "role": "manager", "office": plan.code,
                              "telegram_id": 990_001_000 + i})
        for j in range(12 if i in heavy else 11):
            serial += 1
            code = f"s{serial:03d}"
            plan.front.append(code)
            data["staff"].append({"code": code, "name": person(serial), "role": "staff", "office": plan.code,
                                  "telegram_id": 990_100_000 + serial})
            weekday_hours = next(iter(plan.hours.values()))
            data["roster"].append({"staff": code, "point": f"{plan.code}/W{j % 10 + 1}",
                                   "days": "mon-fri" if j % 2 == 0 else "wed-sun", "hours": weekday_hours})
    return data, plans


# --------------------------------------------------------------------------- ratings


@dataclass
class Ids:
    office: dict[str, int]
    point: dict[tuple[str, int], int]  # (office code, point index) → id
    staff: dict[str, int]


@dataclass
class Generated:
    """Column arrays of every table to insert, ratings sorted by time (ids follow time)."""

    ratings: dict[str, Any]
    cases: dict[str, Any]
    presence: dict[str, Any]
    served: list[tuple[int, date, int, int, datetime]]  # office id, day, clients, entered by, entered at
    reasons: dict[str, Any] = field(default_factory=dict)  # rating index → reason index (REASONS), one row a link
    nps: dict[str, Any] = field(default_factory=dict)  # NPS answers: office, point, staff, score, times


def _minute_cdfs(hours: dict[str, str]) -> tuple[list[bool], Any]:
    """Per weekday: open at all, and the CDF over the day's minutes (lunch and evening peaks)."""
    import numpy as np

    from bot.working_hours import parse_days, parse_hours

    minutes = np.arange(1440)
    shape = 0.55 + np.exp(-(((minutes - 780) / 90.0) ** 2)) + 1.2 * np.exp(-(((minutes - 1080) / 100.0) ** 2))
    cdfs = np.zeros((7, 1440))
    open_days = [False] * 7
    for days, spec in hours.items():
        for wd in parse_days(days):
            mask = np.zeros(1440, dtype=bool)
            for start, end in parse_hours(spec):
                a = start.hour * 60 + start.minute
                b = 1440 if end.hour == 23 and end.minute == 59 and end.second == 59 else end.hour * 60 + end.minute
                mask[a:b] = True
            pmf = np.where(mask, shape, 0.0)
            if pmf.sum() > 0:
                open_days[wd] = True
                cdfs[wd] = np.cumsum(pmf) / pmf.sum()
    return open_days, cdfs


def generate(plans: list[OfficePlan], ids: Ids, total: int, rng: Any, now: datetime) -> Generated:
    import numpy as np

    cutoff = (now - timedelta(hours=RECENT_GAP_HOURS)).timestamp()
    weights = np.array([p.weight for p in plans])
    per_office = np.floor(weights / weights.sum() * total).astype(int)
    per_office[: total - per_office.sum()] += 1
    cols: dict[str, list[Any]] = defaultdict(list)
    presence: dict[str, list[Any]] = defaultdict(list)
    served: list[tuple[int, date, int, int, datetime]] = []
    point_weights = np.linspace(1.0, 0.55, 10)
    point_weights /= point_weights.sum()
    for o, plan in enumerate(plans):
        n = int(per_office[o])
        today = now.astimezone(plan.zone).date()
        first = today - timedelta(days=DAYS - 1)
        ords = np.array([first.toordinal() + d for d in range(DAYS)])
        weekday = np.array([(first + timedelta(days=d)).weekday() for d in range(DAYS)])
        offset = np.array([
            plan.zone.utcoffset(datetime.combine(first + timedelta(days=d), datetime.min.time()).replace(hour=12)).total_seconds()
            for d in range(DAYS)
        ])
        open_days, cdfs = _minute_cdfs(plan.hours)
        # day weights: open days, weekday rhythm, a seasonal wave, December peak, New Year lull, growth, noise
        doy = np.array([(first + timedelta(days=d)).timetuple().tm_yday for d in range(DAYS)])
        month_day = [(first + timedelta(days=d)) for d in range(DAYS)]
        w = np.array([1.0 if open_days[wd] else 0.0 for wd in weekday])
        w *= np.array([1.0, 1.05, 1.05, 1.1, 1.15, 0.85, 0.65])[weekday]
        w *= 1 + 0.12 * np.sin(2 * np.pi * (doy - 80) / 365.0)
        w *= np.array([1.3 if (d.month == 12 and d.day >= 15) else 0.45 if (d.month == 1 and d.day <= 8) else 1.0
                       for d in month_day])
        w *= np.linspace(0.85, 1.15, DAYS) * rng.lognormal(0.0, 0.12, DAYS)
        w /= w.sum()
        # who is on which point each day: 5 days on, 2 off, staggered; two weeks' holiday; shortfalls leave points unassigned
        k = len(plan.front)
        holiday = rng.integers(0, DAYS - 14, k)
        schedule = np.full((DAYS, 10), -1, dtype=np.int64)
        for d in range(DAYS):
            on = [j for j in range(k) if (d + j) % 7 < 5 and not holiday[j] <= d < holiday[j] + 14]
            rng.shuffle(on)
            for p, j in enumerate(on[:10]):
                schedule[d, p] = j
        # quality: the office's mix, each employee's around it; row 0 is "nobody identified"
        base = rng.dirichlet(np.array([0.70, 0.15, 0.15]) * 60)
        mixes = np.vstack([base] + [rng.dirichlet(base * 40) for _ in range(k)])
        cum = np.cumsum(mixes, axis=1)

        m = int(n * 1.04) + 20  # a few land in the last two hours and are dropped
        day = rng.choice(DAYS, size=m, p=w)
        point = rng.choice(10, size=m, p=point_weights)
        minute = np.zeros(m, dtype=np.int64)
        wd_of = weekday[day]
        for wd in range(7):
            sel = np.nonzero(wd_of == wd)[0]
            if len(sel):
                minute[sel] = np.minimum(np.searchsorted(cdfs[wd], rng.random(len(sel))), 1439)
        local_sec = minute * 60 + rng.random(m) * 60
        utc = (ords[day] - 719163) * 86400.0 + local_sec - offset[day]  # 719163 = date(1970, 1, 1).toordinal()
        keep = np.nonzero(utc <= cutoff)[0][:n]
        day, point, local_sec, utc = day[keep], point[keep], local_sec[keep], utc[keep]
        n = len(keep)
        who = schedule[day, point]
        u = rng.random(n)
        value = (u > cum[who + 1, 0]).astype(np.int64) + (u > cum[who + 1, 1]).astype(np.int64)  # 0 good 1 neutral 2 bad
        # repeated presses (3 %): the same point, person and (mostly) value a few seconds after another press
        repeat = rng.random(n) < 0.03
        rep = np.nonzero(repeat)[0]
        src = rng.choice(np.nonzero(~repeat)[0], size=len(rep))
        day[rep], point[rep], who[rep] = day[src], point[src], who[src]
        value[rep] = np.where(rng.random(len(rep)) < 0.8, value[src], rng.integers(0, 3, len(rep)))
        delta = rng.uniform(2.0, 9.0, len(rep))
        local_sec[rep] = local_sec[src] + delta
        utc[rep] = utc[src] + delta
        excluded = np.zeros(n, dtype=np.int64)  # 0 valid 1 repeat 2 no_client 3 manual
        excluded[rep] = 1
        r = rng.random(n)
        if plan.served == "presence":  # presence data says nobody stood at the desk
            excluded[(excluded == 0) & (r < 0.004)] = 2
        excluded[(excluded == 0) & (r > 0.9985)] = 3  # excluded by the quality service
        staff_ids = np.array([0] + [ids.staff[c] for c in plan.front], dtype=np.int64)
        cols["office"].append(np.full(n, ids.office[plan.code], dtype=np.int64))
        cols["point"].append(np.array([ids.point[(plan.code, p)] for p in range(10)], dtype=np.int64)[point])
        cols["point_no"].append(point)
        cols["office_no"].append(np.full(n, o, dtype=np.int64))
        cols["staff"].append(staff_ids[who + 1])
        cols["value"].append(value)
        cols["utc"].append(utc)
        cols["local_ord"].append(ords[day])
        cols["local_hour"].append(np.minimum(local_sec // 3600, 23).astype(np.int64))
        cols["excluded"].append(excluded)

        if plan.served is None:
            continue
        # clients served: ratings per point-day divided by the office's response rate
        rr = rng.uniform(0.28, 0.45)
        per_point_day = np.bincount(day * 10 + point, minlength=DAYS * 10).reshape(DAYS, 10)
        if plan.served == "presence":
            open_mask = np.array([open_days[wd] for wd in weekday])[:, None] & np.ones((1, 10), dtype=bool)
            lam = np.where(open_mask, np.maximum(per_point_day / rr, 1.0), 0.0)
            clients = rng.poisson(lam * rng.uniform(0.9, 1.1, lam.shape))
            flat = np.repeat(np.arange(DAYS * 10), clients.reshape(-1))
            pd_, pp = flat // 10, flat % 10
            pmin = np.zeros(len(flat), dtype=np.int64)
            for wd in range(7):
                sel = np.nonzero(weekday[pd_] == wd)[0]
                if len(sel):
                    pmin[sel] = np.minimum(np.searchsorted(cdfs[wd], rng.random(len(sel))), 1439)
                    pmin[sel] = np.maximum(pmin[sel] - rng.integers(1, 20, len(sel)), 0)  # the client came first
            putc = (ords[pd_] - 719163) * 86400.0 + pmin * 60 + rng.random(len(flat)) * 60 - offset[pd_]
            ok = putc <= cutoff
            pwho = schedule[pd_, pp]
            codes = np.array([""] + plan.front, dtype=object)
            presence["point"].append(np.array([ids.point[(plan.code, p)] for p in range(10)], dtype=np.int64)[pp][ok])
            presence["utc"].append(putc[ok])
            presence["local_ord"].append(ords[pd_][ok])
            presence["staff_code"].append(codes[pwho + 1][ok])
        else:
            manager = ids.staff[plan.manager]
            for d in range(DAYS):
                if not open_days[weekday[d]] or rng.random() < 0.1:
                    continue  # closed, or the manager forgot
                the_day = date.fromordinal(int(ords[d]))
                entered = datetime.combine(the_day + timedelta(days=1), datetime.min.time(), plan.zone).replace(hour=9, minute=30)
                entered = min(entered.astimezone(UTC), now - timedelta(minutes=5))
                clients = int(round(per_point_day[d].sum() / rr * rng.uniform(0.9, 1.1)))
                served.append((ids.office[plan.code], the_day, clients, manager, entered))

    ratings = {key: np.concatenate(parts) for key, parts in cols.items()}
    order = np.argsort(ratings["utc"], kind="stable")
    ratings = {key: arr[order] for key, arr in ratings.items()}
    ratings["id"] = np.arange(1, len(order) + 1, dtype=np.int64)
    ratings["received"] = ratings["utc"] + rng.uniform(0.05, 1.5, len(order))

    # a case for every valid negative: on time, late, or never commented (then reminded and escalated)
    bad = np.nonzero((ratings["value"] == 2) & (ratings["excluded"] == 0))[0]
    office_no = ratings["office_no"][bad]
    on_time_share = rng.uniform(0.62, 0.9, len(plans))[office_no]
    missed_share = rng.uniform(0.03, 0.18, len(plans))[office_no]
    u = rng.random(len(bad))
    outcome = np.where(u < on_time_share, 0, np.where(u < on_time_share + missed_share, 2, 1))  # 0 on time 1 late 2 never
    deadline = np.array([p.deadline for p in plans], dtype=np.float64)[office_no] * 60
    ts = ratings["utc"][bad]
    commented = np.where(outcome == 0, ts + rng.uniform(0.05, 0.98, len(bad)) * deadline,
                         ts + deadline + 60 + rng.exponential(90 * 60, len(bad)))
    commented = np.minimum(commented, now.timestamp() - 60)
    message_ids = np.zeros(len(bad), dtype=np.int64)
    for o in range(len(plans)):
        sel = np.nonzero(office_no == o)[0]
        message_ids[sel] = 1000 + np.arange(len(sel)) * 3
    managers = np.array([ids.staff[p.manager] for p in plans], dtype=np.int64)
    by = np.where(ratings["staff"][bad] > 0, ratings["staff"][bad], managers[office_no])
    cases = {
        "id": np.arange(1, len(bad) + 1, dtype=np.int64), "rating": ratings["id"][bad],
        "office": ratings["office"][bad], "chat": np.array([p.staff_chat for p in plans], dtype=np.int64)[office_no],
        "message": message_ids, "ts": ts, "deadline": deadline, "outcome": outcome, "commented": commented,
        "by": by, "text": rng.integers(0, len(COMMENTS), len(bad)),
    }
    presence_cols = {key: np.concatenate(parts) for key, parts in presence.items()} if presence else {
        "point": np.zeros(0, dtype=np.int64), "utc": np.zeros(0), "local_ord": np.zeros(0, dtype=np.int64),
        "staff_code": np.zeros(0, dtype=object)}
    porder = np.argsort(presence_cols["utc"], kind="stable")
    presence_cols = {key: arr[porder] for key, arr in presence_cols.items()}
    reasons, nps = feedback(ratings, rng)
    return Generated(ratings, cases, presence_cols, served, reasons, nps)


def feedback(ratings: dict[str, Any], rng: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the kiosks and QR pages add: reasons with ~60 % of the bad ratings (1–3 distinct
    reasons, weighted; those ratings come from a kiosk or a QR page, the rest from buttons) and
    an NPS answer after ~5 % of the ratings (scores 0–10 as in ``NPS_SCORES``). Sets
    ``ratings["channel"]``; returns the rating-reason links and the NPS answers."""
    import numpy as np

    n = len(ratings["id"])
    bad = np.nonzero(ratings["value"] == 2)[0]  # excluded ones too: reports must leave them out
    chosen = bad[rng.random(len(bad)) < REASON_SHARE]
    how_many = np.where(rng.random(len(chosen)) < 0.70, 1, np.where(rng.random(len(chosen)) < 0.83, 2, 3))
    weights = np.array([r[4] for r in REASONS])
    # k distinct reasons by weight without a Python loop: the k largest log-weight + Gumbel keys
    keys = np.log(weights) + rng.gumbel(size=(len(chosen), len(REASONS)))
    order = np.argsort(-keys, axis=1)
    picks = np.arange(3)[None, :] < how_many[:, None]
    channel = np.zeros(n, dtype=np.int64)  # 0 button 1 kiosk 2 qr
    channel[chosen] = np.where(rng.random(len(chosen)) < 2 / 3, 1, 2)
    ratings["channel"] = channel
    links = {
        "rating": np.repeat(ratings["id"][chosen], how_many),
        "reason": order[:, :3][picks],
    }
    answered = np.nonzero(rng.random(n) < NPS_SHARE)[0]
    after = rng.uniform(5.0, 60.0, len(answered))
    nps = {
        "office": ratings["office"][answered], "office_no": ratings["office_no"][answered],
        "point": ratings["point"][answered], "staff": ratings["staff"][answered],
        "score": rng.choice(11, size=len(answered), p=np.array(NPS_SCORES) / sum(NPS_SCORES)),
        "utc": ratings["utc"][answered] + after, "local_ord": ratings["local_ord"][answered],
        "channel": np.where(channel[answered] == 2, 2, 1),
    }
    return links, nps


# --------------------------------------------------------------------------- bulk writing

VALUES = ("good", "neutral", "bad")
EXCLUDED = (None, "repeat", "no_client", "manual")
RATING_COLUMNS = ("id", "event_uid", "device_id", "office_id", "point_id", "staff_id", "value", "ts", "received_at",
                  "ticket", "excluded_reason", "excluded_by", "local_date", "local_hour", "channel")
CHANNELS = ("button", "kiosk", "qr")
# reasons for dissatisfaction: code, label, English label, within the employee's control, weight
REASONS = [
    ("queue", "Долгое ожидание в очереди", "Long wait in the queue", False, 0.24),
    ("price", "Высокие цены", "High prices", False, 0.16),
    ("stock", "Нет нужного товара", "Item out of stock", False, 0.12),
    ("rude", "Невежливый сотрудник", "Impolite staff", True, 0.12),
    ("slow", "Долго обслуживали", "Slow service", True, 0.14),
    ("advice", "Не смогли помочь с вопросом", "Could not help with my question", True, 0.10),
    ("mistake", "Ошибка в чеке или документах", "Mistake in the receipt or papers", True, 0.07),
    ("premises", "Неудобно, душно, грязно", "Uncomfortable premises", False, 0.05),
]
REASON_SHARE = 0.6  # bad ratings that come with reasons
NPS_SHARE = 0.05  # ratings followed by an NPS answer
NPS_SCORES = [3, 1, 2, 2, 3, 5, 6, 10, 15, 20, 33]  # % answering 0…10: 22 % detractors, 53 % promoters, NPS ≈ +31
RATING_REASON_COLUMNS = ("id", "rating_id", "reason_id")
NPS_COLUMNS = ("id", "event_uid", "office_id", "point_id", "staff_id", "channel", "device_id", "score", "reason_text",
               "ts", "local_date", "received_at")
CASE_COLUMNS = ("id", "rating_id", "office_id", "chat_id", "message_id", "remind_at", "due_at", "reminded_at",
                "escalated_at", "overdue", "comment_text", "comment_by_id", "commented_at", "comment_late",
                "comment_speech_attempts", "speech_attempts", "comment_seconds")
PRESENCE_COLUMNS = ("id", "event_uid", "point_id", "state", "ticket", "staff_code", "ts", "local_date")
SERVED_COLUMNS = ("office_id", "day", "clients", "entered_by_id", "entered_at")


class Writer:
    """Rows to a table in batches: executemany (SQLite) or COPY (PostgreSQL), one transaction per batch."""

    def __init__(self, kind: str) -> None:
        from tortoise import connections

        self.kind = kind
        self.client = connections.get(kind)
        self._dates: dict[int, Any] = {}

    def ts_many(self, epochs: Any) -> list[Any]:
        """Many UTC timestamps at once: datetimes for asyncpg, Tortoise's text form for SQLite."""
        import numpy as np

        if self.kind == "postgres":
            return [datetime.fromtimestamp(x, UTC) for x in epochs.tolist()]
        micro = np.round(np.asarray(epochs) * 1e6).astype("int64").astype("datetime64[us]")
        return np.char.add(np.char.replace(np.datetime_as_string(micro, unit="us"), "T", " "), "+00:00").tolist()

    def ts(self, epoch: float) -> Any:
        value = datetime.fromtimestamp(epoch, UTC)
        return value if self.kind == "postgres" else str(value)  # what Tortoise stores on SQLite

    def day(self, ordinal: int) -> Any:
        value = self._dates.get(ordinal)
        if value is None:
            value = self._dates[ordinal] = date.fromordinal(ordinal) if self.kind == "postgres" else date.fromordinal(ordinal).isoformat()
        return value

    def flag(self, value: bool | None) -> Any:
        return value if self.kind == "postgres" or value is None else int(value)

    async def drop_indexes(self, table: str) -> list[str]:
        """Drop the table's plain (non-unique) indexes for the load; returns the statements that recreate them."""
        if self.kind == "postgres":
            rows = await self.client.execute_query_dict(
                "SELECT indexname AS name, indexdef AS sql FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1",
                [table])
        else:
            rows = await self.client.execute_query_dict(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", [table])
        plain = [row for row in rows if "UNIQUE" not in row["sql"].upper()]
        for row in plain:
            await self.client.execute_script(f'DROP INDEX "{row["name"]}"')
        return [row["sql"] for row in plain]

    async def write(self, table: str, columns: Sequence[str], batches: Iterable[list[tuple]], progress: Progress) -> None:
        if self.kind == "postgres":
            async with self.client.acquire_connection() as connection:
                # no foreign-key triggers for the load (generated rows refer to rows that exist): 10× faster
                await connection.execute("SET session_replication_role = replica")
                try:
                    for rows in batches:
                        await connection.copy_records_to_table(table, records=rows, columns=list(columns))
                        progress.add(len(rows))
                finally:
                    await connection.execute("RESET session_replication_role")
            return
        sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
        for rows in batches:
            await self.client.execute_many(sql, rows)  # BEGIN; executemany; COMMIT
            progress.add(len(rows))


def rating_rows(g: Generated, w: Writer, batch: int, codes: list[str]) -> Iterator[list[tuple]]:
    r = g.ratings
    n = len(r["id"])
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        ids, offices, points, staff = (r[k][lo:hi].tolist() for k in ("id", "office", "point", "staff"))
        office_no, point_no = r["office_no"][lo:hi].tolist(), r["point_no"][lo:hi].tolist()
        values, utc, received = r["value"][lo:hi].tolist(), w.ts_many(r["utc"][lo:hi]), w.ts_many(r["received"][lo:hi])
        local_ord, hours, excluded = r["local_ord"][lo:hi].tolist(), r["local_hour"][lo:hi].tolist(), r["excluded"][lo:hi].tolist()
        channel = r["channel"][lo:hi].tolist()
        rows = []
        for i in range(hi - lo):
            device = (f"btn-{codes[office_no[i]]}-W{point_no[i] + 1}", f"kiosk-{codes[office_no[i]]}", "qr")[channel[i]]
            reason = EXCLUDED[excluded[i]]
            rows.append((
                ids[i], f"{device}:{ids[i]}", device, offices[i], points[i], staff[i] or None, VALUES[values[i]],
                utc[i], received[i], None, reason, "quality1" if reason == "manual" else None,
                w.day(local_ord[i]), hours[i], CHANNELS[channel[i]],
            ))
        yield rows


def case_rows(g: Generated, w: Writer, batch: int) -> Iterator[list[tuple]]:
    c = g.cases
    n = len(c["id"])
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        cols = {k: c[k][lo:hi].tolist() for k in c}
        rows = []
        for i in range(hi - lo):
            ts, deadline, outcome = cols["ts"][i], cols["deadline"][i], cols["outcome"][i]
            remind, due = ts + deadline / 2, ts + deadline
            commented = cols["commented"][i] if outcome != 2 else None
            reminded = remind if outcome != 0 or commented > remind else None
            escalated = due if outcome != 0 else None
            rows.append((
                cols["id"][i], cols["rating"][i], cols["office"][i], cols["chat"][i], cols["message"][i],
                w.ts(remind), w.ts(due), w.ts(reminded) if reminded else None, w.ts(escalated) if escalated else None,
                w.flag(outcome != 0), COMMENTS[cols["text"][i]] if commented else None, cols["by"][i] if commented else None,
                w.ts(commented) if commented else None, w.flag(outcome == 1) if commented else None, 0, 0,
                float(commented - ts) if commented else None,
            ))
        yield rows


def reason_rows(g: Generated, batch: int, reason_ids: list[int]) -> Iterator[list[tuple]]:
    links = g.reasons
    n = len(links["rating"])
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        ratings, reasons = links["rating"][lo:hi].tolist(), links["reason"][lo:hi].tolist()
        yield [(lo + i + 1, ratings[i], reason_ids[reasons[i]]) for i in range(hi - lo)]


def nps_rows(g: Generated, w: Writer, batch: int, codes: list[str]) -> Iterator[list[tuple]]:
    a = g.nps
    n = len(a["score"])
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        offices, office_no, points, staff = (a[k][lo:hi].tolist() for k in ("office", "office_no", "point", "staff"))
        scores, channel, local_ord = a["score"][lo:hi].tolist(), a["channel"][lo:hi].tolist(), a["local_ord"][lo:hi].tolist()
        utc = w.ts_many(a["utc"][lo:hi])
        yield [
            (lo + i + 1, f"nps:{lo + i + 1}", offices[i], points[i], staff[i] or None, CHANNELS[channel[i]],
             f"kiosk-{codes[office_no[i]]}", scores[i], None, utc[i], w.day(local_ord[i]), utc[i])
            for i in range(hi - lo)
        ]


def presence_rows(g: Generated, w: Writer, batch: int) -> Iterator[list[tuple]]:
    p = g.presence
    n = len(p["utc"])
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        points, utc, local_ord = p["point"][lo:hi].tolist(), w.ts_many(p["utc"][lo:hi]), p["local_ord"][lo:hi].tolist()
        codes = p["staff_code"][lo:hi].tolist()
        yield [
            (lo + i + 1, f"queue-{points[i]}:{lo + i + 1}", points[i], "start", f"A{(lo + i) % 1000:03d}",
             codes[i] or None, utc[i], w.day(local_ord[i]))
            for i in range(hi - lo)
        ]


# --------------------------------------------------------------------------- seed


async def prepare_database(url: str, reset: bool) -> None:
    """Create the PostgreSQL database if needed; with ``reset`` start from an empty one."""
    kind = kind_of(url)
    if kind == "sqlite":
        path = sqlite_path(url)
        if reset:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import asyncpg

    server, name = pg_parts(url)
    conn = await asyncpg.connect(server)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and reset:
            if not name.startswith(("bench", "loyalty_bench")):
                raise SystemExit(f"--reset drops the database: only bench_* / loyalty_bench_* names, not {name!r}")
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = False
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def seed(args: argparse.Namespace) -> None:
    import numpy as np
    from tortoise import connections

    from bot import db
    from bot.models import Office, Point, Rating, RatingTally, Reason, Staff
    from bot.org import OrgFile, import_org
    from bot.tallies import rebuild_tallies

    url = args.database
    kind = kind_of(url)
    started = time.perf_counter()
    await prepare_database(url, args.reset)
    await db.upgrade(url)
    await db.connect(url)
    try:
        if await Rating.all().exists():
            raise SystemExit(f"{url} already has ratings; seed --reset starts from an empty database")
        rng = np.random.default_rng(args.seed)
        data, plans = make_org(rng)
        t0 = time.perf_counter()
        report = await import_org(OrgFile.model_validate(data))
        print(f"org imported in {time.perf_counter() - t0:.1f} s: " + "; ".join(report.lines()[:5]), file=sys.stderr)
        offices = {o.code: o.id for o in await Office.all()}
        code_of = {v: k for k, v in offices.items()}
        points = {(code_of[p.office_id], int(p.code[1:]) - 1): p.id for p in await Point.all()}  # type: ignore[attr-defined]
        ids = Ids(offices, points, {s.code: s.id for s in await Staff.all()})
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        print(f"generating {args.ratings:,} ratings …", file=sys.stderr, flush=True)
        g = generate(plans, ids, args.ratings, rng, now)
        generated = time.perf_counter() - t0
        w = Writer(kind)
        batch = BATCH[kind]
        timings = {}
        # the org's reasons for dissatisfaction (the org file's ``reasons`` list, as its import stores it)
        await Reason.bulk_create([Reason(code=c, label=ru, label_en=en, staff_related=own) for c, ru, en, own, _w in REASONS])
        by_code = dict(await Reason.all().values_list("code", "id"))
        reason_ids = [by_code[r[0]] for r in REASONS]
        codes = [p.code for p in plans]
        for label, table, columns, rows, count in (
            ("ratings", "rating", RATING_COLUMNS, rating_rows(g, w, batch, codes), len(g.ratings["id"])),
            ("negative cases", "negative_case", CASE_COLUMNS, case_rows(g, w, batch), len(g.cases["id"])),
            ("presence", "presence_event", PRESENCE_COLUMNS, presence_rows(g, w, batch), len(g.presence["utc"])),
            ("rating reasons", "rating_reason", RATING_REASON_COLUMNS, reason_rows(g, batch, reason_ids), len(g.reasons["rating"])),
            ("NPS answers", "nps_answer", NPS_COLUMNS, nps_rows(g, w, batch, codes), len(g.nps["score"])),
        ):
            recreate = await w.drop_indexes(table)  # bulk load first, then build the indexes in one go
            progress = Progress(label, count)
            await w.write(table, columns, rows, progress)
            loaded = progress.close()
            t0 = time.perf_counter()
            for statement in recreate:
                await w.client.execute_script(statement)
            timings[label] = (count, loaded, len(recreate), time.perf_counter() - t0)
        t0 = time.perf_counter()
        await rebuild_tallies(w.client)  # what ingest keeps at insert, counted once for the bulk load
        tally_rows = await RatingTally.all().count()
        timings["rating tallies"] = (tally_rows, time.perf_counter() - t0, 0, 0.0)
        served_rows = [(o, w.day(d.toordinal()), c, by, w.ts(at.timestamp())) for o, d, c, by, at in g.served]
        progress = Progress("served (manual)", len(served_rows))
        await w.write("served_clients", SERVED_COLUMNS, [served_rows], progress)
        timings["served (manual)"] = (len(served_rows), progress.close(), 0, 0.0)
        t0 = time.perf_counter()
        client = connections.get(kind)
        if kind == "postgres":
            for table in ("rating", "negative_case", "presence_event", "rating_reason", "nps_answer"):
                await client.execute_query(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM \"{table}\"))")
            for table in ("rating", "rating_tally", "negative_case", "presence_event", "served_clients", "staff", "point", "office",
                          "rating_reason", "reason", "nps_answer"):
                await client.execute_script(f'VACUUM ANALYZE "{table}"')
            finishing = "setval + VACUUM ANALYZE"
        else:
            if args.analyze:
                await client.execute_script("ANALYZE")
            await client.execute_script("PRAGMA wal_checkpoint(TRUNCATE)")
            finishing = "ANALYZE + checkpoint" if args.analyze else "WAL checkpoint (no ANALYZE, as in production)"
        finish = time.perf_counter() - t0
        r = g.ratings
        values = np.bincount(r["value"][r["excluded"] == 0], minlength=3)
        valid = values.sum()
        print(f"\nseeded {url} in {time.perf_counter() - started:.1f} s (generation {generated:.1f} s, {finishing} {finish:.1f} s)")
        print("| table | rows | load | rows/s | indexes rebuilt | index build |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, (count, seconds, indexes, build_seconds) in timings.items():
            print(f"| {label} | {count:,} | {seconds:.1f} s | {count / max(seconds, 1e-9):,.0f} | {indexes} | {build_seconds:.1f} s |")
        print(f"\nratings: {len(r['id']):,} over {DAYS} days · valid {valid:,}: good {values[0] / valid:.1%}, "
              f"neutral {values[1] / valid:.1%}, bad {values[2] / valid:.1%} · excluded {len(r['id']) - valid:,} "
              f"(repeat {int((r['excluded'] == 1).sum()):,}) · no employee on {int((r['staff'] == 0).sum()) / len(r['id']):.1%}")
        scores = np.bincount(g.nps["score"], minlength=11)
        answered = max(1, int(scores.sum()))
        with_reasons = len(np.unique(g.reasons["rating"]))
        print(f"feedback: {with_reasons:,} bad ratings with {len(g.reasons['rating']):,} reasons "
              f"({with_reasons / max(1, int((r['value'] == 2).sum())):.0%} of the bad ones; kiosk or QR) · "
              f"{answered:,} NPS answers, NPS {(scores[9:].sum() - scores[:7].sum()) / answered * 100:+.0f}")
        print(f"org: {len(plans)} offices, {len(points)} points, {len(ids.staff)} staff; admin telegram id {ADMIN_TELEGRAM_ID}")
        if kind == "sqlite":
            print(f"file: {sqlite_path(url)} ({sqlite_path(url).stat().st_size / 2**20:,.0f} MiB)")
    finally:
        await db.close()


# --------------------------------------------------------------------------- SQL probes


class SqlProbe:
    """Times every statement a measured build runs, labelled by the KpiService method(s) on the stack.

    The report runs its queries concurrently (tasks), so "measured" and the method stack live
    in context variables, which each task copies from the build that started it. On SQLite the
    statements still run one at a time on the single connection; on PostgreSQL they overlap,
    and their times then add up to more than the build's wall time.
    """

    def __init__(self) -> None:
        self.measuring: contextvars.ContextVar[bool] = contextvars.ContextVar("measuring", default=False)
        self.stack: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("stack", default=())
        self.log: list[tuple[str, str, list[Any], float]] = []  # label, sql, values, seconds
        self.calls: list[tuple[str, float]] = []  # label, seconds of a KpiService method call

    def install(self, client: Any, kpi: Any) -> None:
        for name in ("execute_query", "execute_query_dict"):
            setattr(client, name, self._timed(getattr(client, name)))
        for name in ("summary", "served", "_comment_stats", "_compliance_rows", "daily", "staff_ranking",
                     "negatives_by_weekday_hour", "compliance_daily", "reasons", "negatives_by_control", "nps"):
            setattr(kpi, name, self._labelled(name, getattr(kpi, name)))

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(query: str, values: list[Any] | None = None) -> Any:
            if not self.measuring.get():
                return await original(query, values)
            t0 = time.perf_counter()
            try:
                return await original(query, values)
            finally:
                self.log.append((self.label(), query, list(values or []), time.perf_counter() - t0))

        return timed

    def _labelled(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        async def labelled(*args: Any, **kwargs: Any) -> Any:
            if not self.measuring.get():
                return await original(*args, **kwargs)
            token = self.stack.set((*self.stack.get(), name))
            label = self.label()
            t0 = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.calls.append((label, time.perf_counter() - t0))
                self.stack.reset(token)

        return labelled

    def label(self) -> str:
        parts, seen_summary = [], False
        for name in self.stack.get():
            if name == "summary":
                parts.append("summary(previous)" if seen_summary else "summary")
                seen_summary = True
            else:
                parts.append(name)
        return " → ".join(parts) or "(outside KpiService)"

    def take(self) -> tuple[list[tuple[str, str, list[Any], float]], dict[str, float]]:
        """The statements since the last call, and each method's own time (its time minus its
        statements and the methods it called): building queries, turning rows into objects,
        and, as the queries run concurrently, waiting for the connection or for other tasks."""
        log, calls, self.log, self.calls = self.log, self.calls, [], []
        total: dict[str, float] = defaultdict(float)
        for label, seconds in calls:
            total[label] += seconds
        own = dict(total)
        for label, seconds in total.items():
            parent = label.rpartition(" → ")[0]
            if parent in own:
                own[parent] -= seconds
        for label, _sql, _values, seconds in log:
            if label in own:
                own[label] -= seconds
        return log, own


PYTHON = "· Python"  # a method's own time outside SQL: building the query, rows → objects, arithmetic


def statement_key(label: str, sql: str) -> str:
    table = re.search(r'FROM\s+"?(\w+)"?', sql)
    return f"{label} [{table.group(1) if table else '?'}]"


async def explain(client: Any, kind: str, sql: str, values: list[Any]) -> list[str]:
    if kind == "postgres":
        rows = await client.execute_query_dict("EXPLAIN (ANALYZE, BUFFERS) " + sql, values)
        return [row["QUERY PLAN"] for row in rows]
    rows = await client.execute_query_dict("EXPLAIN QUERY PLAN " + sql, values)
    depth: dict[int, int] = {0: 0}
    out = []
    for row in rows:
        depth[row["id"]] = depth.get(row["parent"], 0) + 1
        out.append("  " * (depth[row["id"]] - 1) + row["detail"])
    return out


def hand_sql(kind: str, staff_filter: bool) -> str:
    """Counts by value and exclusion and the comment-compliance counts, current and previous period, one statement."""
    sql = """
SELECT r.local_date >= $1 AS cur, r.value, r.excluded_reason, COUNT(*) AS n,
       COUNT(c.id) AS negatives,
       COUNT(CASE WHEN c.commented_at IS NOT NULL OR c.due_at <= $6 THEN 1 END) AS due,
       COUNT(CASE WHEN c.commented_at IS NOT NULL AND (c.comment_late IS NULL OR NOT c.comment_late) THEN 1 END) AS on_time,
       COUNT(c.commented_at) AS commented
FROM rating r LEFT JOIN negative_case c ON c.rating_id = r.id
WHERE r.local_date >= $2 AND r.local_date <= $3 AND r.ts >= $4 AND r.ts < $5{staff}
GROUP BY 1, 2, 3""".format(staff=" AND r.staff_id = $7" if staff_filter else "")
    return re.sub(r"\$(\d)", r"?\1", sql) if kind == "sqlite" else sql


# --------------------------------------------------------------------------- measure


@dataclass
class Scenario:
    name: str
    command: str
    key: str
    period_text: str
    photos: int
    staff_id: int | None = None
    ratings_in_scope: int = 0


@dataclass
class ScenarioResult:
    scenario: Scenario
    cold: tuple[float, float] = (float("nan"), float("nan"))  # first run: text, album
    text: list[float] = field(default_factory=list)
    album: list[float] = field(default_factory=list)
    split: list[tuple[float, float]] = field(default_factory=list)  # query, render of the Telegram runs
    direct: list[tuple[float, float]] = field(default_factory=list)
    statements: dict[str, list[float]] = field(default_factory=dict)  # key → seconds per build
    statement_count: dict[str, int] = field(default_factory=dict)  # key → statements per build
    sql_total: list[float] = field(default_factory=list)  # all statements of a build
    statement_sql: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)
    charts: dict[str, list[float]] = field(default_factory=dict)
    chart_bytes: dict[str, int] = field(default_factory=dict)
    summary: list[float] = field(default_factory=list)
    hand: list[float] = field(default_factory=list)
    hand_matches: bool | None = None
    hand_mismatch: str = ""
    plans: list[tuple[str, float, list[str]]] = field(default_factory=list)
    hand_plan: list[str] = field(default_factory=list)
    full: list[float] = field(default_factory=list)  # the hand-written statement of every figure
    full_matches: bool | None = None
    full_mismatch: str = ""
    full_plan: list[str] = field(default_factory=list)
    others_cores: float = float("nan")  # CPU of everything else on the machine during the Telegram runs


async def wait_album(emu: Any, chat: int, start: int, photos: int, t0: float, timeout: float) -> tuple[float, float]:
    """Seconds from ``t0`` to the report's text and to the album's record in the emulator's log."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in emu.sent_log[start:] if r.chat_id == chat]
        album = [r for r in records if r.method.lower() in ("sendmediagroup", "sendphoto")]
        if len(album) >= photos:
            text = next((r.at for r in records if r.method.lower() == "sendmessage"), float("nan"))
            return text - t0, max(r.at for r in album) - t0
        if time.monotonic() > deadline:
            last = [m.get("text", "")[:200] for m in emu.bot_messages(chat)[-3:]]
            raise RuntimeError(f"no album of {photos} photos after {timeout:.0f} s; last bot messages: {last}")
        await asyncio.sleep(0.002)


async def silence_digests(now: datetime) -> None:
    """Mark today's morning/weekly digests as sent, so they do not run in the middle of the measurement."""
    from bot.models import Office

    for office in await Office.all():
        today = now.astimezone(ZoneInfo(office.timezone)).date()
        await Office.filter(id=office.id).update(daily_digest_on=today, weekly_digest_on=today)


async def pick_scenarios(args: argparse.Namespace) -> tuple[int, list[Scenario], dict[str, Any]]:
    from tortoise.functions import Count

    from bot.models import NegativeCase, PresenceEvent, Rating, ServedClients, Staff

    admin = await Staff.filter(role="admin", active=True, telegram_id__isnull=False).order_by("id").first()
    if admin is None:
        raise SystemExit("no admin with a Telegram id in this database: run `seed` first")
    code = args.staff
    if code is None:  # the busiest front employee of an office with presence data
        with_presence = await PresenceEvent.filter(staff_code__isnull=False).limit(1).values_list("staff_code", flat=True)
        office_id = (await Staff.get(code=with_presence[0])).office_id if with_presence else None  # type: ignore[attr-defined]
        query = Rating.filter(staff_id__isnull=False)
        if office_id is not None:
            query = query.filter(office_id=office_id)
        top = await query.annotate(n=Count("id")).group_by("staff_id").order_by("-n").limit(1).values("staff_id", "n")
        person = await Staff.get(id=top[0]["staff_id"])
    else:
        person = await Staff.get(code=code)
    facts = {
        "ratings": await Rating.all().count(), "cases": await NegativeCase.all().count(),
        "presence": await PresenceEvent.all().count(), "served": await ServedClients.all().count(),
        "first": (await Rating.all().order_by("ts").limit(1).values_list("ts", flat=True))[0],
        "last": (await Rating.all().order_by("-ts").limit(1).values_list("ts", flat=True))[0],
        "staff_ratings": await Rating.filter(staff_id=person.id).count(),
    }
    scenarios = [
        Scenario("company · 30d", "/report 30d", "c", "30d", 5),
        Scenario(f"employee {person.code} · 365d", f"/report staff {person.code} 365d", f"s{person.id}", "365d", 4, person.id),
    ]
    return int(admin.telegram_id), scenarios, facts


class CpuMeter:
    """Cores used by this process, PostgreSQL and everything else on the machine since ``reset``."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.reset()

    def _sample(self) -> tuple[float, float, float, float]:
        pg = postgres_cpu_seconds() if self.postgres else 0.0
        return time.perf_counter(), self_cpu_seconds(), pg, machine_busy_seconds()

    def reset(self) -> None:
        self.start = self._sample()
        self.load = os.getloadavg()[0]

    def read(self) -> dict[str, float]:
        wall, me, pg, busy = (b - a for a, b in zip(self.start, self._sample(), strict=True))
        return {"wall": wall, "self": me / wall, "postgres": pg / wall, "others": max(busy - me - pg, 0.0) / wall,
                "load0": self.load, "load1": os.getloadavg()[0]}


async def telegram_runs(args: argparse.Namespace, emu: Any, chat: int, reports: Any, result: ScenarioResult,
                        meter: CpuMeter) -> None:
    """The command through the emulator, timed to the album; ``ReportService.build`` wrapped to split each run."""
    s = result.scenario
    splits: list[tuple[float, float]] = []
    original = reports.build

    async def timed_build(*a: Any, **kw: Any) -> Any:  # the probe: the handler's own call
        report = await original(*a, **kw)
        splits.append((report.query_seconds, report.render_seconds))
        return report

    reports.build = timed_build
    meter.reset()
    try:
        for run in range(args.warmup + args.runs):
            start = len(emu.sent_log)
            splits.clear()
            t0 = time.monotonic()
            await emu.user_message(chat, chat, s.command)
            text_at, album_at = await wait_album(emu, chat, start, s.photos, t0, args.timeout)
            if run < args.warmup:
                result.cold = (text_at, album_at) if run == 0 else result.cold
                continue
            result.text.append(text_at)
            result.album.append(album_at)
            result.split.extend(splits)
            print(f"{s.name}: run {run - args.warmup + 1}/{args.runs} {ms(album_at)}", file=sys.stderr, flush=True)
    finally:
        reports.build = original
    result.others_cores = meter.read()["others"]


async def direct_builds(args: argparse.Namespace, reports: Any, probe: SqlProbe, admin: Any, period: Any,
                        result: ScenarioResult) -> None:
    """``ReportService.build`` without Telegram, every statement timed and labelled."""
    per_build: list[dict[str, float]] = []
    token = probe.measuring.set(True)  # the build's tasks copy it
    try:
        for _ in range(args.runs):
            probe.take()
            report = await reports.build(admin, result.scenario.key, period, "ru")
            result.direct.append((report.query_seconds, report.render_seconds))
            statements, own = probe.take()
            times: dict[str, float] = defaultdict(float)
            counts: dict[str, int] = defaultdict(int)
            for label, sql, values, seconds in statements:
                key = statement_key(label, sql)
                times[key] += seconds
                counts[key] += 1
                result.statement_sql.setdefault(key, (sql, values))
            for label, seconds in own.items():
                times[f"{label} {PYTHON}"] = seconds
            result.sql_total.append(sum(seconds for *_, seconds in statements))
            result.statement_count = dict(counts)
            per_build.append(times)
    finally:
        probe.measuring.reset(token)
    for key in {k for b in per_build for k in b}:
        result.statements[key] = [b.get(key, 0.0) for b in per_build]


async def chart_renders(args: argparse.Namespace, kpi: Any, texts: Any, scope: Any, period: Any, result: ScenarioResult) -> None:
    """Each chart's ``render_*`` alone, on the data the report draws (as ``ReportService.build`` builds it)."""
    from charts import kpi as charts
    from charts.style import LABELS_RU, format_period

    summary = await kpi.summary(scope, period)
    result.scenario.ratings_in_scope = summary.total + summary.excluded_total
    daily = await kpi.daily(scope, period)
    heatmap = await kpi.negatives_by_weekday_hour(scope, period)
    compliance = await kpi.compliance_daily(scope, period)
    reasons = await kpi.reasons(scope, period)
    where = f"{result.scenario.name} · {format_period(period.start, period.end)}"
    jobs: list[tuple[str, Callable[..., bytes], Any, str]] = [
        ("daily ratings", charts.render_daily_ratings,
         [charts.DailyCounts(d.day, d.good, d.neutral, d.bad) for d in daily], "Ratings by day"),
        ("negatives heatmap", charts.render_negatives_heatmap, heatmap, "When negatives happen"),
        ("comment compliance", charts.render_comment_compliance,
         [charts.ComplianceDay(c.day, c.due, c.on_time) for c in compliance], "Comment compliance"),
        ("reasons pareto", charts.render_reasons_pareto,
         [charts.ReasonCount(r.label, r.count, outside=not r.staff_related) for r in reasons],
         "Reasons for dissatisfaction"),
    ]
    if scope.staff_id is None:
        ranking = await kpi.staff_ranking(scope, period)
        jobs.insert(1, ("staff ranking", charts.render_staff_ranking,
                        [charts.StaffRow(r.name, r.good, r.neutral, r.bad) for r in ranking], "Employees by like-index"))
    for name, render, data, msgid in jobs:
        title = texts.t("ru", msgid) + f": {where}"
        result.charts[name] = []
        for _ in range(args.chart_runs):
            t0 = time.perf_counter()
            png = render(data, title, LABELS_RU)
            result.charts[name].append(time.perf_counter() - t0)
        result.chart_bytes[name] = len(png)


async def summary_and_hand(args: argparse.Namespace, kpi: Any, client: Any, kind: str, scope: Any, period: Any,
                           now: datetime, result: ScenarioResult) -> None:
    """``KpiService.summary`` alone, and the hand-written statement that computes the same figures (checked)."""
    for _ in range(args.runs):
        t0 = time.perf_counter()
        summary = await kpi.summary(scope, period, compare=True)
        result.summary.append(time.perf_counter() - t0)
    sql, values = hand_statement(kind, scope, period, now)
    for _ in range(args.runs):
        t0 = time.perf_counter()
        rows = await client.execute_query_dict(sql, values)
        result.hand.append(time.perf_counter() - t0)
    result.hand_matches, result.hand_mismatch = compare_hand(rows, summary)
    full_sql, full_values = hand_report_statement(kind, scope, period, now)
    for _ in range(args.runs):
        t0 = time.perf_counter()
        full_rows = await client.execute_query_dict(full_sql, full_values)
        result.full.append(time.perf_counter() - t0)
    result.full_matches, result.full_mismatch = compare_figures(
        hand_report_figures(full_rows, period), await report_figures(kpi, scope, period)
    )
    if args.explain:
        slowest = sorted(result.statement_sql, key=lambda k: -p50(result.statements[k]))[: args.explain]
        for key in slowest:
            statement, statement_values = result.statement_sql[key]
            result.plans.append((key, p50(result.statements[key]), await explain(client, kind, statement, statement_values)))
        result.hand_plan = await explain(client, kind, sql, values)
        result.full_plan = await explain(client, kind, full_sql, full_values)


async def measure(args: argparse.Namespace) -> None:
    from tortoise import connections

    from bot import db
    from bot.app import build
    from bot.kpi import Scope
    from bot.settings import load_settings
    from tests.telegram_emulator import BotApiEmulator

    url = args.database
    kind = kind_of(url)
    if kind == "sqlite" and not sqlite_path(url).exists():
        raise SystemExit(f"{sqlite_path(url)} does not exist: run `seed` first")
    await db.connect(url)
    try:
        admin_tg, scenarios, facts = await pick_scenarios(args)
        await silence_digests(datetime.now(UTC))
    finally:
        await db.close()

    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-reports-"))
    emu = BotApiEmulator()
    await emu.start()
    emu.add_user(admin_tg, "Admin", language_code="ru")
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        http_port=0, bot_token=emu.token, telegram_api_url=emu.url, database_url=url, mqtt_url=args.mqtt_url,
        mqtt_topic_root=f"bench{tag}/v1", mqtt_client_id=f"loyalty-bench-reports-{tag}", audio_dir=workdir / "audio",
        log_level="WARNING",
    )
    app = build(settings)
    stop = asyncio.Event()
    await app.start(stop)
    total = CpuMeter(kind == "postgres")
    results = [ScenarioResult(s) for s in scenarios]
    try:
        await asyncio.wait_for(app.ingest.connected.wait(), 15)
        reports, texts = app.dp["reports"], app.dp["texts"]
        kpi = reports._kpi  # noqa: SLF001 - the KpiService the reports use, probed below
        for result in results:  # 1. through Telegram: command → last chart
            await telegram_runs(args, emu, admin_tg, reports, result, CpuMeter(kind == "postgres"))
        # 2. without Telegram: the split, each statement, each chart, summary alone, the hand-written query
        client = connections.get(kind)
        probe = SqlProbe()
        probe.install(client, kpi)
        admin = await app.staff_service.by_telegram(admin_tg)
        for result in results:
            s = result.scenario
            period = reports.period(admin, s.period_text)
            scope = Scope.company() if s.staff_id is None else Scope.staff(s.staff_id)
            await direct_builds(args, reports, probe, admin, period, result)
            await chart_renders(args, kpi, texts, scope, period, result)
            await summary_and_hand(args, kpi, client, kind, scope, period, app.clock.now(), result)
    finally:
        cpu = total.read()
        stop.set()
        await app.shutdown()
        await emu.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render_report(args, kind, facts, results, cpu))


def hand_values(kind: str, scope: Any, period: Any, now: datetime, *extra: Any) -> list[Any]:
    """The hand-written statements' parameters: ``$1``–``$6`` (see ``hand_sql``), then ``extra``,
    then the employee when the scope is one."""
    previous = period.previous()
    lo = datetime.combine(previous.start - timedelta(days=1), datetime.min.time(), UTC)
    hi = datetime.combine(period.end + timedelta(days=2), datetime.min.time(), UTC)
    values: list[Any] = [period.start, previous.start, period.end, lo, hi, now, *extra]
    if scope.staff_id is not None:
        values.append(scope.staff_id)
    if kind == "sqlite":  # the text Tortoise stores and compares on SQLite
        values = [v.isoformat() if isinstance(v, date) and not isinstance(v, datetime) else str(v) if isinstance(v, datetime) else v
                  for v in values]
    return values


def hand_statement(kind: str, scope: Any, period: Any, now: datetime) -> tuple[str, list[Any]]:
    return hand_sql(kind, scope.staff_id is not None), hand_values(kind, scope, period, now)


def compare_hand(rows: list[dict[str, Any]], summary: Any) -> tuple[bool, str]:
    """Do the hand-written figures equal KpiService.summary's (both periods)?"""
    got: dict[bool, dict[str, int]] = {True: defaultdict(int), False: defaultdict(int)}
    for row in rows:
        figures = got[bool(row["cur"])]
        if row["excluded_reason"] is None:
            figures[row["value"]] += row["n"]
            for key in ("negatives", "due", "on_time", "commented"):
                figures[key] += row[key]
        else:
            figures[f"excluded:{row['excluded_reason']}"] += row["n"]
    problems = []
    for current, s in ((True, summary), (False, summary.previous)):
        if s is None:
            continue
        want = {"good": s.good, "neutral": s.neutral, "bad": s.bad, "negatives": s.comments.negatives, "due": s.comments.due,
                "on_time": s.comments.on_time, "commented": s.comments.commented}
        want.update({f"excluded:{reason}": n for reason, n in s.excluded.items()})
        for key, value in want.items():
            if got[current].get(key, 0) != value:
                problems.append(f"{'current' if current else 'previous'} {key}: hand {got[current].get(key, 0)} ≠ kpi {value}")
    return not problems, "; ".join(problems)


def hand_report_sql(kind: str, staff_filter: bool) -> str:
    """Every figure the report shows, in ONE statement (UNION ALL of one grouped SELECT per
    figure), as someone would write it by hand against the same tables: the counts per day,
    office, kind and exclusion with comment compliance (both periods: summary, daily bars,
    compliance by day, ratings covered by served figures); negatives per local day and hour
    (heatmap); per employee (ranking, company only); reasons (Pareto); an employee's negatives
    with reasons and with a staff-related one, and the outside-only reasons; NPS by score
    (both periods); presence starts and hand-entered clients per office-day; the median time
    to comment (window functions, both databases); submitted scores.

    Columns: part, cur, k1, k2, k3, n, a, b, c, d, x. ``$1`` current start, ``$2`` previous
    start, ``$3`` end, ``$4``/``$5`` the loose ts range, ``$6`` now, ``$7`` first day of the
    start's month, ``$8`` the employee.
    """
    staff = staff_filter
    rf = " AND r.staff_id = $8" if staff else ""
    cur = "r.local_date >= $1 AND r.local_date <= $3 AND r.ts >= $4 AND r.ts < $5"
    valid_bad = "r.value = 'bad' AND r.excluded_reason IS NULL"
    parts = [f"""
SELECT 'day' AS part, CASE WHEN r.local_date >= $1 THEN 1 ELSE 0 END AS cur, CAST(r.local_date AS TEXT) AS k1,
       CAST(r.office_id AS TEXT) AS k2, r.value || '|' || COALESCE(r.excluded_reason, '') AS k3, COUNT(*) AS n,
       COUNT(c.id) AS a,
       COUNT(CASE WHEN c.commented_at IS NOT NULL OR c.due_at <= $6 THEN 1 END) AS b,
       COUNT(CASE WHEN c.commented_at IS NOT NULL AND (c.comment_late IS NULL OR NOT c.comment_late) THEN 1 END) AS c,
       COUNT(c.commented_at) AS d, CAST(NULL AS DOUBLE PRECISION) AS x
FROM rating r LEFT JOIN negative_case c ON c.rating_id = r.id
WHERE r.local_date >= $2 AND r.local_date <= $3 AND r.ts >= $4 AND r.ts < $5{rf}
GROUP BY 2, r.local_date, r.office_id, r.value, r.excluded_reason""", f"""
SELECT 'hour', 1, CAST(r.local_date AS TEXT), CAST(r.local_hour AS TEXT), NULL, COUNT(*), 0, 0, 0, 0, NULL
FROM rating r WHERE {valid_bad} AND r.local_hour IS NOT NULL AND {cur}{rf}
GROUP BY r.local_date, r.local_hour""", f"""
SELECT 'reason', 1, CAST(rr.reason_id AS TEXT), NULL, NULL, COUNT(*), COUNT(CASE WHEN r.value = 'bad' THEN 1 END), 0, 0, 0, NULL
FROM rating_reason rr JOIN rating r ON r.id = rr.rating_id
WHERE r.excluded_reason IS NULL AND r.value IN ('bad', 'neutral') AND {cur}{rf}
GROUP BY rr.reason_id""", f"""
SELECT 'nps', CASE WHEN n.local_date >= $1 THEN 1 ELSE 0 END, CAST(n.score AS TEXT), NULL, NULL, COUNT(*), 0, 0, 0, 0, NULL
FROM nps_answer n WHERE n.local_date >= $2 AND n.local_date <= $3{" AND n.staff_id = $8" if staff else ""}
GROUP BY 2, n.score""", f"""
SELECT 'presence', 1, CAST(p.local_date AS TEXT), CAST(pt.office_id AS TEXT), NULL, COUNT(*), 0, 0, 0, 0, NULL
FROM presence_event p JOIN point pt ON pt.id = p.point_id
WHERE p.state = 'start' AND p.local_date >= $1 AND p.local_date <= $3{
    " AND p.staff_code = (SELECT code FROM staff WHERE id = $8)" if staff else ""}
GROUP BY p.local_date, pt.office_id""", f"""
SELECT 'median', 1, NULL, NULL, NULL, 0, 0, 0, 0, 0, AVG(m.x)
FROM (SELECT c.comment_seconds AS x, ROW_NUMBER() OVER (ORDER BY c.comment_seconds) AS rn, COUNT(*) OVER () AS cnt
      FROM negative_case c JOIN rating r ON r.id = c.rating_id
      WHERE c.commented_at IS NOT NULL AND c.comment_seconds IS NOT NULL AND {valid_bad} AND {cur}{rf}) m
WHERE m.rn IN ((m.cnt + 1) / 2, (m.cnt + 2) / 2)""", f"""
SELECT 'score', 1, CAST(s.staff_id AS TEXT), NULL, NULL, COUNT(*), 0, 0, 0, 0, SUM(s.result)
FROM score s
WHERE s.status = 'submitted' AND s.calibration_id IS NULL AND s.result IS NOT NULL AND s.month >= $7 AND s.month <= $3{
    " AND s.staff_id = $8" if staff else ""}
GROUP BY s.staff_id"""]
    if staff:
        parts += [f"""
SELECT 'control', 1, NULL, NULL, NULL, COUNT(DISTINCT rr.rating_id),
       COUNT(DISTINCT CASE WHEN re.staff_related THEN rr.rating_id END), 0, 0, 0, NULL
FROM rating_reason rr JOIN rating r ON r.id = rr.rating_id JOIN reason re ON re.id = rr.reason_id
WHERE {valid_bad} AND {cur}{rf}""", f"""
SELECT 'outside', 1, CAST(rr.reason_id AS TEXT), NULL, NULL, COUNT(*), 0, 0, 0, 0, NULL
FROM rating_reason rr JOIN rating r ON r.id = rr.rating_id
WHERE {valid_bad} AND {cur}{rf} AND NOT EXISTS (
    SELECT 1 FROM rating_reason b JOIN reason bre ON bre.id = b.reason_id WHERE b.rating_id = rr.rating_id AND bre.staff_related)
GROUP BY rr.reason_id"""]
    else:
        parts += [f"""
SELECT 'staff', 1, CAST(r.staff_id AS TEXT), r.value, NULL, COUNT(*), 0, 0, 0, 0, NULL
FROM rating r WHERE r.excluded_reason IS NULL AND r.staff_id IS NOT NULL AND {cur}
GROUP BY r.staff_id, r.value""", """
SELECT 'manual', 1, CAST(m.day AS TEXT), CAST(m.office_id AS TEXT), NULL, m.clients, 0, 0, 0, 0, NULL
FROM served_clients m WHERE m.day >= $1 AND m.day <= $3"""]
    sql = "\nUNION ALL".join(parts)
    return re.sub(r"\$(\d)", r"?\1", sql) if kind == "sqlite" else sql


def hand_report_statement(kind: str, scope: Any, period: Any, now: datetime) -> tuple[str, list[Any]]:
    values = hand_values(kind, scope, period, now, period.start.replace(day=1))
    return hand_report_sql(kind, scope.staff_id is not None), values


async def report_figures(kpi: Any, scope: Any, period: Any) -> dict[str, Any]:
    """The figures the report shows, from ``KpiService`` (what the hand-written statement must equal)."""
    summary = await kpi.summary(scope, period, compare=True)
    figures: dict[str, Any] = {
        "good": summary.good, "neutral": summary.neutral, "bad": summary.bad,
        "previous": (summary.previous.good, summary.previous.neutral, summary.previous.bad),
        "excluded": dict(summary.excluded),
        "daily": [(d.day.isoformat(), d.good, d.neutral, d.bad, d.excluded) for d in await kpi.daily(scope, period)],
        "compliance": [(c.day.isoformat(), c.negatives, c.due, c.on_time, c.commented)
                       for c in await kpi.compliance_daily(scope, period)],
        "heatmap": await kpi.negatives_by_weekday_hour(scope, period),
        "reasons": sorted((r.reason_id, r.count, r.bad) for r in await kpi.reasons(scope, period)),
        "nps": (summary.nps.promoters, summary.nps.passives, summary.nps.detractors),
        "served": (summary.served.clients, summary.served.ratings, summary.served.good, summary.served.bad),
        "median": round(summary.comments.median_minutes, 6) if summary.comments.median_minutes is not None else None,
    }
    if scope.staff_id is None:
        figures["ranking"] = sorted((k.staff_id, k.good, k.neutral, k.bad) for k in await kpi.staff_ranking(scope, period))
    else:
        split = await kpi.negatives_by_control(scope, period)
        figures["control"] = (split.staff_related, split.outside_only)
    return figures


def hand_report_figures(rows: list[dict[str, Any]], period: Any) -> dict[str, Any]:
    """The same figures, added up from the hand-written statement's rows."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by[row["part"]].append(row)
    counts = {1: defaultdict(int), 0: defaultdict(int)}
    excluded: dict[str, int] = defaultdict(int)
    days: dict[str, list[int]] = defaultdict(lambda: [0] * 8)
    office_days: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in by["day"]:
        value, _, reason = row["k3"].partition("|")
        if row["cur"]:
            day = days[row["k1"]]
            if reason:
                excluded[reason] += row["n"]
                day[3] += row["n"]
            else:
                day[("good", "neutral", "bad").index(value)] += row["n"]
                office = office_days[(row["k1"], row["k2"])]
                office[0] += row["n"]
                office[1] += row["n"] if value == "good" else 0
                office[2] += row["n"] if value == "bad" else 0
            for i, key in enumerate("abcd"):
                day[4 + i] += row[key] if not reason else 0
        if not reason:
            counts[row["cur"]][value] += row["n"]
    dates = [d.isoformat() for d in period.dates()]
    heatmap = [[0] * 24 for _ in range(7)]
    for row in by["hour"]:
        heatmap[date.fromisoformat(row["k1"]).weekday()][int(row["k2"])] += row["n"]
    nps = [0, 0, 0]
    for row in by["nps"]:
        if row["cur"]:
            score = int(row["k1"])
            nps[0 if score >= 9 else 1 if score >= 7 else 2] += row["n"]
    served: dict[tuple[str, str], int] = {(r["k1"], r["k2"]): r["n"] for r in by["presence"]}
    for row in by["manual"]:
        served.setdefault((row["k1"], row["k2"]), row["n"])
    covered = [sum(office_days[key][i] for key in served if key in office_days) for i in range(3)]
    median = by["median"][0]["x"] if by["median"] else None
    figures: dict[str, Any] = {
        "good": counts[1]["good"], "neutral": counts[1]["neutral"], "bad": counts[1]["bad"],
        "previous": (counts[0]["good"], counts[0]["neutral"], counts[0]["bad"]),
        "excluded": dict(excluded),
        "daily": [(d, *days[d][:4]) if d in days else (d, 0, 0, 0, 0) for d in dates],
        "compliance": [(d, *days[d][4:]) if d in days else (d, 0, 0, 0, 0) for d in dates],
        "heatmap": heatmap,
        "reasons": sorted((int(r["k1"]), r["n"], r["a"]) for r in by["reason"]),
        "nps": tuple(nps),
        "served": (sum(served.values()) if served else None, *covered) if served else (None, 0, 0, 0),
        "median": round(float(median) / 60, 6) if median is not None else None,
    }
    if by["control"] or by["outside"]:
        control = by["control"][0] if by["control"] else {"n": 0, "a": 0}
        figures["control"] = (control["a"], control["n"] - control["a"])
    if by["staff"]:
        ranking: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in by["staff"]:
            ranking[int(row["k1"])][("good", "neutral", "bad").index(row["k2"])] += row["n"]
        figures["ranking"] = sorted((staff_id, *kinds) for staff_id, kinds in ranking.items())
    return figures


def compare_figures(hand: dict[str, Any], report: dict[str, Any]) -> tuple[bool, str]:
    problems = [f"{key}: hand {str(hand.get(key))[:80]} ≠ report {str(want)[:80]}"
                for key, want in report.items() if hand.get(key) != want]
    return not problems, "; ".join(problems)


# --------------------------------------------------------------------------- report


class Table:
    """A markdown table with aligned columns."""

    def __init__(self, *head: str, right: Sequence[int] = ()) -> None:
        self.head = head
        self.rows: list[tuple[str, ...]] = []
        self.right = set(right)

    def add(self, *cells: str) -> None:
        self.rows.append(tuple(cells) + ("",) * (len(self.head) - len(cells)))

    def render(self) -> str:
        widths = [max(len(r[i]) for r in [self.head, *self.rows]) for i in range(len(self.head))]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.rjust(w) if i in self.right else c.ljust(w)
                                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

        rule = "| " + " | ".join(("-" * (w - 1) + ":") if i in self.right else "-" * w for i, w in enumerate(widths)) + " |"
        return "\n".join([line(self.head), rule, *(line(r) for r in self.rows)])


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def render_report(args: argparse.Namespace, kind: str, facts: dict[str, Any], results: list[ScenarioResult],
                  cpu: dict[str, float]) -> str:
    target = TARGET_P95[kind]
    out = [
        f"## Loyalty Desk /report bench · {'SQLite' if kind == 'sqlite' else 'PostgreSQL'} · {args.database}",
        "",
        f"data: {facts['ratings']:,} ratings ({facts['first']:%Y-%m-%d} … {facts['last']:%Y-%m-%d %H:%M} UTC), "
        f"{facts['cases']:,} negative cases, {facts['presence']:,} presence starts, {facts['served']:,} /served days · "
        f"{args.runs} runs per scenario after {args.warmup} warm-up · {os.cpu_count()} CPUs",
        f"CPU while measuring ({cpu['wall']:.0f} s): this process {cpu['self']:.2f} cores"
        + (f", PostgreSQL {cpu['postgres']:.2f}" if kind == "postgres" else "")
        + f", everything else on the machine {cpu['others']:.2f} cores · load average {cpu['load0']:.2f} → {cpu['load1']:.2f}",
        "",
    ]
    t = Table("scenario", "figure", "p50", "p95", "target", "result", right=(2, 3))
    for r in results:
        s = r.scenario
        q = [a for a, _ in r.split]
        rd = [b for _, b in r.split]
        rest = [total - a - b for total, (a, b) in zip(r.album, r.split, strict=False)]
        dq = [a for a, _ in r.direct]
        ratio = p50(dq) / p50(r.full) if r.full else float("nan")
        t.add(s.name, f"`{s.command}` → last chart ({s.photos} photos)", ms(p50(r.album)), ms(p95(r.album)),
              f"p95 ≤ {target * 1000:.0f} ms", verdict(p95(r.album) <= target))
        t.add("", "  … → text summary", ms(p50(r.text)), ms(p95(r.text)))
        t.add("", "  query (ReportService.build, in those runs)", ms(p50(q)), ms(p95(q)))
        t.add("", "  render (all charts, in those runs)", ms(p50(rd)), ms(p95(rd)))
        t.add("", "  the rest (handler, upload, emulator)", ms(p50(rest)), ms(p95(rest)))
        t.add("", "  first run (cold: caches, fonts)", ms(r.cold[1]), "")
        t.add("", "  other jobs' CPU during these runs", f"{r.others_cores:.2f} cores", "")
        t.add("", "query, build called directly", ms(p50(dq)), ms(p95(dq)))
        t.add("", "  SQL statements, their times added up (they overlap on PostgreSQL)", ms(p50(r.sql_total)), ms(p95(r.sql_total)))
        python = [q_ - sql_ for (q_, _), sql_ in zip(r.direct, r.sql_total, strict=False)]
        t.add("", "  query time minus that sum (Python; negative: overlap)", ms(p50(python)), ms(p95(python)))
        t.add("", "render, build called directly", ms(p50([b for _, b in r.direct])), ms(p95([b for _, b in r.direct])))
        for name, values in r.charts.items():
            t.add("", f"  chart: {name} ({r.chart_bytes[name] / 1024:.0f} KiB)", ms(p50(values)), ms(p95(values)),
                  f"≤ {TARGET_CHART_MS:.0f} ms", verdict(p95(values) * 1000 <= TARGET_CHART_MS))
        t.add("", "KpiService.summary alone (both periods)", ms(p50(r.summary)), ms(p95(r.summary)))
        t.add("", "hand-written SQL, every figure of the report", ms(p50(r.full)), ms(p95(r.full)), "",
              "figures equal" if r.full_matches else f"DIFFER: {r.full_mismatch}")
        t.add("", "report query ÷ hand-written SQL", f"{ratio:.1f}×", "", f"≤ {TARGET_QUERY_RATIO:.0f}×",
              verdict(ratio <= TARGET_QUERY_RATIO))
        t.add("", "hand-written SQL, the summary's figures only", ms(p50(r.hand)), ms(p95(r.hand)), "",
              "figures equal" if r.hand_matches else f"DIFFER: {r.hand_mismatch}")
        t.add("", "summary alone ÷ that statement", f"{p50(r.summary) / p50(r.hand):.1f}×", "")
    out.append(t.render())
    for r in results:
        s = r.scenario
        out += ["", f"### where the query time goes · {s.name} ({s.ratings_in_scope:,} ratings in the period)", ""]
        qt = Table("KpiService method [table of the statement]", "statements", "p50", "share", right=(1, 2, 3))
        total = p50([q_ for q_, _ in r.direct]) or 1e-9
        for key in sorted(r.statements, key=lambda k: -p50(r.statements[k])):
            if p50(r.statements[key]) < 0.0005 and key.endswith(PYTHON):
                continue
            count = str(r.statement_count[key]) if key in r.statement_count else "—"
            qt.add(key, count, ms(p50(r.statements[key])), f"{100 * p50(r.statements[key]) / total:.0f} %")
        out.append(qt.render())
        out.append(f"\n(“{PYTHON}”: the method's own time outside its SQL statements — building the query, turning rows "
                   "into Python objects, arithmetic, and, as the report's queries run concurrently, waiting for the "
                   "connection or for the other tasks; share: of the query time, and the shares overlap)")
        for key, seconds, plan in r.plans:
            out += ["", f"plan of {key} ({ms(seconds)}):", "```", *plan, "```"]
        if r.hand_plan:
            out += ["", "plan of the hand-written statement:", "```", *r.hand_plan, "```"]
        if r.full_plan:
            out += ["", "plan of the hand-written statement of every figure:", "```", *r.full_plan, "```"]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database", default=None,
                        help=f"sqlite:///path or postgres://…/name (created if missing); default {DEFAULT_DATABASE}")
    common.add_argument("--quick", action="store_true", help="smoke run: 100,000 ratings, 5 runs")
    seeding = argparse.ArgumentParser(add_help=False)
    seeding.add_argument("--ratings", type=int, default=1_000_000)
    seeding.add_argument("--seed", type=int, default=20261126, help="random seed of the generated data")
    seeding.add_argument("--reset", action="store_true", help="start from an empty database (deletes the SQLite file / "
                         "drops and recreates a bench_* PostgreSQL database)")
    seeding.add_argument("--analyze", action="store_true", help="SQLite: run ANALYZE after seeding (production does not)")
    measuring = argparse.ArgumentParser(add_help=False)
    measuring.add_argument("--runs", type=int, default=20, help="runs per scenario (after the warm-up)")
    measuring.add_argument("--warmup", type=int, default=1, help="runs per scenario not counted (shown as 'first run')")
    measuring.add_argument("--chart-runs", type=int, default=None, help="renders per chart (default: --runs)")
    measuring.add_argument("--staff", default=None, help="employee code for the second scenario (default: the busiest "
                           "employee of an office with presence data)")
    measuring.add_argument("--explain", type=int, default=3, help="print the plans of the N slowest statements per scenario")
    measuring.add_argument("--timeout", type=float, default=60.0, help="give up on a run after this many seconds")
    measuring.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("seed", parents=[common, seeding], help="create and fill the database",
                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub.add_parser("measure", parents=[common, measuring], help="measure /report on a seeded database",
                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub.add_parser("all", parents=[common, seeding, measuring], help="seed (a temp SQLite unless --database), then measure",
                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    args = p.parse_args(argv)
    if args.quick:  # smaller defaults; values given explicitly win
        for name, value in (("ratings", 100_000), ("runs", 5)):
            if hasattr(args, name) and getattr(args, name) == (1_000_000 if name == "ratings" else 20):
                setattr(args, name, value)
    if hasattr(args, "runs") and args.chart_runs is None:
        args.chart_runs = args.runs
    return args


async def amain(args: argparse.Namespace) -> None:
    temp: Path | None = None
    if args.command == "all" and args.database is None:
        temp = Path(tempfile.mkdtemp(prefix="loyalty-bench-reports-"))
        args.database = f"sqlite://{temp}/reports.sqlite3"
        args.reset = True
    args.database = args.database or DEFAULT_DATABASE
    try:
        if args.command in ("seed", "all"):
            await seed(args)
        if args.command in ("measure", "all"):
            await measure(args)
    finally:
        from tortoise import Tortoise

        await Tortoise.close_connections()  # after a failure too: an open aiosqlite thread keeps the process alive
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import logging

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
