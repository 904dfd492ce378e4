"""QR surveys on a real database (SQLite and PostgreSQL): what a code names, where a staff
code's rating belongs, what a submission becomes, and the limits — with a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.clock import FakeClock
from bot.directory import Directory
from bot.errors import AccessDenied, NotFound
from bot.models import (
    Channel, DeadLetter, ExclusionReason, NegativeCase, Office, OutboxKind, OutboxMessage, Point, Rating,
    RatingReason, Reason, Shift, Staff,
)
from bot.org import import_org, load_org_file
from bot.ratings import RatingService
from bot.settings import load_settings
from bot.survey_codes import SurveyCodes
from bot.surveys import MAX_COMMENT, PHONE_LIMIT, Submission, SurveyError, SurveyService, key_file, load_survey_secret
from bot.texts import Texts, make_i18n

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
TUE_1200 = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)
SUN_1200 = datetime(2026, 11, 29, 12, 0, tzinfo=MSK).astimezone(UTC)  # nobody is rostered on Sundays
SECRET = b"survey-test-secret-0123456789abcdef"
REASONS = [("wait", "Долгое ожидание", "Long wait"), ("rude", "Невежливое обслуживание", "Impolite service")]


class Env:
    def __init__(self, service: SurveyService, clock: FakeClock, directory: Directory) -> None:
        self.service = service
        self.clock = clock
        self.directory = directory
        self.codes = service.codes

    async def point_code(self, office: str = "MSK-1", point: str = "W1") -> str:
        row = await Point.get(office__code=office, code=point)
        return self.codes.make("point", row.id)

    async def staff_code(self, code: str) -> str:
        return self.codes.make("staff", (await Staff.get(code=code)).id)


async def make_env(at: datetime = TUE_1200, **overrides: object) -> Env:
    await import_org(load_org_file(ORG))
    for code, label, label_en in REASONS:  # whether or not the org fixture lists reasons yet
        await Reason.get_or_create(code=code, defaults={"label": label, "label_en": label_en})
    await Office.filter(code="MSK-1").update(reason_codes=[code for code, _, _ in REASONS])
    directory = await Directory.load()
    clock = FakeClock(at)
    settings = load_settings(**overrides)
    ratings = RatingService(settings, clock, Texts(make_i18n()), lambda: directory)
    service = SurveyService(settings, clock, SurveyCodes(SECRET), lambda: directory, ratings.store_batch,
                            Texts(make_i18n()), base_url=lambda: "https://survey.example")
    return Env(service, clock, directory)


@pytest.fixture
async def env(database: str) -> Env:
    return await make_env()


def good(**kwargs: object) -> Submission:
    return Submission("good", **kwargs)  # type: ignore[arg-type]


# --- what a code names ------------------------------------------------------------------------


async def test_a_point_code_opens_that_points_page_with_the_offices_reasons(env: Env) -> None:
    page = await env.service.page(await env.point_code("MSK-1", "W2"))
    assert page is not None
    assert (page.kind, page.point.code, page.point.name, page.office.code) == ("point", "W2", "Окно 2", "MSK-1")
    assert [r.code for r in page.reasons] == ["wait", "rude"]
    assert page.staff_code is None


async def test_a_bad_signature_or_a_target_that_is_gone_opens_nothing(env: Env) -> None:
    code = await env.point_code()
    tampered = code[:-1] + ("a" if code[-1] != "a" else "b")
    assert await env.service.page(tampered) is None
    assert await env.service.page("not-a-code") is None
    assert await env.service.page(env.codes.make("point", 999_999)) is None
    other_secret = SurveyCodes(b"another-secret-of-enough-length!").make("point", (await Point.get(code="W1", office__code="MSK-1")).id)
    assert await env.service.page(other_secret) is None
    await Staff.filter(code="ivanova").update(active=False)
    assert await env.service.page(await env.staff_code("ivanova")) is None


async def test_a_staff_code_rates_the_point_of_the_open_shift(env: Env) -> None:
    anna = await Staff.get(code="ivanova")
    w3 = await Point.get(office__code="MSK-1", code="W3")
    await Shift.create(staff=anna, point=w3, started_at=TUE_1200 - timedelta(hours=1))
    code = await env.staff_code("ivanova")
    page = await env.service.page(code)
    assert page is not None and (page.point.code, page.staff_code, page.staff_name) == ("W3", "ivanova", "Анна Иванова")
    await env.service.submit(code, Submission("bad", comment="Долго ждал"), "c:phone-1", "10.0.0.1")
    rating = await Rating.get(channel=Channel.QR).select_related("point", "staff")
    assert (rating.point.code, rating.staff.code, rating.customer_text) == ("W3", "ivanova", "Долго ждал")


async def test_a_staff_code_without_a_shift_rates_the_rostered_point(env: Env) -> None:
    page = await env.service.page(await env.staff_code("smirnova"))  # EKB-1/W1 on weekdays
    assert page is not None and (page.office.code, page.point.code) == ("EKB-1", "W1")


async def test_a_staff_code_off_the_roster_rates_the_offices_first_point(database: str) -> None:
    env = await make_env(SUN_1200)
    page = await env.service.page(await env.staff_code("ivanova"))  # rostered mon-sat only
    assert page is not None and (page.office.code, page.point.code) == ("MSK-1", "W1")
    page = await env.service.page(await env.staff_code("kuznetsov"))  # a manager: never rostered
    assert page is not None and (page.office.code, page.point.code) == ("EKB-1", "W1")


# --- what a submission becomes ------------------------------------------------------------------


async def test_a_negative_is_stored_as_a_qr_rating_with_reasons_and_posted_like_a_press(env: Env) -> None:
    code = await env.point_code("MSK-1", "W2")
    stored = await env.service.submit(code, Submission("bad", ("wait", "rude"), "  Очередь 40 минут  ", "n-1"),
                                      "c:phone-1", "10.0.0.1")
    assert stored.repeat is False and stored.event_uid.startswith("qr:")
    rating = await Rating.get(event_uid=stored.event_uid).select_related("point")
    assert (rating.channel, rating.value, rating.point.code, rating.customer_text) == (
        Channel.QR, "bad", "W2", "Очередь 40 минут")
    assert rating.device_id.startswith("qr:") and len(rating.device_id) == 19
    assert rating.excluded_reason is None
    reasons = await RatingReason.filter(rating_id=rating.id).values_list("reason__code", flat=True)
    assert sorted(reasons) == ["rude", "wait"]
    case = await NegativeCase.get(rating_id=rating.id)
    assert await OutboxMessage.filter(case_id=case.id, kind=OutboxKind.CASE_POST).count() == 1


async def test_reasons_the_office_does_not_offer_are_ignored_and_the_rating_kept(env: Env) -> None:
    code = await env.point_code()
    stored = await env.service.submit(code, Submission("neutral", ("wait", "made-up", "<script>")), "c:p", "10.0.0.1")
    assert stored.ignored_reasons == ("made-up", "<script>")
    rating = await Rating.get(event_uid=stored.event_uid)
    assert await RatingReason.filter(rating_id=rating.id).values_list("reason__code", flat=True) == ["wait"]
    assert await DeadLetter.filter(reason="unknown_reason").count() == 0


async def test_the_same_form_sent_twice_is_stored_once(env: Env) -> None:
    code = await env.point_code()
    first = await env.service.submit(code, good(nonce="same-page"), "c:p", "10.0.0.1")
    second = await env.service.submit(code, good(nonce="same-page"), "c:p", "10.0.0.1")
    assert first.event_uid == second.event_uid
    assert await Rating.filter(channel=Channel.QR).count() == 1


async def test_concurrent_submissions_are_committed_together_and_all_kept(database: str) -> None:
    env = await make_env(survey_ip_per_minute=1000)  # the limiter is not what this is about
    code = await env.point_code()
    results = await asyncio.gather(*(env.service.submit(code, good(), f"c:phone-{i}", "10.0.0.1") for i in range(60)))
    assert len({r.event_uid for r in results}) == 60
    assert await Rating.filter(channel=Channel.QR).count() == 60
    assert env.service.writer.batches < 60


# --- repeats and limits --------------------------------------------------------------------------


async def test_a_repeat_from_the_same_phone_is_stored_but_excluded(env: Env) -> None:
    code = await env.point_code()
    first = await env.service.submit(code, good(), "c:phone-1", "10.0.0.1")
    env.clock.set(TUE_1200 + timedelta(minutes=5))  # well past the button's 10 s window
    again = await env.service.submit(code, Submission("bad"), "c:phone-1", "10.0.0.1")
    other_phone = await env.service.submit(code, good(), "c:phone-2", "10.0.0.1")
    env.clock.advance(30)  # (the same phone within 10 s would be a repeated press whatever it rated)
    other_target = await env.service.submit(await env.point_code("MSK-1", "W2"), good(), "c:phone-1", "10.0.0.2")
    env.clock.set(TUE_1200 + timedelta(minutes=5 + 61))  # SURVEY_REPEAT_MINUTES (60) after the last one
    later = await env.service.submit(code, good(), "c:phone-1", "10.0.0.1")
    assert [r.repeat for r in (first, again, other_phone, other_target, later)] == [False, True, False, False, False]
    excluded = dict(await Rating.filter(channel=Channel.QR).values_list("event_uid", "excluded_reason"))
    assert len(excluded) == 5
    assert excluded[again.event_uid] == ExclusionReason.REPEAT
    assert [excluded[r.event_uid] for r in (first, other_phone, other_target, later)] == [None] * 4


async def test_an_address_over_its_limit_gets_429_until_the_window_passes(database: str) -> None:
    env = await make_env(survey_ip_per_minute=3)
    code = await env.point_code()
    for i in range(3):
        await env.service.submit(code, good(), f"c:phone-{i}", "203.0.113.5")
        env.clock.advance(1)
    with pytest.raises(SurveyError) as refused:
        await env.service.submit(code, good(), "c:phone-9", "203.0.113.5")
    assert refused.value.status == 429 and 56 < refused.value.retry_after <= 60
    await env.service.submit(code, good(), "c:phone-9", "198.51.100.7")  # another address is not affected
    env.clock.advance(58)  # the first of the three leaves the window
    await env.service.submit(code, good(), "c:phone-9", "203.0.113.5")
    assert await Rating.filter(channel=Channel.QR).count() == 5


async def test_a_phone_over_its_limit_for_one_target_gets_429(env: Env) -> None:
    code = await env.point_code()
    for _ in range(PHONE_LIMIT):
        await env.service.submit(code, good(), "c:phone-1", "10.0.0.1")
        env.clock.advance(20)
    with pytest.raises(SurveyError) as refused:
        await env.service.submit(code, good(), "c:phone-1", "10.0.0.2")
    assert (refused.value.status, refused.value.reason) == (429, "phone_limit")
    await env.service.submit(await env.point_code("MSK-1", "W2"), good(), "c:phone-1", "10.0.0.1")
    assert await Rating.filter(channel=Channel.QR).count() == PHONE_LIMIT + 1


async def test_bad_codes_count_against_the_address(database: str) -> None:
    env = await make_env(survey_ip_per_minute=2)
    assert env.service.count_bad_code("10.9.9.9") == 0
    assert env.service.count_bad_code("10.9.9.9") == 0
    assert env.service.count_bad_code("10.9.9.9") > 0
    with pytest.raises(SurveyError) as refused:
        await env.service.submit(await env.point_code(), good(), "c:p", "10.9.9.9")
    assert refused.value.status == 429


@pytest.mark.parametrize(
    ("form", "status", "reason"),
    [
        (Submission(None), 422, "no_value"),
        (Submission("excellent"), 400, "bad_value"),
        (Submission("bad", comment="x" * (MAX_COMMENT + 1)), 400, "too_long"),
        (Submission("bad", reasons=("wait",) * 40), 400, "bad_form"),
    ],
)
async def test_a_bad_form_is_refused_and_stores_nothing(env: Env, form: Submission, status: int, reason: str) -> None:
    with pytest.raises(SurveyError) as refused:
        await env.service.submit(await env.point_code(), form, "c:p", "10.0.0.1")
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert await Rating.all().count() == 0


async def test_a_comment_of_exactly_the_limit_is_kept(env: Env) -> None:
    stored = await env.service.submit(await env.point_code(), Submission("bad", comment="я" * MAX_COMMENT), "c:p", "10.0.0.1")
    assert len((await Rating.get(event_uid=stored.event_uid)).customer_text or "") == MAX_COMMENT


# --- /qr -----------------------------------------------------------------------------------------------


async def test_a_manager_gets_the_tent_of_a_point_in_their_office(env: Env) -> None:
    petrov = await Staff.get(code="petrov")
    for words in (["W1"], ["MSK-1/W1"], ["msk-1/w1"]):
        tent = await env.service.table_tent(petrov, words)
        target = env.codes.parse(tent.url.rsplit("/", 1)[1])
        assert target is not None and target.kind == "point"
        assert target.target_id == (await Point.get(office__code="MSK-1", code="W1")).id
        assert tent.url.startswith("https://survey.example/r/")
        assert (tent.title, tent.point_label, tent.office_name) == ("Оцените наше обслуживание", "Окно 1", "Москва, Тверская 1")
        assert tent.call_to_action.startswith("Наведите камеру телефона на код")
    with pytest.raises(NotFound):
        await env.service.table_tent(petrov, ["EKB-1/W1"])
    with pytest.raises(NotFound):
        await env.service.table_tent(petrov, ["staff", "smirnova"])


async def test_an_admin_gets_any_tent_and_a_staff_code_names_the_employee(env: Env) -> None:
    admin = await Staff.get(code="admin")
    tent = await env.service.table_tent(admin, ["staff", "smirnova"])
    target = env.codes.parse(tent.url.rsplit("/", 1)[1])
    assert target is not None and (target.kind, target.target_id) == ("staff", (await Staff.get(code="smirnova")).id)
    assert (tent.point_label, tent.filename) == ("Мария Смирнова", "qr-EKB-1-smirnova")
    assert (await env.service.table_tent(admin, ["EKB-1/W2"])).point_label == "Окно 2"


async def test_plain_staff_and_quality_cannot_print_tents(env: Env) -> None:
    for code in ("ivanova", "sokolova"):
        with pytest.raises(AccessDenied):
            await env.service.table_tent(await Staff.get(code=code), ["MSK-1/W1"])


# --- the signing secret ---------------------------------------------------------------------------


def test_the_secret_comes_from_survey_secret_then_bot_token_then_a_kept_file(tmp_path: Path) -> None:
    db_url = f"sqlite://{tmp_path}/db/loyalty.sqlite3"
    explicit, source = load_survey_secret(load_settings(database_url=db_url, survey_secret="x" * 32, bot_token="1:A"))
    assert (explicit, source) == (b"x" * 32, "SURVEY_SECRET")
    from_token, source = load_survey_secret(load_settings(database_url=db_url, bot_token="123:ABC"))
    assert source == "BOT_TOKEN" and from_token == load_survey_secret(load_settings(database_url=db_url, bot_token="123:ABC"))[0]
    assert b"123:ABC" not in from_token
    assert from_token != load_survey_secret(load_settings(database_url=db_url, bot_token="123:ABD"))[0]
    settings = load_settings(database_url=db_url, bot_token=None, survey_secret=None)
    generated, source = load_survey_secret(settings)
    assert source == str(tmp_path / "db" / "survey.key") == str(key_file(settings))
    assert (tmp_path / "db" / "survey.key").stat().st_mode & 0o077 == 0
    assert load_survey_secret(settings)[0] == generated  # kept across restarts
    assert len(generated) == 64


# --- the page's language ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("office", "header", "expected"),
    [
        ("ru", None, "ru"),
        ("ru", "de-DE,de;q=0.9", "ru"),
        ("ru", "ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7", "ru"),
        ("ru", "en-US,en;q=0.9,ru;q=0.8", "en"),
        ("ru", "en-GB", "en"),
        ("ru", "en;q=0.5,ru;q=0.5", "en"),  # a tie: the browser's order decides
        ("ru", "ru;q=0.5,en;q=0.5", "ru"),
        ("ru", "en;q=0,ru", "ru"),  # q=0 means "not this one"
        ("ru", "en;q=garbage", "ru"),
        ("en", "ru-RU,ru", "en"),  # an English office's page is English
    ],
)
def test_the_page_is_russian_unless_the_office_or_the_browser_prefers_english(office: str, header: str | None, expected: str) -> None:
    from devices.survey_web import pick_locale

    assert pick_locale(office, header) == expected
