"""QR survey pages over real HTTP against the running service, /qr through the real bot, and
the page rendered in headless Chromium (screenshot kept in tests/artifacts/)."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from bot.app import App
from bot.models import Channel, ExclusionReason, NegativeCase, Office, Point, Rating, RatingReason, Reason, Staff
from tests.e2e.conftest import STAFF_CHAT, Harness

ARTIFACTS = Path(__file__).parent.parent / "artifacts"
REVIEW_URL = "https://yandex.ru/maps/org/1234567890/reviews/"
REASONS = [("wait", "Долгое ожидание", "Long wait"), ("rude", "Невежливое обслуживание", "Impolite service"),
           ("price", "Цены", "Prices")]
RU = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}


async def start(harness: Harness, **overrides: object) -> tuple[App, str, str]:
    """The service with MSK-1 offering three reasons and a named review page; W1's survey URL."""
    app = await harness.start(**overrides)
    for code, label, label_en in REASONS:  # whether or not the org fixture lists reasons yet
        await Reason.get_or_create(code=code, defaults={"label": label, "label_en": label_en})
    await Office.filter(code="MSK-1").update(reason_codes=[c for c, _, _ in REASONS], review_url=REVIEW_URL,
                                              review_title="Яндекс Карты")
    await app.holder.reload()
    assert app.surveys is not None
    w1 = await Point.get(office__code="MSK-1", code="W1")
    return app, app.http.url, f"/r/{app.surveys.codes.make('point', w1.id)}"


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: keep cookies of 127.0.0.1


async def test_the_page_shows_the_point_and_the_offices_reasons_safely(harness: Harness) -> None:
    _app, base, path = await start(harness)
    async with session() as http:
        async with http.get(base + path, headers=RU) as response:
            html = await response.text()
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            cookie = response.headers["Set-Cookie"]
        assert "ld_phone=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert '<html lang="ru">' in html and "Оцените наше обслуживание" in html
        assert "Окно 1" in html and "Москва, Тверская 1" in html
        for _code, label, _en in REASONS:
            assert label in html
        assert re.search(r'name="value"[^>]*value="bad"', html) and 'name="nonce"' in html
        assert "<script" not in html and "http" not in html.split("<main>")[1]  # nothing fetched, no script
        async with http.get(base + path, headers={"Accept-Language": "en-US,en;q=0.9,ru;q=0.3"}) as response:
            english = await response.text()
        assert '<html lang="en">' in english and "How were you served?" in english and "Impolite service" in english


async def test_a_staff_codes_page_names_the_employee_and_files_the_rating_under_them(harness: Harness) -> None:
    app, base, _path = await start(harness)
    assert app.surveys is not None
    anna = await Staff.get(code="ivanova")
    path = f"/r/{app.surveys.codes.make('staff', anna.id)}"
    async with session() as http:
        async with http.get(base + path, headers=RU) as response:
            html = await response.text()
        assert response.status == 200 and "Сотрудник: Анна Иванова" in html
        async with http.post(base + path, data={"value": "neutral", "reason": "price"}, headers=RU) as response:
            assert response.status == 200 and "Спасибо за отзыв" in await response.text()
    rating = await Rating.get(channel=Channel.QR).select_related("staff")
    assert (rating.value, rating.staff.code) == ("neutral", "ivanova")


async def test_a_positive_rating_is_stored_and_offers_the_review_page(harness: Harness) -> None:
    _app, base, path = await start(harness)
    async with session() as http:
        await (await http.get(base + path, headers=RU)).read()
        async with http.post(base + path, data={"value": "good", "nonce": "n1", "comment": ""}, headers=RU) as response:
            html = await response.text()
            assert response.status == 200
    assert "Спасибо!" in html
    assert f'href="{REVIEW_URL}"' in html and ">Яндекс Карты</a>" in html
    rating = await Rating.get(channel=Channel.QR).select_related("point")
    assert (rating.value, rating.point.code, rating.excluded_reason) == ("good", "W1", None)


async def test_a_negative_with_reasons_and_comment_reaches_the_office_group(harness: Harness) -> None:
    _app, base, path = await start(harness)
    emu = harness.emulator
    form = [("value", "bad"), ("reason", "wait"), ("reason", "rude"), ("comment", "Ждал 40 минут <b>у окна</b>")]
    async with session() as http:
        async with http.post(base + path, data=form, headers=RU) as response:
            html = await response.text()
            assert response.status == 200
    assert "Офис обязательно разберётся с вашим отзывом" in html and "yandex" not in html
    rating = await Rating.get(channel=Channel.QR)
    assert (rating.value, rating.customer_text) == ("bad", "Ждал 40 минут <b>у окна</b>")
    reasons = await RatingReason.filter(rating_id=rating.id).values_list("reason__code", flat=True)
    assert sorted(reasons) == ["rude", "wait"]
    post = await emu.wait_for_bot_message(STAFF_CHAT, contains="Негативная оценка", timeout=15)
    assert "Окно 1" in post["text"]
    for _ in range(100):  # the outbox records the message id just after the Bot API answered
        case = await NegativeCase.get(rating_id=rating.id)
        if case.message_id is not None:
            break
        await asyncio.sleep(0.05)
    assert case.message_id == post["message_id"]


async def test_a_bad_signature_gets_a_human_404(harness: Harness) -> None:
    _app, base, path = await start(harness)
    forged = path[:-2] + ("aa" if not path.endswith("aa") else "bb")
    async with session() as http:
        for method in ("GET", "POST"):
            async with http.request(method, base + forged, data={"value": "good"}, headers=RU) as response:
                html = await response.text()
                assert response.status == 404
                assert "QR-код недействителен" in html and response.headers["X-Content-Type-Options"] == "nosniff"
    assert await Rating.filter(channel=Channel.QR).count() == 0


async def test_bad_forms_get_human_pages_and_the_comment_is_escaped(harness: Harness) -> None:
    _app, base, path = await start(harness)
    async with session() as http:
        async with http.post(base + path, data={"comment": "<script>alert(1)</script>"}, headers=RU) as response:
            html = await response.text()
            assert response.status == 422  # no answer chosen: the form again, comment kept
        assert "выберите один из трёх ответов" in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
        async with http.post(base + path, data={"value": "bad", "comment": "я" * 2001}, headers=RU) as response:
            assert response.status == 400
            assert "не больше 2000 символов" in await response.text()
        async with http.post(base + path, data={"value": "terrible"}, headers=RU) as response:
            assert response.status == 400
            assert "Такого ответа нет" in await response.text()
    assert await Rating.filter(channel=Channel.QR).count() == 0


async def test_a_form_sent_in_pieces_is_read_whole_and_an_oversized_one_refused(harness: Harness) -> None:
    _app, base, path = await start(harness)
    body = ("value=bad&nonce=pieces&comment=" + "%D1%8F" * 2000).encode()  # «я» × 2000: the most allowed

    async def pieces(data: bytes, size: int = 1000):  # chunked transfer encoding, no Content-Length
        for i in range(0, len(data), size):
            yield data[i:i + size]
            await asyncio.sleep(0)

    headers = {**RU, "Content-Type": "application/x-www-form-urlencoded"}
    async with session() as http:
        async with http.post(base + path, data=pieces(body), headers=headers) as response:
            assert response.status == 200
        async with http.post(base + path, data=pieces(b"value=bad&comment=" + b"x" * 70_000), headers=headers) as response:
            assert response.status == 413 and "Форма слишком большая" in await response.text()
    assert (await Rating.get(channel=Channel.QR)).customer_text == "я" * 2000


async def test_a_flood_from_one_address_is_cut_at_the_limit_and_nothing_allowed_is_lost(harness: Harness) -> None:
    _app, base, path = await start(harness, survey_ip_per_minute=40)
    gate = asyncio.Semaphore(32)
    statuses: Counter[int] = Counter()
    texts: set[str] = set()

    async def submit(http: aiohttp.ClientSession, i: int) -> None:
        async with gate:  # one address, a thousand phones (a cookie each)
            headers = {**RU, "Cookie": f"ld_phone=phone{i:017d}"}
            async with http.post(base + path, data={"value": "bad" if i % 2 else "good", "nonce": f"n{i}"},
                                 headers=headers) as response:
                statuses[response.status] += 1
                if response.status == 429:
                    assert 1 <= int(response.headers["Retry-After"]) <= 60
                    texts.add(await response.text())

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        await asyncio.gather(*(submit(http, i) for i in range(1000)))
    assert statuses == {200: 40, 429: 960}
    assert len(texts) == 1 and "Слишком много отзывов подряд, попробуйте через минуту" in texts.pop()
    assert await Rating.filter(channel=Channel.QR).count() == 40


async def test_a_repeat_from_the_same_phone_is_stored_but_excluded(harness: Harness) -> None:
    _app, base, path = await start(harness, repeat_press_seconds=0)  # the survey's own window, not the button's
    async with session() as http:
        await (await http.get(base + path, headers=RU)).read()  # the phone's cookie
        for nonce in ("first", "second"):
            async with http.post(base + path, data={"value": "good", "nonce": nonce}, headers=RU) as response:
                assert response.status == 200
    rows = await Rating.filter(channel=Channel.QR).order_by("id").values_list("device_id", "excluded_reason")
    assert len(rows) == 2 and rows[0][0] == rows[1][0]
    assert [reason for _device, reason in rows] == [None, ExclusionReason.REPEAT]


async def test_qr_as_a_manager_sends_the_table_tent_pdf_and_a_preview(harness: Harness) -> None:
    app, _base, _path = await start(harness)
    emu = harness.emulator
    await emu.user_message(5002, 5002, "/qr W1")
    document = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(5002) if "document" in m), None), timeout=30, what="the tent PDF")
    photo = await emu.wait_for(
        lambda: next((m for m in emu.bot_messages(5002) if "photo" in m), None), timeout=30, what="the preview")
    assert emu.file_bytes(document["document"]["file_id"]).startswith(b"%PDF")
    assert document["document"]["file_name"] == "qr-MSK-1-W1.pdf"
    assert emu.file_bytes(photo["photo"][0]["file_id"]).startswith(b"\x89PNG")
    url = photo["caption"]
    assert url.startswith(f"{app.http.url}/r/") and "Окно 1" in document["caption"]
    async with session() as http, http.get(url) as response:  # the printed code opens W1's page
        assert response.status == 200 and "Окно 1" in await response.text()


async def test_qr_as_plain_staff_is_politely_refused(harness: Harness) -> None:
    await start(harness)
    emu = harness.emulator
    await emu.user_message(5001, 5001, "/qr W1")
    refusal = await emu.wait_for_bot_message(5001, contains="печатают администратор и руководитель офиса")
    assert "document" not in refusal and not any("document" in m or "photo" in m for m in emu.bot_messages(5001))


async def test_the_page_renders_in_headless_chromium(harness: Harness) -> None:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    _app, base, path = await start(harness)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "survey-page-390x844.png"
    shot.unlink(missing_ok=True)
    process = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--lang=ru-RU", "--accept-lang=ru-RU,ru",
        f"--user-data-dir={harness.tmp_path / 'chromium'}", f"--screenshot={shot}", "--window-size=390,844",
        base + path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000  # a rendered page, not a blank one
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (390, 844)
