"""Reports for managers: who may see what, the KPI summary as text, the chart album, exports.

A scope travels in callback data as a short key — ``c`` (company), ``o12`` (office), ``p7``
(point), ``s31`` (employee) — and is re-checked against the user's role on every use, so a
forged button shows nothing it should not. Managers see their office; admins and the quality
service see the company; front staff see only their own figures (``/me``).
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from html import escape
from typing import TypeVar
from zoneinfo import ZoneInfo

from charts import kpi as charts
from charts.style import LABELS_EN, LABELS_RU, format_period

from bot.clock import Clock
from bot.errors import AccessDenied, NotFound
from bot.exports import export_rows, to_csv, to_xlsx
from bot.kpi import ComplianceDay, KpiService, KpiSummary, NegativeSplit, Period, Scope, local_today, parse_period
from bot import checklists
from bot.checklists import Checklist
from bot.models import ExclusionReason, Office, Point, Role, Score, ScoreStatus, Staff
from bot.scoring import META
from bot.speech_service import split_message
from bot.texts import Texts, _

T = TypeVar("T")
DEFAULT_ZONE = ZoneInfo("Europe/Moscow")
WIDE_ROLES = (Role.ADMIN, Role.QUALITY)
MY_SCORES = 5  # the latest scores /me shows
COMPANY = _("Company")  # a msgid: translated where it is shown


@dataclass(frozen=True, slots=True)
class ScopeChoice:
    key: str
    label: str


@dataclass(slots=True)
class Report:
    text: str
    charts: list[bytes]
    query_seconds: float = 0.0  # until the last query returned
    render_seconds: float = 0.0  # rendering left after that (charts start as soon as their data is in)
    summary: KpiSummary | None = field(default=None, repr=False)


class ReportService:
    def __init__(self, clock: Clock, texts: Texts, kpi: KpiService) -> None:
        self._clock = clock
        self._texts = texts
        self._kpi = kpi
        # Charts are drawn on threads: for a wide scope each one as soon as its data is in,
        # while the next queries run (the database, another process or SQLite's thread with
        # the GIL released, works meanwhile); for a small scope after the queries, two at once.
        self._charts = ThreadPoolExecutor(max_workers=2, thread_name_prefix="charts")

    # --- who may see what -------------------------------------------------------------------

    def today(self, staff: Staff) -> date:
        office = staff.office if isinstance(staff.office, Office) else None
        return local_today(self._clock.now(), ZoneInfo(office.timezone) if office else DEFAULT_ZONE)

    def period(self, staff: Staff, text: str) -> Period:
        return parse_period(text, self.today(staff))

    async def choices(self, staff: Staff) -> list[ScopeChoice]:
        """The scopes offered as buttons: company and every office for wide roles, else one's own."""
        if staff.role in WIDE_ROLES:
            offices = await Office.all().order_by("code")
            return [ScopeChoice("c", COMPANY)] + [ScopeChoice(f"o{o.id}", o.code) for o in offices]
        if staff.role == Role.MANAGER and staff.office_id is not None:  # type: ignore[attr-defined]
            office = await Office.get(id=staff.office_id)  # type: ignore[attr-defined]
            points = await Point.filter(office_id=office.id).order_by("code")
            people = await Staff.filter(office_id=office.id, role=Role.STAFF, active=True).order_by("name")
            return (
                [ScopeChoice(f"o{office.id}", office.code)]
                + [ScopeChoice(f"p{p.id}", f"{office.code}/{p.code}") for p in points]
                + [ScopeChoice(f"s{s.id}", s.name) for s in people]
            )
        return [ScopeChoice(f"s{staff.id}", staff.name)]

    def default_key(self, staff: Staff) -> str:
        if staff.role in WIDE_ROLES:
            return "c"
        if staff.role == Role.MANAGER and staff.office_id is not None:  # type: ignore[attr-defined]
            return f"o{staff.office_id}"  # type: ignore[attr-defined]
        return f"s{staff.id}"

    async def key_from_words(self, staff: Staff, kind: str, code: str) -> str:
        """``office MSK-1``, ``point MSK-1/W2``, ``staff ivanova`` typed after /report."""
        kind = kind.lower()
        if kind in ("office", "офис"):
            office = await Office.get_or_none(code=code)
            if office is None:
                raise NotFound(_("No office with code {code}."), code=code)
            return f"o{office.id}"
        if kind in ("point", "точка"):
            office_code, _sep, point_code = code.partition("/")
            point = await Point.get_or_none(office__code=office_code, code=point_code)
            if point is None:
                raise NotFound(_("No point {code}; write it as OFFICE/POINT."), code=code)
            return f"p{point.id}"
        if kind in ("staff", "employee", "сотрудник"):
            person = await Staff.get_or_none(code=code)
            if person is None:
                raise NotFound(_("No staff member with code {code} in your offices."), code=code)
            return f"s{person.id}"
        if kind in ("company", "компания"):
            return "c"
        raise NotFound(_("Unknown scope {kind}: use company, office, point or staff."), kind=kind)

    async def resolve(self, staff: Staff, key: str) -> Scope:
        """The scope behind a key, if this user may see it; raises ``AccessDenied`` otherwise."""
        kind, raw = key[:1], key[1:]
        ident = int(raw) if raw.isdigit() else None
        wide = staff.role in WIDE_ROLES
        own_office = staff.office_id  # type: ignore[attr-defined]
        if kind == "c" and wide:
            return Scope.company(label=COMPANY)
        if kind == "o" and ident is not None:
            office = await Office.get_or_none(id=ident)
            if office and (wide or (staff.role == Role.MANAGER and office.id == own_office)):
                return Scope.offices(office.id, label=office.code)
        if kind == "p" and ident is not None:
            point = await Point.get_or_none(id=ident).select_related("office")
            if point and (wide or (staff.role == Role.MANAGER and point.office.id == own_office)):
                return Scope.point(point.id, label=f"{point.office.code}/{point.code}")
        if kind == "s" and ident is not None:
            person = await Staff.get_or_none(id=ident)
            if person and (
                wide or person.id == staff.id or (staff.role == Role.MANAGER and person.office_id == own_office)  # type: ignore[attr-defined]
            ):
                return Scope.staff(person.id, label=person.name)
        raise AccessDenied(_("You cannot see the figures of that scope."))

    # --- the report ---------------------------------------------------------------------------

    async def build(self, staff: Staff, key: str, period: Period, locale: str, with_ranking: bool = True) -> Report:
        scope = await self.resolve(staff, key)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        labels = LABELS_EN if locale == "en" else LABELS_RU
        t = self._texts.t
        where = f"{self.scope_label(scope, locale)} · {format_period(period.start, period.end)}"
        album: dict[str, asyncio.Future[bytes]] = {}
        # An employee's or a point's queries are a few milliseconds each: a chart drawn
        # meanwhile (tens of ms, mostly holding the GIL) would only hold them up.
        later: list[tuple[str, Callable[..., bytes], object, str]] | None = (
            [] if scope.staff_id is not None or scope.point_id is not None else None
        )

        def submit(name: str, render: Callable[..., bytes], data: object, title: str) -> None:
            album[name] = loop.run_in_executor(self._charts, render, data, title, labels)

        def draw(name: str, render: Callable[..., bytes], data: object, title: str) -> None:
            if later is None:
                submit(name, render, data, title)
            else:
                later.append((name, render, data, title))

        async def charted(name: str, query: Awaitable[T], render: Callable[..., bytes], data: Callable[[T], object], title: str) -> T:
            rows = await query
            draw(name, render, data(rows), title)
            return rows

        # The queries do not depend on each other, except that the summary adds up compliance by
        # day: ``together`` runs them at once where the database can (PostgreSQL), else in this
        # order, and each chart is handed to ``draw`` as soon as its data is in.
        staff_scope = scope.staff_id is not None
        previous = period.previous()
        compliance: asyncio.Future[list[ComplianceDay]] = loop.create_future()

        async def compliance_charted() -> None:
            # compliance by day for both periods in one statement: the chart and the comparison
            days = await charted(
                "compliance", self._kpi.compliance_daily(scope, Period(previous.start, period.end)),
                charts.render_comment_compliance,
                lambda days: [charts.ComplianceDay(c.day, c.due, c.on_time) for c in days if c.day in period],
                t(locale, "Comment compliance") + f": {where}")
            compliance.set_result(days)

        async def summarised() -> tuple[KpiSummary, NegativeSplit | None]:
            days = await compliance
            summary = await self._kpi.summary(
                scope, period, compare=True, comment_days=[d for d in days if d.day in period],
                previous_comment_days=[d for d in days if d.day in previous],
            )
            # an employee's negatives split by whose control their reasons were in
            split = await self._kpi.negatives_by_control(scope, period, locale, summary) if staff_scope else None
            return summary, split

        queries: list[Awaitable[object]] = [
            compliance_charted(),
            charted("daily", self._kpi.daily(scope, period), charts.render_daily_ratings,
                    lambda days: [charts.DailyCounts(d.day, d.good, d.neutral, d.bad) for d in days],
                    t(locale, "Ratings by day") + f": {where}"),
            charted("heatmap", self._kpi.negatives_by_weekday_hour(scope, period), charts.render_negatives_heatmap,
                    lambda matrix: matrix, t(locale, "When negatives happen") + f": {where}"),
            charted("reasons", self._kpi.reasons(scope, period, locale), charts.render_reasons_pareto,
                    lambda reasons: [charts.ReasonCount(r.label, r.count, outside=not r.staff_related) for r in reasons],
                    t(locale, "Reasons for dissatisfaction") + f": {where}"),
        ]
        if with_ranking and not staff_scope:  # drawn even when empty: its empty state says nobody was identified
            queries.append(charted(
                "ranking", self._kpi.staff_ranking(scope, period), charts.render_staff_ranking,
                lambda ranking: [charts.StaffRow(r.name, r.good, r.neutral, r.bad) for r in ranking],
                t(locale, "Employees by like-index") + f": {where}"))
        if not staff_scope:  # offices, points, the company; empty state: nothing scored
            # compliance is monthly: the title names the months the period touches
            queries.append(charted(
                "sales", self._kpi.sales_compliance(scope, period), charts.render_sales_compliance,
                lambda sales: [charts.ComplianceRow(k.name, min(100.0, max(0.0, k.percent)), k.scored) for k in sales],
                t(locale, "Employees by sales-standard compliance") + f": {self.scope_label(scope, locale)} · {_months(period.start, period.end)}"))
        *_, (summary, split) = await self._kpi.together(*queries, summarised())
        queried = time.perf_counter()
        for chart in later or ():
            submit(*chart)
        order = ("daily", "ranking", "heatmap", "compliance", "reasons", "sales")
        pngs = list(await asyncio.gather(*(album[name] for name in order if name in album)))
        rendered = time.perf_counter()
        text = self.summary_text(summary, locale, split=split)
        return Report(text, pngs, queried - started, rendered - queried, summary)

    def scope_label(self, scope: Scope, locale: str) -> str:
        return self._texts.t(locale, COMPANY) if scope.label == COMPANY else scope.label

    def summary_text(self, s: KpiSummary, locale: str, split: NegativeSplit | None = None) -> str:
        """The compact text managers read first; ratios without data say so instead of 0.
        ``split``: an employee's negatives by the control over their reasons (``/me``, ``/report staff``)."""
        t = self._texts.t
        no_data = t(locale, "no data")

        def pct(value: float | None) -> str:
            return f"{value * 100:.0f} %" if value is not None else no_data

        def num(value: float | None, digits: int = 0) -> str:
            return f"{value:+.{digits}f}" if value is not None else no_data

        def delta(metric: str, scale: float = 1.0, unit: str = "") -> str:
            change = s.change(metric)
            if change is None:
                return ""
            return f" ({change * scale:+.0f}{unit})"

        period = format_period(s.period.start, s.period.end)
        lines = [f"📊 <b>{escape(self.scope_label(s.scope, locale))}</b> · {period}", ""]
        total = s.good + s.neutral + s.bad
        lines.append(
            t(locale, "Ratings: {total} — 👍 {good} · 😐 {neutral} · 👎 {bad}", total=total, good=s.good, neutral=s.neutral, bad=s.bad)
            + delta("total")
        )
        lines.append(t(locale, "Satisfaction") + f": {pct(s.satisfaction)}" + delta("satisfaction", 100, " pp"))
        lines.append(t(locale, "Like-index") + f": {num(s.like_index)}" + delta("like_index"))
        lines.append(t(locale, "Happy index") + f": {num(s.happy_index).lstrip('+') if s.happy_index is not None else no_data}" + delta("happy_index"))
        if split is not None and split.negatives:
            lines.extend(self.control_lines(split, locale))
        lines.append(self.nps_line(s, locale) + delta("nps_score"))
        served = s.served
        if served.clients is not None:
            source = {"presence": t(locale, "queue and presence events"), "manual": t(locale, "entered by hand"),
                      "mixed": t(locale, "events and entered by hand")}.get(served.source or "", "")
            lines.append(t(locale, "Clients served: {count} ({source})", count=served.clients, source=source))
            lines.append(t(locale, "Response rate") + f": {pct(s.response_rate)}")
            lines.append(
                t(locale, "Customer support index") + f": {s.support_index:.1f}" if s.support_index is not None else no_data
            )
            lines.append(
                t(locale, "Customer criticality index") + f": {s.criticality_index:.1f}" if s.criticality_index is not None else no_data
            )
        else:
            lines.append(t(locale, "Clients served: no data (/served OFFICE DATE N enters them)"))
        c = s.comments
        lines.append(
            t(locale, "Comment compliance") + f": {pct(c.compliance)}"
            + (f" ({c.on_time}/{c.due})" if c.due else "") + delta("comment_compliance", 100, " pp")
        )
        if c.median_minutes is not None:
            lines.append(t(locale, "Median time to comment: {minutes} min", minutes=round(c.median_minutes)))
        if c.overdue_open:
            lines.append("⏰ " + t(locale, "Not commented after the deadline: {count}", count=c.overdue_open))
        lines.append(self.sales_line(s, locale))
        if s.excluded_total:
            reasons = {ExclusionReason.REPEAT: t(locale, "repeated press"), ExclusionReason.NO_CLIENT: t(locale, "no client"),
                       ExclusionReason.MANUAL: t(locale, "by hand")}
            parts = ", ".join(f"{reasons.get(r, str(r))} {n}" for r, n in sorted(s.excluded.items()))
            lines.append(t(locale, "Excluded from KPIs: {count} ({reasons})", count=s.excluded_total, reasons=parts))
        if s.previous is not None:
            lines.append("")
            lines.append("<i>" + t(locale, "In brackets: change against {period}", period=format_period(s.previous.period.start, s.previous.period.end)) + "</i>")
        return "\n".join(lines)

    def nps_line(self, s: KpiSummary, locale: str) -> str:
        """«NPS: +42 (промоутеры 58 %, нейтралы 26 %, критики 16 %; ответов: 312)», or no data."""
        t = self._texts.t
        nps = s.nps
        if nps.score is None:
            return t(locale, "NPS: no data")
        return t(
            locale, "NPS: {score} (promoters {promoters}, passives {passives}, detractors {detractors}; {count} answers)",
            score=_signed(nps.score), promoters=_pct(nps.promoter_share), passives=_pct(nps.passive_share),
            detractors=_pct(nps.detractor_share), count=nps.count,
        )

    def control_lines(self, split: NegativeSplit, locale: str) -> list[str]:
        """An employee's negatives by whose control their reasons were in, and the like-index
        without those whose reasons were all outside it (``NegativeSplit``)."""
        t = self._texts.t
        parts = []
        if split.outside_only:
            names = ", ".join(_lower_first(label) for label in split.outside_labels[:3])
            parts.append(t(locale, "{count} of them for reasons outside the employee's control ({reasons})",
                           count=split.outside_only, reasons=escape(names)))
        if split.staff_related:
            parts.append(t(locale, "{count} for reasons within the employee's control", count=split.staff_related))
        if split.no_reason:
            parts.append(t(locale, "{count} with no reason given", count=split.no_reason))
        lines = [t(locale, "Negatives: {count}", count=split.negatives) + (", " + "; ".join(parts) if parts else "")]
        if split.outside_only and split.adjusted_like_index is not None:
            lines.append(t(locale, "Like-index without negatives for reasons outside the employee's control: {index}",
                           index=_signed(split.adjusted_like_index)))
        return lines

    def sales_line(self, s: KpiSummary, locale: str) -> str:
        """«Sales-standard compliance: 78 % (12 scored)»; a monthly figure, so a period that is
        not whole months names the months it covers (``KpiService.summary_sales_compliance``)."""
        t = self._texts.t
        if s.sales_compliance is not None and s.sales_scored:
            line = t(locale, "Sales-standard compliance: {percent} ({scored} scored)",
                     percent=f"{s.sales_compliance:.0f} %", scored=s.sales_scored)
        else:
            line = t(locale, "Sales-standard compliance: no scored conversations")
        if not _whole_months(s.period.start, s.period.end):
            line += f" · {_months(s.period.start, s.period.end)}"
        return line

    async def my_scores(self, staff: Staff, locale: str, limit: int = MY_SCORES) -> list[str]:
        """The employee's latest submitted scores, newest first, with the criteria not met and
        the specialists' comments (HTML messages within Telegram's limit; none: no messages).

        Calibration scores are not theirs to see, and an office that turned the quality
        feedback off (``Office.quality_feedback``) keeps its scores from its employees here too.
        """
        scores = (
            await Score.filter(
                staff_id=staff.id, status=ScoreStatus.SUBMITTED, calibration_id__isnull=True, office__quality_feedback=True
            )
            .order_by("-submitted_at", "-id")
            .limit(limit)
            .select_related("conversation", "office")
        )
        if not scores:
            return []
        t = self._texts.t
        templates: dict[int, Checklist] = {}
        lines: list[str] = []
        for score in scores:
            template_id: int = score.template_id  # type: ignore[attr-defined]
            if template_id not in templates:
                templates[template_id] = await checklists.by_template_id(template_id)
            checklist = templates[template_id]
            when = self._texts.local(score.conversation.started_at, _zone(score.office.timezone))
            result = f"{score.result:.0f} %" if score.result is not None else "—"
            lines.append("")
            lines.append(t(locale, "Conversation of {when}", when=when) + f": <b>{result}</b> · {escape(checklist.name)}")
            if score.critical_failed:
                lines.append("❗ " + t(locale, "A critical criterion was not met: the score is 0 %."))
            answers = score.answers or {}
            for criterion in checklist.criteria:
                entry = answers.get(criterion.id) or {}
                note = _comment(entry, t(locale, "(voice message)"))
                if entry.get("value") == "no":
                    lines.append(f"❌ {escape(criterion.text)}{' ❗' if criterion.critical else ''}" + (f" — 💬 {note}" if note else ""))
                elif note:
                    lines.append(f"💬 {escape(criterion.text)}: {note}")
            form_note = escape(score.comment) if score.comment else (
                t(locale, "(voice message)") if (answers.get(META) or {}).get("voice") else "")
            if form_note:
                lines.append(f"💬 {t(locale, 'Comment')}: {form_note}")
        return split_message("📋 <b>" + t(locale, "Your latest scores") + "</b>", lines)

    # --- exports and hand-entered figures -------------------------------------------------------

    async def export(self, staff: Staff, key: str, period: Period, fmt: str, locale: str) -> tuple[str, bytes]:
        scope = await self.resolve(staff, key)
        rows = [row async for row in export_rows(scope, period.start, period.end, locale)]
        name = f"ratings_{_slug(scope.label)}_{period.start:%Y%m%d}-{period.end:%Y%m%d}"
        loop = asyncio.get_running_loop()
        if fmt == "xlsx":
            data = await loop.run_in_executor(None, to_xlsx, rows, f"{scope.label} {period.start:%d.%m}-{period.end:%d.%m}", locale)
            return f"{name}.xlsx", data
        return f"{name}.csv", await loop.run_in_executor(None, to_csv, rows, locale)

    async def record_served(self, staff: Staff, office_code: str, day_text: str, clients_text: str) -> tuple[Office, date, int]:
        office = await Office.get_or_none(code=office_code)
        if office is None:
            raise NotFound(_("No office with code {code}."), code=office_code)
        if not (staff.role in WIDE_ROLES or (staff.role == Role.MANAGER and staff.office_id == office.id)):  # type: ignore[attr-defined]
            raise AccessDenied(_("Only the office's manager or an admin can enter clients served."))
        try:
            day = date.fromisoformat(day_text)
            clients = int(clients_text)
        except ValueError:
            raise NotFound(_("Write it as /served OFFICE YYYY-MM-DD N, e.g. /served MSK-1 2026-11-20 140.")) from None
        await self._kpi.record_served(office.id, day, clients, staff.id, self._clock.now())
        return office, day, clients


def _signed(value: float) -> str:
    """«+42», «-7», and «0» rather than «+0» or «-0»: NPS and like-index as the summary writes them."""
    text = f"{value:+.0f}"
    return "0" if text in ("+0", "-0") else text


def _pct(share: float | None) -> str:
    return f"{(share or 0.0) * 100:.0f} %"


def _lower_first(label: str) -> str:
    """«Цены» → «цены» inside a sentence; «QR-код» stays as it is."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


def _whole_months(start: date, end: date) -> bool:
    return start.day == 1 and end.day == calendar.monthrange(end.year, end.month)[1]


def _months(start: date, end: date) -> str:
    """«11.2026», or «10.2026–11.2026» for a period across months."""
    first, last = f"{start:%m.%Y}", f"{end:%m.%Y}"
    return first if first == last else f"{first}–{last}"


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else DEFAULT_ZONE
    except (KeyError, ValueError):
        return DEFAULT_ZONE


def _comment(entry: dict, voice: str) -> str:
    if entry.get("comment"):
        return escape(str(entry["comment"]))
    return voice if entry.get("voice") else ""


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:40] or "report"


__all__ = ["Report", "ReportService", "ScopeChoice"]
