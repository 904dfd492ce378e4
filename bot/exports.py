"""A period's ratings and comments as CSV and XLSX: one row per rating, in the office's local time.

Managers open these in Excel, so the CSV is UTF-8 with a BOM and ``;`` separators (what a
Russian-locale Excel expects) and the XLSX has real date-time cells. Rows are read and written
in pages, so a year of ratings never sits in memory as model objects. Each row names the
channel (desk button, exit kiosk, QR survey) and the reasons the customer picked. Complaint
contact details never appear here: they are not in these tables at all.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

from bot.models import NegativeCase, Rating, RatingReason

PAGE = 5000  # rows per query

COLUMNS = {
    "ru": ["Дата и время", "Офис", "Рабочее место", "Сотрудник", "Оценка", "Канал", "Причины", "Исключена", "Комментарий",
           "Время комментария", "Комментарий с опозданием"],
    "en": ["Local time", "Office", "Point", "Employee", "Rating", "Channel", "Reasons", "Excluded", "Comment",
           "Comment time", "Late comment"],
}
CHANNELS = {"ru": {"button": "кнопка", "kiosk": "киоск", "qr": "QR-опрос"}, "en": {"qr": "QR survey"}}
KINDS = {"ru": {"good": "хорошо", "neutral": "нейтрально", "bad": "плохо"}, "en": {}}
REASONS = {
    "ru": {"repeat": "повторное нажатие", "no_client": "клиента не было", "manual": "исключена вручную"},
    "en": {"repeat": "repeated press", "no_client": "no client present", "manual": "excluded by hand"},
}
YES = {"ru": "да", "en": "yes"}


class ExportScope(Protocol):
    office_ids: tuple[int, ...] | None
    point_id: int | None
    staff_id: int | None


@dataclass(frozen=True, slots=True)
class ExportRow:
    local_time: datetime  # naive, in the office's time zone
    office: str
    point: str
    staff: str
    kind: str
    channel: str
    reasons: str  # the customer's reasons, labels in the export's language, comma-separated
    excluded: str
    comment: str
    comment_time: datetime | None
    late: str


async def export_rows(scope: ExportScope, start: date, end: date, locale: str = "ru") -> AsyncIterator[ExportRow]:
    """Ratings of the scope on local days ``start``..``end`` (inclusive), oldest first."""
    query = Rating.filter(local_date__gte=start, local_date__lte=end)
    if scope.office_ids is not None:
        query = query.filter(office_id__in=list(scope.office_ids))
    if scope.point_id is not None:
        query = query.filter(point_id=scope.point_id)
    if scope.staff_id is not None:
        query = query.filter(staff_id=scope.staff_id)
    kinds, reasons = KINDS.get(locale, {}), REASONS.get(locale, REASONS["en"])
    channels = CHANNELS.get(locale, CHANNELS["en"])
    zones: dict[str, ZoneInfo] = {}
    after: Q | None = None  # keyset paging on (ts, id): no OFFSET that slows down page by page
    while True:
        page = await (query.filter(after) if after is not None else query).order_by("ts", "id").limit(PAGE).values(
            "id", "ts", "value", "excluded_reason", "channel", "office__code", "office__timezone", "point__name",
            "staff__name",
        )
        if not page:
            return
        last_ts, last_id = page[-1]["ts"], page[-1]["id"]
        after = Q(ts__gt=last_ts) | Q(ts=last_ts, id__gt=last_id)
        comments = {
            row["rating_id"]: row
            for row in await NegativeCase.filter(rating_id__in=[r["id"] for r in page if r["value"] == "bad"]).values(
                "rating_id", "comment_text", "comment_transcript", "comment_voice_file_id", "commented_at", "comment_late"
            )
        }
        chosen: dict[int, list[str]] = defaultdict(list)
        for link in await RatingReason.filter(rating_id__in=[r["id"] for r in page]).order_by("rating_id", "id").values(
            "rating_id", "reason__label", "reason__label_en"
        ):
            label = (link["reason__label_en"] or link["reason__label"]) if locale == "en" else link["reason__label"]
            chosen[link["rating_id"]].append(label)
        for r in page:
            tz = zones.setdefault(r["office__timezone"], ZoneInfo(r["office__timezone"]))
            case = comments.get(r["id"], {})
            text = case.get("comment_text") or case.get("comment_transcript") or ""
            if not text and case.get("comment_voice_file_id"):
                text = "(голосовое сообщение)" if locale == "ru" else "(voice message)"
            commented = case.get("commented_at")
            yield ExportRow(
                local_time=r["ts"].astimezone(tz).replace(tzinfo=None),
                office=r["office__code"],
                point=r["point__name"],
                staff=r["staff__name"] or "",
                kind=kinds.get(str(r["value"]), str(r["value"])),
                channel=channels.get(str(r["channel"]), str(r["channel"])),
                reasons=", ".join(chosen.get(r["id"], ())),
                excluded=reasons.get(str(r["excluded_reason"]), str(r["excluded_reason"])) if r["excluded_reason"] else "",
                comment=text,
                comment_time=commented.astimezone(tz).replace(tzinfo=None) if commented else None,
                late=YES.get(locale, "yes") if case.get("comment_late") else "",
            )


def _cells(row: ExportRow) -> list[object]:
    return [row.local_time, row.office, row.point, row.staff, row.kind, row.channel, row.reasons, row.excluded, row.comment,
            row.comment_time, row.late]


def to_csv(rows: Sequence[ExportRow], locale: str = "ru") -> bytes:
    """UTF-8 with BOM and ``;``: Excel with a Russian locale opens it without a wizard."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS.get(locale, COLUMNS["en"]))
    for row in rows:
        writer.writerow(
            [c.strftime("%Y-%m-%d %H:%M:%S") if isinstance(c, datetime) else ("" if c is None else c) for c in _cells(row)]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(rows: Sequence[ExportRow], title: str, locale: str = "ru") -> bytes:
    """A write-only workbook (constant memory per row), dates as real cells, the header frozen."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31] or "ratings")
    sheet.freeze_panes = "A2"
    for column, width in zip("ABCDEFGHIJK", (19, 10, 18, 22, 12, 10, 30, 20, 60, 19, 12), strict=True):
        sheet.column_dimensions[column].width = width
    bold = Font(bold=True)
    header = []
    for name in COLUMNS.get(locale, COLUMNS["en"]):
        cell = WriteOnlyCell(sheet, value=name)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for row in rows:
        cells = []
        for value in _cells(row):
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm"
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


__all__ = ["ExportRow", "export_rows", "to_csv", "to_xlsx"]
