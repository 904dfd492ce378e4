"""Export of a period's ratings: the rows, the local time, the comment, and both file formats."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from openpyxl import load_workbook

from bot.exports import export_rows, to_csv, to_xlsx
from bot.models import (
    Channel, Complaint, ExclusionReason, NegativeCase, Office, Point, Rating, RatingReason, RatingValue, Reason, Staff,
)


@dataclass
class Scope:
    office_ids: tuple[int, ...] | None = None
    point_id: int | None = None
    staff_id: int | None = None


async def seed() -> tuple[Office, Office]:
    msk = await Office.create(code="MSK-1", name="Москва", timezone="Europe/Moscow")
    ekb = await Office.create(code="EKB-1", name="Екатеринбург", timezone="Asia/Yekaterinburg")
    w1 = await Point.create(office=msk, code="W1", name="Окно 1")
    e1 = await Point.create(office=ekb, code="W1", name="Окно Е1")
    anna = await Staff.create(code="anna", name="Анна Иванова", office=msk)

    async def rating(uid: str, office: Office, point: Point, value: RatingValue, ts: datetime, **extra: object) -> Rating:
        local = ts.astimezone(__import__("zoneinfo").ZoneInfo(office.timezone))
        return await Rating.create(
            event_uid=uid, device_id="btn", office=office, point=point, value=value, ts=ts, received_at=ts,
            local_date=local.date(), local_hour=local.hour, **extra,
        )

    # 21:30 UTC on 1 Nov is 00:30 on 2 Nov in Moscow: it belongs to the 2nd
    late_night = await rating("r1", msk, w1, RatingValue.BAD, datetime(2026, 11, 1, 21, 30, tzinfo=UTC), staff=anna)
    await NegativeCase.create(
        rating=late_night, office=msk, comment_text="Очередь; клиент ждал", commented_at=late_night.ts + timedelta(minutes=50),
        comment_late=True,
    )
    await rating("r2", msk, w1, RatingValue.GOOD, datetime(2026, 11, 2, 8, 0, tzinfo=UTC), staff=anna,
                 excluded_reason=ExclusionReason.REPEAT)
    await rating("r3", ekb, e1, RatingValue.NEUTRAL, datetime(2026, 11, 2, 5, 0, tzinfo=UTC))
    await rating("r4", msk, w1, RatingValue.GOOD, datetime(2026, 11, 1, 20, 0, tzinfo=UTC))  # 23:00 on the 1st
    return msk, ekb


async def test_rows_are_the_periods_ratings_in_local_time_with_their_comments(database: str) -> None:
    msk, _ = await seed()
    rows = [r async for r in export_rows(Scope(), date(2026, 11, 2), date(2026, 11, 2))]
    assert [(r.local_time, r.office, r.kind, r.excluded) for r in rows] == [
        (datetime(2026, 11, 2, 0, 30), "MSK-1", "плохо", ""),
        (datetime(2026, 11, 2, 10, 0), "EKB-1", "нейтрально", ""),  # 05:00 UTC, before the 08:00 UTC one
        (datetime(2026, 11, 2, 11, 0), "MSK-1", "хорошо", "повторное нажатие"),
    ]
    assert (rows[0].staff, rows[0].comment, rows[0].comment_time, rows[0].late) == (
        "Анна Иванова", "Очередь; клиент ждал", datetime(2026, 11, 2, 1, 20), "да",
    )
    only_msk = [r.office async for r in export_rows(Scope(office_ids=(msk.id,)), date(2026, 11, 1), date(2026, 11, 2))]
    assert only_msk == ["MSK-1", "MSK-1", "MSK-1"]


async def test_csv_and_xlsx_carry_the_same_rows(database: str) -> None:
    await seed()
    rows = [r async for r in export_rows(Scope(), date(2026, 11, 1), date(2026, 11, 2))]
    data = to_csv(rows)
    assert data.startswith("\ufeff".encode())
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert parsed[0][:7] == ["Дата и время", "Офис", "Рабочее место", "Сотрудник", "Оценка", "Канал", "Причины"]
    assert parsed[1][0] == "2026-11-01 23:00:00"  # oldest first
    assert parsed[2] == ["2026-11-02 00:30:00", "MSK-1", "Окно 1", "Анна Иванова", "плохо", "кнопка", "", "",
                         "Очередь; клиент ждал", "2026-11-02 01:20:00", "да"]
    assert len(parsed) == 1 + 4
    book = load_workbook(io.BytesIO(to_xlsx(rows, "MSK 1-2 Nov")))
    sheet = book.active
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert len(values) == 5 and values[0][0] == "Дата и время"
    assert values[2][0] == datetime(2026, 11, 2, 0, 30) and values[2][8] == "Очередь; клиент ждал"


async def test_pages_join_without_losing_or_repeating_a_row(database: str, monkeypatch) -> None:
    import bot.exports

    await seed()
    everything = [r.local_time async for r in export_rows(Scope(), date(2026, 11, 1), date(2026, 11, 2))]
    monkeypatch.setattr(bot.exports, "PAGE", 1)
    paged = [r.local_time async for r in export_rows(Scope(), date(2026, 11, 1), date(2026, 11, 2))]
    assert paged == everything and len(paged) == 4


async def test_rows_name_the_channel_and_the_customers_reasons_never_a_complaint_contact(database: str) -> None:
    msk = await Office.create(code="MSK-1", name="Москва", timezone="Europe/Moscow")
    w1 = await Point.create(office=msk, code="W1", name="Окно 1")
    price = await Reason.create(code="price", label="Цены", label_en="Prices", staff_related=False)
    queue = await Reason.create(code="queue", label="Очередь", staff_related=False)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    kiosk = await Rating.create(event_uid="k1", device_id="kiosk-1", office=msk, point=w1, value=RatingValue.BAD, ts=at,
                                received_at=at, local_date=date(2026, 11, 2), local_hour=12, channel=Channel.KIOSK)
    await RatingReason.create(rating=kiosk, reason=price)
    await RatingReason.create(rating=kiosk, reason=queue)
    await Rating.create(event_uid="q1", device_id="qr", office=msk, point=w1, value=RatingValue.GOOD,
                        ts=at + timedelta(minutes=1), received_at=at, local_date=date(2026, 11, 2), local_hour=12,
                        channel=Channel.QR)
    await Complaint.create(event_uid="c1", office=msk, point=w1, text="Нагрубили", customer_name="Пётр Сидоров",
                           contact="+79990001122", consent=True, ts=at, local_date=date(2026, 11, 2), received_at=at)
    rows = [r async for r in export_rows(Scope(), date(2026, 11, 2), date(2026, 11, 2))]
    assert [(r.channel, r.reasons) for r in rows] == [("киоск", "Цены, Очередь"), ("QR-опрос", "")]
    english = [r async for r in export_rows(Scope(), date(2026, 11, 2), date(2026, 11, 2), "en")]
    assert [(r.channel, r.reasons) for r in english] == [("kiosk", "Prices, Очередь"), ("QR survey", "")]
    cells = [str(v) for r in load_workbook(io.BytesIO(to_xlsx(rows, "t"))).active.iter_rows(values_only=True) for v in r]
    for text in (to_csv(rows).decode("utf-8-sig"), " ".join(cells)):
        assert "Цены, Очередь" in text and "79990001122" not in text and "Сидоров" not in text
    text = to_csv(rows).decode("utf-8-sig")
    assert "киоск;Цены, Очередь;" in text
