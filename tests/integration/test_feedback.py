"""Kiosk feedback on a real database (SQLite and PostgreSQL): ratings with reasons, NPS answers
and complaints, each stored once, in the office's zone, with due dates in its working hours."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.directory import Directory, PointInfo
from bot.complaints import complaint_deadlines
from bot.models import Channel, Complaint, ComplaintStatus, DeadLetter, NpsAnswer, Rating, RatingReason, Staff
from bot.org import import_org, load_org_file
from bot.ratings import RatingService, Received
from bot.settings import load_settings
from bot.texts import Texts, make_i18n
from devices.contract import InboundMessage, PayloadError, RatingEvent
from devices.routing import TopicRouter

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
TUE_1200 = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)
TOPIC = "loyalty/v1/MSK-1/kiosk/kiosk-msk-1/feedback"


class Kiosk:
    """Parses kiosk payloads with the real router, as ingest does, and stores them."""

    def __init__(self, service: RatingService, router: TopicRouter, clock: FakeClock) -> None:
        self.service, self.router, self.clock = service, router, clock
        self.good: list[tuple[RatingEvent, PointInfo]] = []

    def received(self, payload: dict[str, object], topic: str = TOPIC) -> Received:
        message = InboundMessage(topic, json.dumps(payload).encode(), False, self.clock.now())
        try:
            return Received(message, self.router.parse(message))
        except PayloadError as exc:
            return Received(message, error=exc)

    async def send(self, *payloads: dict[str, object]):
        return await self.service.store_batch([self.received(p) for p in payloads])


def at(moment: datetime) -> str:
    return moment.isoformat()


@pytest.fixture
async def kiosk(database: str) -> Kiosk:
    await import_org(load_org_file(ORG))
    directory = await Directory.load()
    clock = FakeClock(TUE_1200)
    router = TopicRouter("loyalty/v1", directory.devices, directory.points.keys())
    holder: list[Kiosk] = []
    service = RatingService(
        load_settings(), clock, Texts(make_i18n()), lambda: directory, on_kiosk_good=lambda items: holder[0].good.extend(items)
    )
    holder.append(Kiosk(service, router, clock))
    return holder[0]


async def test_kiosk_rating_is_stored_with_its_reasons_text_and_chosen_employee(kiosk: Kiosk) -> None:
    result = await kiosk.send(
        {"id": "r1", "ts": at(TUE_1200), "kind": "rating", "value": "bad", "reasons": ["wait", "rude"],
         "text": "Ждали 20 минут", "staff": "ivanova"}
    )
    assert (result.ratings, result.negatives, result.dead_letters) == (1, 1, 0)
    rating = await Rating.get(event_uid="kiosk:MSK-1:kiosk-msk-1:r1").prefetch_related("point", "staff")
    assert (rating.channel, rating.customer_text, rating.point.code, rating.staff.code) == (
        Channel.KIOSK, "Ждали 20 минут", "EXIT", "ivanova"
    )
    codes = await RatingReason.filter(rating_id=rating.id).values_list("reason__code", flat=True)
    assert sorted(codes) == ["rude", "wait"]


async def test_unknown_reason_is_dead_lettered_and_the_rating_kept_with_the_rest(kiosk: Kiosk) -> None:
    result = await kiosk.send(
        {"id": "r2", "ts": at(TUE_1200), "kind": "rating", "value": "bad", "reasons": ["stock", "parking"]}
    )
    assert (result.ratings, result.dead_letters) == (1, 1)
    codes = await RatingReason.filter(rating__event_uid="kiosk:MSK-1:kiosk-msk-1:r2").values_list("reason__code", flat=True)
    assert list(codes) == ["stock"]
    letter = await DeadLetter.get(reason="unknown_reason")
    assert "'parking'" in letter.detail


async def test_nps_answer_is_stored_once_on_the_office_local_day(kiosk: Kiosk) -> None:
    late = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 01:30 on Wednesday in Moscow
    kiosk.clock.set(late + timedelta(seconds=1))
    answer = {"id": "n1", "ts": at(late), "kind": "nps", "value": 6, "text": "Дорого", "staff": "ivanova"}
    first = await kiosk.send(answer)
    again = await kiosk.send(answer)
    assert (first.nps, again.nps, again.duplicates) == (1, 0, 1)
    row = await NpsAnswer.get(event_uid="kiosk:MSK-1:kiosk-msk-1:n1").prefetch_related("point", "office")
    assert (row.score, row.reason_text, row.point.code, row.office.code, row.channel) == (6, "Дорого", "EXIT", "MSK-1", Channel.KIOSK)
    assert row.local_date.isoformat() == "2026-11-25"
    assert row.staff_id == (await Staff.get(code="ivanova")).id


async def test_complaint_with_consent_keeps_contact_until_it_expires_and_waits_to_be_posted(kiosk: Kiosk) -> None:
    result = await kiosk.send(
        {"id": "c1", "ts": at(TUE_1200), "kind": "complaint", "text": "Потеряли заказ", "name": "Иван",
         "contact": "+79990001122", "consent": True}
    )
    assert result.complaints == 1
    row = await Complaint.get(event_uid="kiosk:MSK-1:kiosk-msk-1:c1")
    assert (row.text, row.customer_name, row.contact, row.consent) == ("Потеряли заказ", "Иван", "+79990001122", True)
    assert row.contact_expires_at == TUE_1200 + timedelta(days=365)
    assert (row.status, row.chat_id, row.message_id) == (ComplaintStatus.OPEN, None, None)
    # two open days: Tuesday 12:00 → Thursday 12:00; half the working time → Wednesday 12:00
    assert row.due_at == datetime(2026, 11, 26, 12, 0, tzinfo=MSK)
    assert row.remind_at == datetime(2026, 11, 25, 12, 0, tzinfo=MSK)


async def test_complaint_without_consent_keeps_no_contact_details(kiosk: Kiosk) -> None:
    await kiosk.send(
        {"id": "c2", "ts": at(TUE_1200), "kind": "complaint", "text": "Грубый охранник", "name": "Иван",
         "contact": "ivan@example.com", "consent": False}
    )
    row = await Complaint.get(event_uid="kiosk:MSK-1:kiosk-msk-1:c2")
    assert (row.customer_name, row.contact, row.consent, row.contact_expires_at) == (None, None, False, None)
    raw = await Complaint.filter(id=row.id).values()
    assert "ivan@example.com" not in repr(raw)


async def test_bad_kiosk_payloads_become_dead_letters_and_good_ones_in_the_batch_are_stored(kiosk: Kiosk) -> None:
    result = await kiosk.send(
        {"id": "b1", "ts": at(TUE_1200), "kind": "nps", "value": 11},
        {"id": "b2", "ts": at(TUE_1200), "kind": "complaint", "text": "x", "consent": True},
        {"id": "g1", "ts": at(TUE_1200), "kind": "nps", "value": 10},
        {"id": "g2", "ts": at(TUE_1200), "kind": "rating", "value": "good"},
    )
    assert (result.nps, result.ratings, result.dead_letters) == (1, 1, 2)
    assert sorted(await DeadLetter.all().values_list("reason", flat=True)) == ["bad_value", "complaint_no_contact"]


async def test_good_kiosk_rating_is_handed_to_the_display_once(kiosk: Kiosk) -> None:
    good = {"id": "d1", "ts": at(TUE_1200), "kind": "rating", "value": "good"}
    await kiosk.send(good, {"id": "d2", "ts": at(TUE_1200), "kind": "rating", "value": "neutral"})
    await kiosk.send(good)  # a redelivery shows nothing again
    assert [(e.event_uid, p.office.review_url) for e, p in kiosk.good] == [
        ("kiosk:MSK-1:kiosk-msk-1:d1", "https://yandex.ru/maps/org/1234567890/reviews/")
    ]


async def test_complaint_deadline_skips_the_weekend(kiosk: Kiosk) -> None:
    directory = await Directory.load()
    office = directory.offices_by_code["MSK-1"]
    friday_1900 = datetime(2026, 11, 27, 19, 0, tzinfo=MSK)
    remind, due = complaint_deadlines(office.hours, friday_1900, office.complaint_due_days)
    # MSK-1 opens Saturday 10–18 and is closed on Sunday: two open days after Friday are
    # Saturday and Monday, so Monday 19:00. Working time in between: Fri 1 h + Sat 8 h + Mon 10 h
    # = 19 h; half of it (9.5 h) runs out at Monday 09:30
    assert due == datetime(2026, 11, 30, 19, 0, tzinfo=MSK)
    assert remind == datetime(2026, 11, 30, 9, 30, tzinfo=MSK)
