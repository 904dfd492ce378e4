"""KPI figures for /report, /me and the digests: counts and ratios per scope and period.

Everything is aggregated in SQL (GROUP BY over indexed columns) with the same Tortoise
queries on SQLite and PostgreSQL; Python only adds up grouped rows (a few per day at most)
and computes the ratios. Periods are cut in the office's time zone: a rating's local day and
hour (``Rating.local_date``/``local_hour``) are fixed at insert, so a rating at 23:30 MSK on
the 1st belongs to the 1st whatever the database's or the server's zone.

Definitions (DESIGN.md, "KPIs"), over *valid* ratings (``excluded_reason`` is null):

- ``N+``, ``N0``, ``N-`` good, neutral, bad; ``N = N+ + N0 + N-``;
- satisfaction ``N+ / N``; like-index ``(N+ − N-) / N × 100``; happy index
  ``(100·N+ + 50·N0) / N`` (HappyOrNot's: good 100, neutral 50, bad 0);
- ``S`` clients served, per office and local day: the queue terminal's or presence sensor's
  ``start`` events where there are any that day, otherwise the figure entered with
  ``/served``; response rate ``N / S``, customer support index ``N+ / S × 100``, customer
  criticality index ``N- / S × 100``. The ``N`` in these three counts only ratings of the
  office-days that have an ``S``, so a day nobody counted does not inflate them;
- comment compliance: negatives commented on time / negatives due (see ``CommentStats``);
- sales-standard compliance: the mean ``Score.result`` (0–100, a failed critical criterion
  gives 0) of the quality service's *submitted* scores, calibration scores excluded (see
  ``KpiService.summary_sales_compliance`` for which month a score counts in);
- NPS (kiosk and QR surveys, 0–10; ``NpsAnswer`` by its local day): promoters 9–10,
  passives 7–8, detractors 0–6; ``NPS = %promoters − %detractors`` (−100…100), ``None``
  without answers (see ``NpsKpi``);
- reasons for dissatisfaction: the reasons customers picked with a valid bad or neutral
  rating, counted per reason (``KpiService.reasons``); an employee's negatives split by
  whether their reasons were within the employee's control, and the like-index without the
  negatives whose reasons were all outside it (``KpiService.negatives_by_control``);
- every ratio is ``None`` when its denominator is 0: the renderer shows "no data".

Ratings keep the office they were given in (``Rating.office_id``), so office figures follow
the rating and an employee's own figures span every office they worked in.
"""

from __future__ import annotations

import asyncio
import calendar
import inspect
import re
import statistics
from collections import defaultdict
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.functions import Count, Sum
from tortoise.queryset import QuerySet

from bot.clock import Clock
from bot.errors import DomainError, NotFound
from bot.models import (
    ExclusionReason,
    NegativeCase,
    NpsAnswer,
    Office,
    PresenceEvent,
    Rating,
    RatingReason,
    RatingTally,
    RatingValue,
    Reason,
    Score,
    ScoreStatus,
    ServedClients,
    Staff,
)

__all__ = [
    "MAX_PERIOD_DAYS",
    "ComplianceDay",
    "ComplianceKpi",
    "CommentStats",
    "DayCounts",
    "KpiService",
    "KpiSummary",
    "NegativeSplit",
    "NpsKpi",
    "ReasonKpi",
    "Period",
    "PeriodError",
    "Scope",
    "Served",
    "ServedEntry",
    "ServedSource",
    "StaffKpi",
    "local_calendar",
    "local_today",
    "parse_period",
]

T = TypeVar("T")
MAX_PERIOD_DAYS = 366
MAX_SERVED_PER_DAY = 100_000

ServedSource = Literal["presence", "manual", "mixed"]


# --- periods ------------------------------------------------------------------------------


class PeriodError(DomainError, ValueError):
    """A period the user typed that means nothing; ``message`` is a gettext msgid."""

    def __str__(self) -> str:
        return self.message.format(**self.params) if self.params else self.message


PERIOD_FORMS = "today, yesterday, 7d, 30d, month, last_month, YYYY-MM-DD..YYYY-MM-DD"


@dataclass(frozen=True, slots=True)
class Period:
    """Local days ``start``..``end``, both inclusive, in each office's own time zone."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise PeriodError("The period starts after it ends: {start} > {end}.", start=self.start, end=self.end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length that ends the day before this one starts."""
        end = self.start - timedelta(days=1)
        return Period(end - timedelta(days=self.days - 1), end)

    def dates(self) -> Iterator[date]:
        for offset in range(self.days):
            yield self.start + timedelta(days=offset)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day <= self.end

    def utc_bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """``[from, to)`` in aware datetimes: local midnight of ``start`` to that after ``end``."""
        begin = datetime.combine(self.start, time(), tz)
        after = datetime.combine(self.end + timedelta(days=1), time(), tz)
        return begin, after

    def label(self, locale: str = "ru") -> str:
        fmt = "%d.%m.%Y" if locale == "ru" else "%Y-%m-%d"
        if self.start == self.end:
            return self.start.strftime(fmt)
        return f"{self.start.strftime(fmt)} – {self.end.strftime(fmt)}"


def local_today(now: datetime, tz: ZoneInfo) -> date:
    """The office's calendar day at ``now`` (UTC-aware): what ``today`` means in its reports."""
    return now.astimezone(tz).date()


def local_calendar(ts: datetime, tz: ZoneInfo) -> tuple[date, int]:
    """The local day and hour a rating at ``ts`` is reported under (as stored at ingest)."""
    local = ts.astimezone(tz)
    return local.date(), local.hour


_ALIASES = {
    "today": "today", "сегодня": "today",
    "yesterday": "yesterday", "вчера": "yesterday",
    "week": "7d", "неделя": "7d",
    "month": "month", "месяц": "month",
    "last_month": "last_month", "прошлый_месяц": "last_month",
}
_DAYS = re.compile(r"(\d{1,4})\s*(?:d|д)")
_DATE = r"\d{4}-\d{1,2}-\d{1,2}"
_RANGE = re.compile(rf"({_DATE})(?:\s*(?:\.\.|—|–)\s*({_DATE}))?")


def parse_period(text: str, today: date) -> Period:
    """What a manager types after /report, relative to the office's local ``today``.

    ``today``/``сегодня``, ``yesterday``/``вчера``, ``Nd`` (the last N days including today:
    ``7d``, ``30d``; ``неделя`` is 7d), ``month``/``месяц`` (the 1st of this month to today),
    ``last_month`` (the whole previous month), ``YYYY-MM-DD..YYYY-MM-DD`` (inclusive) or a
    single ``YYYY-MM-DD``. At most 366 days. Anything else raises ``PeriodError`` (a
    ``ValueError``) whose message lists the accepted forms.
    """
    key = " ".join(text.strip().lower().split())
    key = _ALIASES.get(key.replace(" ", "_"), key)
    if key == "today":
        return Period(today, today)
    if key == "yesterday":
        day = today - timedelta(days=1)
        return Period(day, day)
    if key == "month":
        return Period(today.replace(day=1), today)
    if key == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return Period(end.replace(day=1), end)
    if match := _DAYS.fullmatch(key):
        days = int(match.group(1))
        if not 1 <= days <= MAX_PERIOD_DAYS:
            raise PeriodError("A period is 1 to {max} days long; got {days}.", max=MAX_PERIOD_DAYS, days=days)
        return Period(today - timedelta(days=days - 1), today)
    if match := _RANGE.fullmatch(key):
        start = _parse_date(match.group(1))
        end = _parse_date(match.group(2)) if match.group(2) else start
        if start > end:
            raise PeriodError("The period starts after it ends: {start} > {end}.", start=start, end=end)
        period = Period(start, end)
        if period.days > MAX_PERIOD_DAYS:
            raise PeriodError(
                "A period is at most {max} days long; {start}..{end} is {days}.",
                max=MAX_PERIOD_DAYS, start=start, end=end, days=period.days,
            )
        return period
    raise PeriodError("Unknown period «{text}». Use one of: {forms}.", text=text.strip(), forms=PERIOD_FORMS)


def _parse_date(text: str) -> date:
    year, month, day = (int(part) for part in text.split("-"))
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise PeriodError("{text} is not a date; write it as YYYY-MM-DD.", text=text)
    return date(year, month, day)


# --- scope --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """Which ratings a report covers; the filters combine (AND). ``office_ids=None`` is all offices."""

    office_ids: tuple[int, ...] | None = None
    point_id: int | None = None
    staff_id: int | None = None
    label: str = ""

    @classmethod
    def company(cls, label: str = "") -> Scope:
        return cls(label=label)

    @classmethod
    def offices(cls, *office_ids: int, label: str = "") -> Scope:
        return cls(office_ids=tuple(office_ids), label=label)

    @classmethod
    def point(cls, point_id: int, label: str = "") -> Scope:
        return cls(point_id=point_id, label=label)

    @classmethod
    def staff(cls, staff_id: int, label: str = "") -> Scope:
        return cls(staff_id=staff_id, label=label)

    def ratings(self, period: Period, prefix: str = "") -> dict[str, object]:
        """Filter keywords for ``Rating`` (``prefix="rating__"`` from a related model).

        ``local_date`` makes the cut; the looser ``ts`` range (a day either side covers every
        UTC offset) only lets a company-wide query use the index on ``ts``.
        """
        filters: dict[str, object] = {
            f"{prefix}local_date__gte": period.start,
            f"{prefix}local_date__lte": period.end,
            f"{prefix}ts__gte": datetime.combine(period.start - timedelta(days=1), time(), UTC),
            f"{prefix}ts__lt": datetime.combine(period.end + timedelta(days=2), time(), UTC),
        }
        if self.office_ids is not None:
            filters[f"{prefix}office_id__in"] = list(self.office_ids)
        if self.point_id is not None:
            filters[f"{prefix}point_id"] = self.point_id
        if self.staff_id is not None:
            filters[f"{prefix}staff_id"] = self.staff_id
        return filters

    def local_days(self, period: Period) -> dict[str, object]:
        """Filter keywords for a table that stores each row's local day, office, point and
        employee (``RatingTally``: the same ratings as ``ratings``, counted; ``NpsAnswer``)."""
        filters: dict[str, object] = {"local_date__gte": period.start, "local_date__lte": period.end}
        if self.office_ids is not None:
            filters["office_id__in"] = list(self.office_ids)
        if self.point_id is not None:
            filters["point_id"] = self.point_id
        if self.staff_id is not None:
            filters["staff_id"] = self.staff_id
        return filters


# --- figures ------------------------------------------------------------------------------


def _ratio(numerator: int, denominator: int | None, scale: float = 1.0) -> float | None:
    return numerator / denominator * scale if denominator else None


class _Ratios:
    """Satisfaction, like-index and happy index from ``good``/``neutral``/``bad``."""

    __slots__ = ()
    good: int
    neutral: int
    bad: int

    @property
    def total(self) -> int:
        return self.good + self.neutral + self.bad

    @property
    def satisfaction(self) -> float | None:
        """``N+ / N``, 0…1."""
        return _ratio(self.good, self.total)

    @property
    def like_index(self) -> float | None:
        """``(N+ − N-) / N × 100``, −100…100."""
        return _ratio(self.good - self.bad, self.total, 100.0)

    @property
    def happy_index(self) -> float | None:
        """``(100·N+ + 50·N0) / N``, 0…100."""
        return _ratio(100 * self.good + 50 * self.neutral, self.total)


@dataclass(frozen=True, slots=True)
class Served:
    """Clients served ``S`` in a scope and period, and the valid ratings ``S`` is compared with.

    Counted per office and local day: the ``start`` events of queue terminals and presence
    sensors when there are any that day, the ``/served`` figure otherwise. Hand-entered
    figures are per office, so a point's or an employee's ``S`` comes from presence events
    only (an employee's: events that name them in ``staff_code``). ``ratings``/``good``/
    ``bad`` count valid ratings of the office-days that have a figure, the numerators of the
    response rate and the support and criticality indices.
    """

    presence_clients: int = 0
    manual_clients: int = 0
    presence_days: int = 0  # office-days whose figure came from presence events
    manual_days: int = 0    # office-days whose figure was entered by hand
    ratings: int = 0
    good: int = 0
    bad: int = 0

    @property
    def clients(self) -> int | None:
        """``S``, or ``None`` when no office-day in scope has a figure at all."""
        if not self.presence_days and not self.manual_days:
            return None
        return self.presence_clients + self.manual_clients

    @property
    def source(self) -> ServedSource | None:
        if self.presence_days and self.manual_days:
            return "mixed"
        if self.presence_days:
            return "presence"
        if self.manual_days:
            return "manual"
        return None

    @property
    def days(self) -> int:
        return self.presence_days + self.manual_days


@dataclass(frozen=True, slots=True)
class CommentStats:
    """Comments on the period's valid negatives (by the rating's local day).

    - ``negatives``: valid bad ratings of the period that have a case;
    - ``due``: those commented (whenever), plus those not commented whose deadline
      (``due_at``) is at or before now. A negative not commented yet whose deadline has not
      passed, or that has no deadline, is not due and counts neither way;
    - ``on_time``: commented no later than the deadline (``comment_late`` is false; it is
      fixed when the first comment arrives) or commented where there was no deadline;
    - compliance = ``on_time / due``; ``median_minutes`` from the rating to its first
      comment, over the commented ones, late or not.
    """

    negatives: int = 0
    due: int = 0
    on_time: int = 0
    commented: int = 0
    median_minutes: float | None = None

    @property
    def late(self) -> int:
        return self.commented - self.on_time

    @property
    def overdue_open(self) -> int:
        """Past the deadline and still not commented."""
        return self.due - self.commented

    @property
    def compliance(self) -> float | None:
        return _ratio(self.on_time, self.due)


@dataclass(frozen=True, slots=True)
class NpsKpi:
    """Answers to "how likely are you to recommend us" (0–10) in a scope and period.

    Promoters answered 9–10, passives 7–8, detractors 0–6; ``score`` is
    ``% promoters − % detractors`` (−100…100, DESIGN.md), ``None`` without answers.
    """

    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    @property
    def count(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> float | None:
        return _ratio(self.promoters - self.detractors, self.count, 100.0)

    @property
    def promoter_share(self) -> float | None:
        return _ratio(self.promoters, self.count)

    @property
    def passive_share(self) -> float | None:
        return _ratio(self.passives, self.count)

    @property
    def detractor_share(self) -> float | None:
        return _ratio(self.detractors, self.count)


@dataclass(frozen=True, slots=True)
class KpiSummary(_Ratios):
    scope: Scope
    period: Period
    good: int = 0
    neutral: int = 0
    bad: int = 0
    excluded: dict[ExclusionReason, int] = field(default_factory=dict)
    served: Served = field(default_factory=Served)
    comments: CommentStats = field(default_factory=CommentStats)
    previous: KpiSummary | None = None
    sales_compliance: float | None = None  # mean submitted score, 0–100 (``summary_sales_compliance``)
    sales_scored: int = 0  # the scores it is the mean of
    nps: NpsKpi = field(default_factory=NpsKpi)  # kiosk and QR survey answers (``KpiService.nps``)

    @property
    def nps_score(self) -> float | None:
        """NPS, −100…100, ``None`` without answers (``change("nps_score")`` compares periods)."""
        return self.nps.score

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    @property
    def response_rate(self) -> float | None:
        """``N / S``, 0…1 (more than 1 means more ratings than counted clients)."""
        return _ratio(self.served.ratings, self.served.clients)

    @property
    def support_index(self) -> float | None:
        """Customer support index ``N+ / S × 100``."""
        return _ratio(self.served.good, self.served.clients, 100.0)

    @property
    def criticality_index(self) -> float | None:
        """Customer criticality index ``N- / S × 100``."""
        return _ratio(self.served.bad, self.served.clients, 100.0)

    @property
    def comment_compliance(self) -> float | None:
        return self.comments.compliance

    @property
    def median_comment_minutes(self) -> float | None:
        return self.comments.median_minutes

    def change(self, metric: str) -> float | None:
        """This period's ``metric`` (a property or count) minus the previous period's, if both exist."""
        if self.previous is None:
            return None
        now, before = getattr(self, metric), getattr(self.previous, metric)
        if now is None or before is None:
            return None
        return now - before


@dataclass(frozen=True, slots=True)
class DayCounts(_Ratios):
    day: date
    good: int = 0
    neutral: int = 0
    bad: int = 0
    excluded: int = 0


@dataclass(frozen=True, slots=True)
class StaffKpi(_Ratios):
    staff_id: int
    name: str
    good: int = 0
    neutral: int = 0
    bad: int = 0


@dataclass(frozen=True, slots=True)
class ComplianceDay:
    day: date
    negatives: int = 0
    due: int = 0
    on_time: int = 0
    commented: int = 0

    @property
    def compliance(self) -> float | None:
        return _ratio(self.on_time, self.due)


@dataclass(frozen=True, slots=True)
class ComplianceKpi:
    """One employee's sales-standard compliance: the mean of ``scored`` submitted scores, 0–100."""

    staff_id: int
    name: str
    percent: float
    scored: int


@dataclass(frozen=True, slots=True)
class ReasonKpi:
    """How many valid dissatisfied ratings (bad or neutral) came with this reason; ``bad`` of them were bad.

    ``label`` is in the report's language; ``staff_related`` false: outside the employee's
    control (stock, price, queue).
    """

    reason_id: int
    code: str
    label: str
    staff_related: bool
    count: int
    bad: int = 0


@dataclass(frozen=True, slots=True)
class NegativeSplit:
    """Valid negatives (bad ratings) split by the reasons the customers gave with them.

    - ``staff_related``: at least one reason is within the employee's control;
    - ``outside_only``: reasons were given and every one is outside it (``Reason.staff_related``
      false: stock, price, queue…);
    - ``no_reason``: no reason given (the desk button asks none).

    ``adjusted_like_index`` is the like-index without the ``outside_only`` negatives, in the
    numerator and the denominator: ``(N+ − (N- − N-out)) / (N − N-out) × 100``. A negative
    with a staff-related reason, or with no reason at all, still counts against the employee.
    ``outside_labels``: the reasons given with the ``outside_only`` negatives, most frequent first.
    """

    good: int = 0
    neutral: int = 0
    negatives: int = 0
    staff_related: int = 0
    outside_only: int = 0
    outside_labels: tuple[str, ...] = ()

    @property
    def no_reason(self) -> int:
        return self.negatives - self.staff_related - self.outside_only

    @property
    def like_index(self) -> float | None:
        return _ratio(self.good - self.negatives, self.good + self.neutral + self.negatives, 100.0)

    @property
    def adjusted_like_index(self) -> float | None:
        counted = self.negatives - self.outside_only
        return _ratio(self.good - counted, self.good + self.neutral + counted, 100.0)


@dataclass(frozen=True, slots=True)
class ServedEntry:
    """What ``/served`` stored, and the figure it replaced (``None`` if the day had none)."""

    office_id: int
    day: date
    clients: int
    previous: int | None


# --- the service --------------------------------------------------------------------------

_VALID = Q(excluded_reason__isnull=True)
_DISSATISFIED = [RatingValue.BAD, RatingValue.NEUTRAL]
_COUNTED = Q(excluded_reason="")  # a valid rating's tally


def _counted(value: RatingValue) -> Q:
    return Q(value=value, excluded_reason="")


async def _given(value: T) -> T:
    """A value where a query is skipped, among the ones :meth:`KpiService.together` runs."""
    return value


async def _fetch(query: Awaitable[T]) -> T:
    """A query as a coroutine, for ``TaskGroup.create_task``."""
    return await query


def _sum(value: Any) -> int:
    return int(value or 0)  # SUM over no rows is NULL, and a Decimal on PostgreSQL


class KpiService:
    """The figures behind /report, /me and the digests; each method is one grouped query.

    ``summary`` costs at most 8 queries (``compare=True``: 3 more, the brief previous period):
    counts by kind and exclusion reason; presence ``start`` events per office-day; hand-entered figures
    (office and company scopes only); valid ratings per office-day (only when some office-day
    has a served figure); comment compliance per day; comment times (only when a negative of
    the period was commented); submitted scores per office (sales-standard compliance); NPS
    answers per score (``nps``, in the brief comparison too).

    ``queries_at_once``: independent queries run concurrently (:meth:`together`) — on
    PostgreSQL on several pooled connections. On SQLite's single connection they would only
    queue, and the loop and the driver's thread then trade the GIL: one after another is faster.
    """

    def __init__(self, clock: Clock, queries_at_once: bool = True) -> None:
        self._clock = clock
        self.queries_at_once = queries_at_once

    async def together(self, *calls: Awaitable[Any]) -> list[Any]:
        """The results of independent queries (coroutines or Tortoise querysets), in order."""
        if self.queries_at_once:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(_fetch(call)) for call in calls]
            return [task.result() for task in tasks]
        results: list[Any] = []
        try:
            for call in calls:
                results.append(await call)
        finally:
            for left in calls[len(results) + 1:]:  # never started: close them quietly
                if inspect.iscoroutine(left):
                    left.close()
        return results

    async def summary(
        self, scope: Scope, period: Period, compare: bool = False, brief: bool = False,
        comment_days: Sequence[ComplianceDay] | None = None, previous_comment_days: Sequence[ComplianceDay] | None = None,
    ) -> KpiSummary:
        """``compare`` adds the previous period of the same length, ``brief``: only what a
        comparison shows (counts and comment compliance; no served figures, median or scores),
        which halves a report's queries over the largest tables. ``comment_days``: this
        period's ``compliance_daily`` when the caller has it already (a report draws it), so
        the comment figures are added up from it instead of queried twice; ``previous_comment_days``
        the same for the previous period (a report asks for both periods' days at once)."""
        # the figures come from different tables and do not depend on each other
        rows, scored, served, comments, previous, nps = await self.together(
            RatingTally.filter(**scope.local_days(period))
            .annotate(n=Sum("ratings"))
            .group_by("value", "excluded_reason")
            .values("value", "excluded_reason", "n"),
            _given((None, 0)) if brief else self.summary_sales_compliance(scope, period),
            _given(Served()) if brief else self.served(scope, period),
            self._comment_stats(scope, period, with_median=not brief, days=comment_days),
            self.summary(scope, period.previous(), brief=True, comment_days=previous_comment_days) if compare else _given(None),
            self.nps(scope, period),
        )
        counts: dict[RatingValue, int] = defaultdict(int)
        excluded: dict[ExclusionReason, int] = defaultdict(int)
        for row in rows:
            if not row["excluded_reason"]:
                counts[RatingValue(row["value"])] += _sum(row["n"])
            else:
                excluded[ExclusionReason(row["excluded_reason"])] += _sum(row["n"])
        sales, scores = scored
        return KpiSummary(
            scope=scope,
            period=period,
            good=counts[RatingValue.GOOD],
            neutral=counts[RatingValue.NEUTRAL],
            bad=counts[RatingValue.BAD],
            excluded=dict(excluded),
            served=served,
            comments=comments,
            previous=previous,
            sales_compliance=sales, sales_scored=scores,
            nps=nps,
        )

    async def daily(self, scope: Scope, period: Period) -> list[DayCounts]:
        """Every day of the period, oldest first, zeros included."""
        rows = (
            await RatingTally.filter(**scope.local_days(period))
            .annotate(
                good=Sum("ratings", _filter=_counted(RatingValue.GOOD)),
                neutral=Sum("ratings", _filter=_counted(RatingValue.NEUTRAL)),
                bad=Sum("ratings", _filter=_counted(RatingValue.BAD)),
                excluded=Sum("ratings", _filter=~_COUNTED),
            )
            .group_by("local_date")
            .values("local_date", "good", "neutral", "bad", "excluded")
        )
        by_day = {row["local_date"]: row for row in rows}
        days = []
        for day in period.dates():
            row = by_day.get(day)
            days.append(
                DayCounts(day, _sum(row["good"]), _sum(row["neutral"]), _sum(row["bad"]), _sum(row["excluded"]))
                if row else DayCounts(day)
            )
        return days

    async def staff_ranking(self, scope: Scope, period: Period) -> list[StaffKpi]:
        """Employees with valid ratings, best like-index first, then more ratings first.

        Ratings nobody was responsible for (``staff_id`` null) are not in the ranking.
        """
        rows = (
            await RatingTally.filter(_COUNTED, staff_id__gt=0, **scope.local_days(period))
            .annotate(
                good=Sum("ratings", _filter=Q(value=RatingValue.GOOD)),
                neutral=Sum("ratings", _filter=Q(value=RatingValue.NEUTRAL)),
                bad=Sum("ratings", _filter=Q(value=RatingValue.BAD)),
            )
            .group_by("staff_id")
            .values("staff_id", "good", "neutral", "bad")
        )
        # names in a second, small query: joining staff before grouping costs a lookup per row
        names = dict(await Staff.filter(id__in=[r["staff_id"] for r in rows]).values_list("id", "name")) if rows else {}
        ranking = [
            StaffKpi(r["staff_id"], names.get(r["staff_id"], "?"), _sum(r["good"]), _sum(r["neutral"]), _sum(r["bad"]))
            for r in rows
        ]
        ranking.sort(key=lambda s: (-(s.like_index or 0.0), -s.total, s.name, s.staff_id))
        return ranking

    async def negatives_by_weekday_hour(self, scope: Scope, period: Period) -> list[list[int]]:
        """Valid negatives as a 7×24 matrix: ``[weekday][local hour]``, Monday first.

        SQL groups by (local day, local hour): at most 24 rows a day, folded into weekdays
        here, because weekday functions differ between SQLite and PostgreSQL.
        """
        rows = (
            await Rating.filter(_VALID, value=RatingValue.BAD, local_hour__isnull=False, **scope.ratings(period))
            .annotate(n=Count("id"))
            .group_by("local_date", "local_hour")
            .values("local_date", "local_hour", "n")
        )
        matrix = [[0] * 24 for _ in range(7)]
        for row in rows:
            matrix[row["local_date"].weekday()][row["local_hour"]] += row["n"]
        return matrix

    async def compliance_daily(self, scope: Scope, period: Period) -> list[ComplianceDay]:
        """Per local day of the negative's rating, every day present (see ``CommentStats``)."""
        by_day = {row["rating__local_date"]: row for row in await self._compliance_rows(scope, period)}
        days = []
        for day in period.dates():
            row = by_day.get(day)
            days.append(
                ComplianceDay(day, row["negatives"], row["due"], row["on_time"], row["commented"]) if row else ComplianceDay(day)
            )
        return days

    async def reasons(self, scope: Scope, period: Period, locale: str = "ru") -> list[ReasonKpi]:
        """Reasons for dissatisfaction, most frequent first (then by label).

        One GROUP BY over ``RatingReason`` joined to the valid (not excluded) bad and neutral
        ratings of the scope and period: a rating with two reasons counts once for each; a
        reason given with a good rating is not dissatisfaction and is left out. Labels in
        ``locale`` (English falls back to the Russian label when none is set), read in a
        second, small query after grouping.
        """
        rows = (
            await RatingReason.filter(
                rating__excluded_reason__isnull=True, rating__value__in=_DISSATISFIED,
                **scope.ratings(period, prefix="rating__"),
            )
            .annotate(n=Count("id"), bad=Count("id", _filter=Q(rating__value=RatingValue.BAD)))
            .group_by("reason_id")
            .values("reason_id", "n", "bad")
        )
        if not rows:
            return []
        reasons = {r.id: r for r in await Reason.filter(id__in=[row["reason_id"] for row in rows])}
        found = []
        for row in rows:
            reason = reasons.get(row["reason_id"])
            if reason is None:
                continue
            label = (reason.label_en or reason.label) if locale == "en" else reason.label
            found.append(ReasonKpi(reason.id, reason.code, label, reason.staff_related, _sum(row["n"]), _sum(row["bad"])))
        found.sort(key=lambda r: (-r.count, r.label, r.reason_id))
        return found

    async def negatives_by_control(
        self, scope: Scope, period: Period, locale: str = "ru", summary: KpiSummary | None = None
    ) -> NegativeSplit:
        """The scope's valid negatives split by the reasons given with them (``NegativeSplit``),
        for "reasons outside the employee's control" in an employee's report, and the adjusted
        like-index that leaves out the negatives whose reasons were all outside it.

        Three grouped queries at most, and the reasons table (small: the org file's list): the
        counts by kind from the tallies (or from ``summary``, the same scope and period's); the
        negatives with reasons (distinct ratings, and those with a staff-related reason); and,
        when some negatives had only outside reasons, those reasons per reason (for their labels).
        """
        counts: dict[str, int] = defaultdict(int)
        if summary is not None and (summary.scope, summary.period) == (scope, period):  # the report has them already
            counts.update({RatingValue.GOOD: summary.good, RatingValue.NEUTRAL: summary.neutral, RatingValue.BAD: summary.bad})
        else:
            for row in (
                await RatingTally.filter(_COUNTED, **scope.local_days(period))
                .annotate(n=Sum("ratings"))
                .group_by("value")
                .values("value", "n")
            ):
                counts[str(row["value"])] += _sum(row["n"])
        negatives = dict(
            rating__excluded_reason__isnull=True, rating__value=RatingValue.BAD, **scope.ratings(period, prefix="rating__")
        )
        # the reasons table is small (the org file's list): read whole, once, for the staff-related
        # ids as a literal list (a related field inside an aggregate's filter is not joined by
        # Tortoise) and for the labels
        catalogue = {r.id: r for r in await Reason.all()}
        blamed_ids = [r.id for r in catalogue.values() if r.staff_related]
        with_reason = staff_related = 0
        for row in (
            await RatingReason.filter(**negatives)
            .annotate(
                rated=Count("rating_id", distinct=True),
                related=Count("rating_id", distinct=True, _filter=Q(reason_id__in=blamed_ids or [0])),
            )
            .group_by("rating__office_id")  # Tortoise needs a GROUP BY for aggregates: one row per office
            .values("rating__office_id", "rated", "related")
        ):
            with_reason += _sum(row["rated"])
            staff_related += _sum(row["related"])
        labels: tuple[str, ...] = ()
        if with_reason > staff_related:
            blamed = RatingReason.filter(reason_id__in=blamed_ids or [0], **negatives).values("rating_id")
            rows = (
                await RatingReason.filter(**negatives)
                .exclude(reason_id__in=blamed_ids or [0])
                .exclude(rating_id__in=Subquery(blamed))
                .annotate(n=Count("id"))
                .group_by("reason_id")
                .values("reason_id", "n")
            )
            names = {
                r.id: ((r.label_en or r.label) if locale == "en" else r.label)
                for r in (catalogue.get(row["reason_id"]) for row in rows) if r is not None
            }
            rows.sort(key=lambda row: (-_sum(row["n"]), names.get(row["reason_id"], "")))
            labels = tuple(names[row["reason_id"]] for row in rows if row["reason_id"] in names)
        return NegativeSplit(
            good=counts[RatingValue.GOOD], neutral=counts[RatingValue.NEUTRAL], negatives=counts[RatingValue.BAD],
            staff_related=staff_related, outside_only=with_reason - staff_related, outside_labels=labels,
        )

    async def nps(self, scope: Scope, period: Period) -> NpsKpi:
        """NPS answers of the scope whose local day is in the period, by score (one GROUP BY)."""
        query = NpsAnswer.filter(**scope.local_days(period))
        split = {"promoters": 0, "passives": 0, "detractors": 0}
        for row in await query.annotate(n=Count("id")).group_by("score").values("score", "n"):
            score = int(row["score"])
            key = "promoters" if score >= 9 else "passives" if score >= 7 else "detractors"
            split[key] += _sum(row["n"])
        return NpsKpi(**split)

    async def served(self, scope: Scope, period: Period) -> Served:
        """``S`` per office-day (presence where it exists, else by hand) and the ratings it covers."""
        presence_query = PresenceEvent.filter(state="start", local_date__gte=period.start, local_date__lte=period.end)
        if scope.office_ids is not None:
            presence_query = presence_query.filter(point__office_id__in=list(scope.office_ids))
        if scope.point_id is not None:
            presence_query = presence_query.filter(point_id=scope.point_id)
        if scope.staff_id is not None:
            presence_query = presence_query.filter(staff_code=Subquery(Staff.filter(id=scope.staff_id).values("code")))
        # point_id, not id, is counted: it is in the day indexes, so the count reads only the index
        figures: dict[tuple[int, date], tuple[int, ServedSource]] = {
            (row["point__office_id"], row["local_date"]): (row["n"], "presence")
            for row in await presence_query.annotate(n=Count("point_id"))
            .group_by("point__office_id", "local_date")
            .values("point__office_id", "local_date", "n")
        }
        if scope.point_id is None and scope.staff_id is None:  # hand-entered figures are per office
            manual_query = ServedClients.filter(day__gte=period.start, day__lte=period.end)
            if scope.office_ids is not None:
                manual_query = manual_query.filter(office_id__in=list(scope.office_ids))
            # one row per office and day already (unique together): nothing to group
            for row in await manual_query.values("office_id", "day", "clients"):
                figures.setdefault((row["office_id"], row["day"]), (row["clients"], "manual"))
        if not figures:
            return Served()
        covered = {"ratings": 0, "good": 0, "bad": 0}
        for row in (
            await RatingTally.filter(_COUNTED, **scope.local_days(period))
            .annotate(
                total=Sum("ratings"),
                good=Sum("ratings", _filter=Q(value=RatingValue.GOOD)),
                bad=Sum("ratings", _filter=Q(value=RatingValue.BAD)),
            )
            .group_by("office_id", "local_date")
            .values("office_id", "local_date", "total", "good", "bad")
        ):
            if (row["office_id"], row["local_date"]) in figures:
                covered["ratings"] += _sum(row["total"])
                covered["good"] += _sum(row["good"])
                covered["bad"] += _sum(row["bad"])
        presence = [clients for clients, source in figures.values() if source == "presence"]
        manual = [clients for clients, source in figures.values() if source == "manual"]
        return Served(
            presence_clients=sum(presence), manual_clients=sum(manual),
            presence_days=len(presence), manual_days=len(manual), **covered,
        )

    # --- sales-standard compliance ---

    async def summary_sales_compliance(self, scope: Scope, period: Period) -> tuple[float | None, int]:
        """Sales-standard compliance over the scope and period: (mean score 0–100, scores counted).

        Counted: the quality service's submitted scores (``Score.status`` submitted), not
        calibration scores (``calibration_id`` null). A score's result is 0 when a critical
        criterion failed, and that 0 is averaged in like any other result.

        Which period a score counts in: compliance is a monthly figure (the sampling plan is N
        conversations per employee per month), so a score counts by ``Score.month``, the first
        day of its *conversation's* local month, and a period covers every month it touches:
        ``month`` and ``last_month`` are exact, ``7d`` or ``yesterday`` give the month(s) so
        far. A score submitted in December for a November conversation counts in November.

        Scope: an office by ``Score.office_id`` (the conversation's office), a point by the
        conversation's point, an employee by ``Score.staff_id`` (who was scored). ``None`` and
        0 when nothing was scored. One grouped query (sum and count per office), added up here.
        """
        total, scored = 0.0, 0
        for row in (
            await self._scores(scope, period)
            .annotate(total=Sum("result"), n=Count("id"))
            .group_by("office_id")
            .values("office_id", "total", "n")
        ):
            total += float(row["total"] or 0.0)
            scored += row["n"]
        return (total / scored if scored else None), scored

    async def sales_compliance(self, scope: Scope, period: Period) -> list[ComplianceKpi]:
        """Per employee, best first (then more scores first): the same scores as the summary.

        Scores of conversations nobody was identified in (``Score.staff_id`` null) count in the
        summary but have no row here.
        """
        rows = (
            await self._scores(scope, period)
            .filter(staff_id__isnull=False)
            .annotate(total=Sum("result"), n=Count("id"))
            .group_by("staff_id", "staff__name")
            .values("staff_id", "staff__name", "total", "n")
        )
        ranking = [
            ComplianceKpi(r["staff_id"], r["staff__name"], float(r["total"] or 0.0) / r["n"], r["n"]) for r in rows if r["n"]
        ]
        ranking.sort(key=lambda k: (-k.percent, -k.scored, k.name, k.staff_id))
        return ranking

    def _scores(self, scope: Scope, period: Period) -> QuerySet[Score]:
        query = Score.filter(
            status=ScoreStatus.SUBMITTED, calibration_id__isnull=True, result__isnull=False,
            month__gte=period.start.replace(day=1), month__lte=period.end,
        )
        if scope.office_ids is not None:
            query = query.filter(office_id__in=list(scope.office_ids))
        if scope.point_id is not None:
            query = query.filter(conversation__point_id=scope.point_id)
        if scope.staff_id is not None:
            query = query.filter(staff_id=scope.staff_id)
        return query

    async def record_served(
        self, office_id: int, day: date, clients: int, staff_id: int | None, now: datetime
    ) -> ServedEntry:
        """Store ``/served OFFICE DATE N``: one figure per office and local day, the last one wins.

        Refuses a negative or absurd count and a day that has not begun in the office yet.
        """
        if not 0 <= clients <= MAX_SERVED_PER_DAY:
            raise DomainError("Clients served must be a whole number from 0 to {max}.", max=MAX_SERVED_PER_DAY)
        timezone = await Office.filter(id=office_id).values_list("timezone", flat=True)
        if not timezone:
            raise NotFound("No such office.")
        if day > local_today(now, ZoneInfo(timezone[0])):
            raise DomainError("{day} has not come yet in this office; enter clients served for today or earlier.", day=day)
        changes = {"clients": clients, "entered_by_id": staff_id, "entered_at": now}
        before = await ServedClients.filter(office_id=office_id, day=day).values_list("clients", flat=True)
        if before:
            await ServedClients.filter(office_id=office_id, day=day).update(**changes)
            return ServedEntry(office_id, day, clients, before[0])
        try:
            await ServedClients.create(office_id=office_id, day=day, **changes)
        except IntegrityError:  # someone entered the same day a moment ago: ours is the later one
            await ServedClients.filter(office_id=office_id, day=day).update(**changes)
        return ServedEntry(office_id, day, clients, None)

    # --- comments ---

    def _cases(self, scope: Scope, period: Period) -> QuerySet[NegativeCase]:
        # only bad ratings have cases: saying so lets PostgreSQL estimate the join (and pick an index)
        return NegativeCase.filter(
            rating__value=RatingValue.BAD, rating__excluded_reason__isnull=True, **scope.ratings(period, prefix="rating__")
        )

    async def _compliance_rows(self, scope: Scope, period: Period) -> list[dict[str, Any]]:
        commented = Q(commented_at__isnull=False)
        return await (
            self._cases(scope, period)
            .annotate(
                negatives=Count("id"),
                due=Count("id", _filter=commented | Q(due_at__lte=self._clock.now())),
                on_time=Count("id", _filter=commented & (Q(comment_late=False) | Q(comment_late__isnull=True))),
                commented=Count("id", _filter=commented),
            )
            .group_by("rating__local_date")
            .values("rating__local_date", "negatives", "due", "on_time", "commented")
        )

    async def _comment_stats(
        self, scope: Scope, period: Period, with_median: bool = True, days: Sequence[ComplianceDay] | None = None
    ) -> CommentStats:
        # The totals add up the per-day rows: an aggregate without GROUP BY is not something
        # Tortoise expresses (it groups by every column then).
        totals = {"negatives": 0, "due": 0, "on_time": 0, "commented": 0}
        rows = (
            [{key: getattr(day, key) for key in totals} for day in days]
            if days is not None else await self._compliance_rows(scope, period)
        )
        for row in rows:
            for key in totals:
                totals[key] += row[key]
        median = None
        if totals["commented"] and with_median:
            # SQLite has no median: sort by the stored seconds to comment and read the middle
            # one (or two) rows, instead of fetching every commented negative.
            commented = totals["commented"]
            middle = await (
                self._cases(scope, period)
                .filter(commented_at__isnull=False, comment_seconds__isnull=False)
                .order_by("comment_seconds")
                .offset((commented - 1) // 2)
                .limit(1 if commented % 2 else 2)
                .values_list("comment_seconds", flat=True)
            )
            median = statistics.mean(middle) / 60 if middle else None
        return CommentStats(median_minutes=median, **totals)
