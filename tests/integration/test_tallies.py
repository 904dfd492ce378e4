"""``rating_tally`` stays equal to counting ``rating`` itself (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tortoise.functions import Count

from bot.clock import FakeClock
from bot.comments import CommentService
from bot.directory import Directory
from bot.models import ExclusionReason, NegativeCase, Point, Rating, RatingTally, Staff
from bot.org import import_org, load_org_file
from bot.ratings import RatingService, Received
from bot.settings import load_settings
from bot.tallies import add_tallies, backfill_comment_seconds, rebuild_tallies
from bot.texts import Texts, make_i18n
from devices.contract import InboundMessage, RatingEvent

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
TUE_1200 = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)


async def raw_counts() -> dict[tuple, int]:
    rows = (
        await Rating.all()
        .annotate(n=Count("id"))
        .group_by("local_date", "office_id", "point_id", "staff_id", "value", "excluded_reason")
        .values_list("local_date", "office_id", "point_id", "staff_id", "value", "excluded_reason", "n")
    )
    return {(d, o, p, s or 0, str(v), r or ""): n for d, o, p, s, v, r, n in rows}


async def tally_counts() -> dict[tuple, int]:
    rows = await RatingTally.all().values_list("local_date", "office_id", "point_id", "staff_id", "value", "excluded_reason", "ratings")
    counts = {(d, o, p, s, str(v), r): n for d, o, p, s, v, r, n in rows}
    assert len(counts) == len(rows), "a tally key is stored twice"
    return counts


async def test_batches_add_up_to_counting_the_ratings(database: str) -> None:
    await import_org(load_org_file(ORG))
    points = await Point.all().select_related("office")
    staff = [None, *await Staff.all().values_list("id", flat=True)]
    rng = random.Random(7)
    uid = 0
    for _batch in range(12):  # overlapping keys across batches must add, not overwrite
        rows = []
        for _ in range(rng.randint(1, 60)):
            uid += 1
            point = rng.choice(points)
            day = date(2026, 11, 1) + timedelta(days=rng.randint(0, 4))
            at = datetime(day.year, day.month, day.day, rng.randint(9, 19), tzinfo=MSK)
            rows.append(Rating(
                event_uid=f"t{uid}", device_id="btn", office_id=point.office.id, point_id=point.id,
                staff_id=rng.choice(staff), value=rng.choice(["good", "neutral", "bad"]), ts=at.astimezone(UTC),
                received_at=at.astimezone(UTC), local_date=day, local_hour=at.hour,
                excluded_reason=rng.choice([None, None, None, ExclusionReason.REPEAT, ExclusionReason.NO_CLIENT]),
            ))
        await Rating.bulk_create(rows)
        await add_tallies(rows)
    expected = await raw_counts()
    assert sum(expected.values()) == uid
    assert await tally_counts() == expected

    await RatingTally.filter(id__gt=0).update(ratings=999)  # a damaged tally is recounted from scratch
    await rebuild_tallies(Rating._meta.db)
    assert await tally_counts() == expected


async def test_ingest_keeps_the_tally(database: str) -> None:
    await import_org(load_org_file(ORG))
    directory = await Directory.load()
    service = RatingService(load_settings(), FakeClock(TUE_1200), Texts(make_i18n()), lambda: directory)

    def press(uid: str, value: str, at: datetime) -> Received:
        message = InboundMessage("loyalty/v1/MSK-1/W1/rating", b"{}", False, at)
        return Received(message, [RatingEvent(f"native:MSK-1:btn-17:{uid}", "MSK-1", "W1", "btn-17", value, at)])

    await service.store_batch([press("1", "bad", TUE_1200), press("2", "bad", TUE_1200 + timedelta(seconds=3))])
    await service.store_batch([press("1", "bad", TUE_1200), press("3", "good", TUE_1200 + timedelta(minutes=5))])
    counts = await tally_counts()
    assert counts == await raw_counts()
    by_kind = {(value, reason): n for (_d, _o, _p, _s, value, reason), n in counts.items()}
    assert by_kind == {("bad", ""): 1, ("bad", "repeat"): 1, ("good", ""): 1}  # the replayed press counted once


async def test_comment_seconds_from_the_service_and_the_backfill_agree(database: str) -> None:
    await import_org(load_org_file(ORG))
    directory = await Directory.load()
    clock = FakeClock(TUE_1200)
    service = RatingService(load_settings(), clock, Texts(make_i18n()), lambda: directory)
    message = InboundMessage("loyalty/v1/MSK-1/W1/rating", b"{}", False, TUE_1200)
    await service.store_batch([Received(message, [RatingEvent("native:MSK-1:btn-17:c1", "MSK-1", "W1", "btn-17", "bad", TUE_1200)])])
    case = await NegativeCase.get().select_related("rating", "office")
    staff = await Staff.get(code="ivanova")  # on the roster at W1 on Tuesday noon: the responsible one
    assert case.rating.staff_id == staff.id
    clock.advance(timedelta(minutes=7, seconds=30))
    await CommentService(clock, lambda: None).add_comment(staff, case, "клиент спешил")
    stored = await NegativeCase.get(id=case.id)
    assert stored.comment_seconds == 450.0

    await NegativeCase.filter(id=case.id).update(comment_seconds=None)  # as before the column existed
    await backfill_comment_seconds(Rating._meta.db)
    assert abs((await NegativeCase.get(id=case.id)).comment_seconds - 450.0) < 0.01
