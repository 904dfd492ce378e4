"""The domain rules on a real database (SQLite and PostgreSQL): what a batch of events becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.comments import CommentService
from bot.directory import Directory
from bot.models import AnomalyAlert, DeadLetter, ExclusionReason, NegativeCase, OutboxKind, OutboxMessage, Rating, Staff
from bot.org import import_org, load_org_file
from bot.ratings import RatingService, Received
from bot.settings import load_settings
from bot.texts import Texts, make_i18n
from devices.contract import InboundMessage, PayloadError, PresenceEvent, RatingEvent

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
TUE_1200 = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)


def rating(uid: str, value: str, at: datetime, point: str = "W1", device: str = "btn-17") -> Received:
    message = InboundMessage(f"loyalty/v1/MSK-1/{point}/rating", b"{}", False, at)
    return Received(message, [RatingEvent(f"native:MSK-1:{device}:{uid}", "MSK-1", point, device, value, at)])


def presence(uid: str, state: str, at: datetime, point: str = "W1", staff: str | None = None) -> Received:
    message = InboundMessage(f"loyalty/v1/MSK-1/{point}/presence", b"{}", False, at)
    return Received(message, [PresenceEvent(f"native:MSK-1:{point}:{uid}", "MSK-1", point, state, at, None, staff)])


@pytest.fixture
async def service(database: str) -> RatingService:
    await import_org(load_org_file(ORG))
    directory = await Directory.load()
    clock = FakeClock(TUE_1200)
    service = RatingService(load_settings(), clock, Texts(make_i18n()), lambda: directory)
    service.clock = clock  # type: ignore[attr-defined]
    return service


async def test_duplicates_store_nothing_twice(service: RatingService) -> None:
    batch = [rating("1", "good", TUE_1200), rating("1", "good", TUE_1200), rating("2", "bad", TUE_1200 + timedelta(seconds=30))]
    first = await service.store_batch(batch)
    again = await service.store_batch(batch)
    assert (first.ratings, again.ratings, again.duplicates) == (2, 0, 2)
    assert await Rating.all().count() == 2
    assert await NegativeCase.all().count() == 1
    assert await OutboxMessage.filter(kind=OutboxKind.CASE_POST).count() == 1


async def test_repeat_presses_inside_the_window_are_excluded(service: RatingService) -> None:
    await service.store_batch([rating("1", "bad", TUE_1200)])
    await service.store_batch([rating("2", "bad", TUE_1200 + timedelta(seconds=4)), rating("3", "good", TUE_1200 + timedelta(seconds=30))])
    reasons = dict(await Rating.all().values_list("event_uid", "excluded_reason"))
    assert reasons == {
        "native:MSK-1:btn-17:1": None,
        "native:MSK-1:btn-17:2": ExclusionReason.REPEAT,
        "native:MSK-1:btn-17:3": None,
    }


async def test_kiosk_and_qr_ratings_after_the_client_left_the_desk_still_count(service: RatingService) -> None:
    """The desk's presence data says when a client stood at the desk; a customer rating at the
    exit kiosk or on their phone does so after leaving it, by design."""
    left = TUE_1200 - timedelta(minutes=5)
    message = InboundMessage("loyalty/v1/MSK-1/W1/rating", b"{}", False, TUE_1200)
    await service.store_batch([
        presence("a", "start", TUE_1200 - timedelta(minutes=10), staff="ivanova"),
        presence("b", "end", left),
        rating("desk", "good", TUE_1200),
        Received(message, [RatingEvent("qr:MSK-1:abc:1", "MSK-1", "W1", "qr:abc", "bad", TUE_1200, channel="qr")]),
        Received(message, [RatingEvent("kiosk:MSK-1:k:1", "MSK-1", "W1", "kiosk-msk-1", "good", TUE_1200, channel="kiosk")]),
    ])
    reasons = dict(await Rating.all().values_list("event_uid", "excluded_reason"))
    assert reasons == {
        "native:MSK-1:btn-17:desk": ExclusionReason.NO_CLIENT, "qr:MSK-1:abc:1": None, "kiosk:MSK-1:k:1": None,
    }


async def test_rating_when_presence_says_nobody_was_there_is_excluded(service: RatingService) -> None:
    await service.store_batch(
        [
            presence("a", "start", TUE_1200 - timedelta(minutes=10), staff="ivanova"),
            presence("b", "end", TUE_1200 - timedelta(minutes=5)),
            rating("late", "good", TUE_1200),  # 5 minutes after the client left: nobody there
            presence("c", "start", TUE_1200 + timedelta(minutes=1)),
            rating("ok", "good", TUE_1200 + timedelta(minutes=2)),
        ]
    )
    reasons = dict(await Rating.all().values_list("event_uid", "excluded_reason"))
    assert reasons["native:MSK-1:btn-17:late"] == ExclusionReason.NO_CLIENT
    assert reasons["native:MSK-1:btn-17:ok"] is None


async def test_responsible_staff_comes_from_presence_then_roster(service: RatingService) -> None:
    await service.store_batch([presence("s", "start", TUE_1200 - timedelta(minutes=1), point="W2", staff="petrov")])
    await service.store_batch([rating("w2", "bad", TUE_1200, point="W2"), rating("w1", "bad", TUE_1200)])
    staff = {uid: code for uid, code in await Rating.all().values_list("event_uid", "staff__code")}
    assert staff == {"native:MSK-1:btn-17:w2": "petrov", "native:MSK-1:btn-17:w1": "ivanova"}  # W1 from the roster


async def test_negative_deadline_is_in_working_minutes(service: RatingService) -> None:
    await service.store_batch([rating("n", "bad", TUE_1200)])
    case = await NegativeCase.get()
    assert case.due_at == TUE_1200 + timedelta(minutes=30)
    assert case.remind_at == TUE_1200 + timedelta(minutes=15)


async def test_anomaly_alert_fires_once_per_window(service: RatingService) -> None:
    batch = [rating(str(i), "bad" if i % 4 else "good", TUE_1200 + timedelta(minutes=i), device=f"b{i}") for i in range(8)]
    result = await service.store_batch(batch)
    assert result.alerts == 1
    assert await AnomalyAlert.all().count() == 1
    alerts = await OutboxMessage.filter(kind=OutboxKind.TEXT, chat_id=-1001000000002)
    assert len(alerts) == 1 and "MSK-1 / Окно 1" in alerts[0].text and "из" in alerts[0].text
    more = await service.store_batch([rating("9", "bad", TUE_1200 + timedelta(minutes=9), device="b9")])
    assert more.alerts == 0


async def test_few_negatives_raise_no_alert(service: RatingService) -> None:
    batch = [rating(str(i), "bad" if i < 2 else "good", TUE_1200 + timedelta(minutes=i), device=f"b{i}") for i in range(6)]
    assert (await service.store_batch(batch)).alerts == 0


async def test_bad_payloads_are_dead_letters(service: RatingService) -> None:
    message = InboundMessage("loyalty/v1/MSK-1/W1/rating", b"not json", False, TUE_1200)
    result = await service.store_batch([Received(message, error=PayloadError("not_json", "payload is not JSON"))])
    assert result.dead_letters == 1
    letter = await DeadLetter.get()
    assert (letter.topic, bytes(letter.payload), letter.reason) == ("loyalty/v1/MSK-1/W1/rating", b"not json", "not_json")


async def test_late_comment_is_recorded_as_late(service: RatingService) -> None:
    await service.store_batch([rating("n", "bad", TUE_1200)])
    case = await NegativeCase.get().select_related("rating", "office")
    clock = service.clock  # type: ignore[attr-defined]
    comments = CommentService(clock)
    anna = await Staff.get(code="ivanova")
    clock.advance(timedelta(minutes=45))
    result = await comments.add_comment(anna, case, "Клиент ушёл до ответа")
    assert result.late is True
    stored = await NegativeCase.get(id=case.id)
    assert stored.comment_late is True and stored.comment_text == "Клиент ушёл до ответа"
    assert await OutboxMessage.filter(kind=OutboxKind.CASE_REFRESH).count() == 1  # the card will show it


async def test_positive_ratings_are_posted_only_where_the_office_asks(service: RatingService) -> None:
    from bot.models import Office

    await service.store_batch([rating("p1", "good", TUE_1200)])
    assert await OutboxMessage.filter(kind=OutboxKind.TEXT).count() == 0
    await Office.filter(code="MSK-1").update(post_positive=True)
    directory = await Directory.load()
    service._directory = lambda: directory  # type: ignore[method-assign]
    await service.store_batch([rating("p2", "neutral", TUE_1200 + timedelta(minutes=1), device="b2")])
    posts = await OutboxMessage.filter(kind=OutboxKind.TEXT)
    assert len(posts) == 1
    assert posts[0].chat_id == -1001000000001
    assert posts[0].text == "🟡 нейтрально · Окно 1 · Анна Иванова · 12:01"


async def test_hourly_digest_counts_the_last_hour_once(service: RatingService) -> None:
    from bot.deadlines import DeadlineScheduler
    from bot.models import Office

    await Office.filter(code="MSK-1").update(hourly_digest=True, language="en")
    directory = await Directory.load()
    service._directory = lambda: directory  # type: ignore[method-assign]
    await service.store_batch(
        [rating(str(i), v, TUE_1200 + timedelta(minutes=5 * i), device=f"d{i}") for i, v in enumerate(["good", "good", "bad", "neutral"])]
    )
    clock = service.clock  # type: ignore[attr-defined]
    clock.set(TUE_1200 + timedelta(hours=1, minutes=2))
    scheduler = DeadlineScheduler(clock, Texts(make_i18n()), lambda: directory, 15)
    first = await scheduler.run_once()
    second = await scheduler.run_once()
    assert (first.digests, second.digests) == (1, 0)
    digest = await OutboxMessage.get(kind=OutboxKind.TEXT, chat_id=-1001000000001)
    assert digest.text == "MSK-1, 12:00–13:00: 🟢 2 · 🟡 1 · 🔴 1"
