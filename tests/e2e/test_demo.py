"""`loyalty demo`: the page shows the emulator's chats live, and the loop works from a browser.

The demo runs in-process (bot.demo.Demo) on the test Mosquitto with its own topic root and
client id, automatic traffic off, the web page on a free port. The browser test drives Debian's
Chromium through Playwright's Python package (no browser download, no network); screenshots
go to tests/artifacts/, and docs/demo.png (the README's picture) is written when it is missing
or when LOYALTY_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.demo import Demo, DemoOptions, message_html, message_view

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
MSK_GROUP = -1001000000001
MANAGER = 5002
ANNA = 5001


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    tag = uuid.uuid4().hex[:8]
    options = DemoOptions(
        port=0, traffic=False, workdir=tmp_path / "demo",
        overrides={"mqtt_topic_root": f"demo{tag}/v1", "mqtt_client_id": f"loyalty-demo-test-{tag}"},
    )
    d = Demo(options)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


# --------------------------------------------------------------------------- rendering (no I/O)


def test_shipped_sample_clips_are_speech_for_machines_without_espeak() -> None:
    """Without espeak-ng the demo plays these at the desk: Ogg/Opus that decodes, a few seconds long."""
    import random

    from bot.demo import SAMPLE_CLIPS, SPEECH, shipped_clip
    from speech.audio import probe

    clips = sorted(SAMPLE_CLIPS.glob("*.ogg"))
    assert len(clips) == len(SPEECH)
    for clip in clips:
        info = probe(clip.read_bytes())
        assert (info.codec, info.container) == ("opus", "ogg") and 3.0 < info.duration_s < 8.0
    assert shipped_clip(random.Random(1)) in {c.read_bytes() for c in clips}


def test_message_html_escapes_what_a_sender_typed() -> None:
    html = message_html('<script>alert("x")</script> & <b>не жирный</b>')
    assert "<script" not in html and "<b>" not in html
    assert html == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;не жирный&lt;/b&gt;"


def test_message_html_renders_telegram_entities_in_utf16_offsets() -> None:
    text = "🔴 Негатив: ссылка <x>"
    # "🔴" is two UTF-16 units: «Негатив» starts at 3
    entities = [{"type": "bold", "offset": 3, "length": 7}, {"type": "text_link", "offset": 12, "length": 6, "url": "https://example.org/?a=1&b=2"},
                {"type": "text_link", "offset": 19, "length": 3, "url": "javascript:alert(1)"}]
    html = message_html(text, entities)
    assert html == ('🔴 <b>Негатив</b>: <a href="https://example.org/?a=1&amp;b=2" target="_blank" '
                    'rel="noopener noreferrer">ссылка</a> &lt;x&gt;')


def test_message_view_carries_media_keyboard_and_reply() -> None:
    msg = {"message_id": 5, "from": {"id": 1, "first_name": "Bot"}, "date": 0, "caption": "KPI",
           "photo": [{"file_id": "PHAgAD1"}], "reply_markup": {"inline_keyboard": [[{"text": "OK", "callback_data": "x:1"}]]},
           "reply_to_message": {"message_id": 4, "from": {"id": 2, "first_name": "Олег"}, "text": "/report 7d"}}
    view = message_view(-1, msg, bot_id=1)
    assert view["from"]["bot"] is True and view["html"] == "KPI"
    assert view["media"] == {"kind": "photo", "url": "/demo/files/PHAgAD1"}
    assert view["keyboard"] == [[{"text": "OK", "data": "x:1", "url": None}]]
    assert view["reply_to"] == {"message_id": 4, "from": "Олег", "text": "/report 7d"}


# --------------------------------------------------------------------------- plain HTTP


async def test_page_state_and_live_events_over_http(demo: Demo) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(demo.url + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            page = await r.text()
        assert '<script src="/demo/static/app.js">' in page and "cdn" not in page.lower()
        async with http.get(demo.url + "/demo/static/app.js") as r:
            assert r.status == 200 and "EventSource" in await r.text()
        async with http.get(demo.url + "/demo/api/state") as r:
            state = await r.json()
        assert [c["id"] for c in state["chats"]][:2] == [MSK_GROUP, -1001000000011]
        assert {u["role"] for u in state["users"]} == {"staff", "manager", "quality", "admin"}
        assert len(state["points"]) == 5 and len([u for u in state["users"] if u["role"] == "staff"]) == 8

        async with http.get(demo.url + "/demo/api/events", timeout=aiohttp.ClientTimeout(total=60)) as events:
            assert events.headers["Content-Type"].startswith("text/event-stream")
            assert await events.content.readline() == b"event: hello\n"
            async with http.post(demo.url + "/demo/api/rate", json={"site": "MSK-1", "point": "W2", "value": "bad"}) as r:
                assert r.status == 200
                sent = await r.json()
            assert sent["topic"].endswith("/MSK-1/W2/rating") and sent["payload"]["device"] == "btn-msk-w2"

            async def next_message() -> dict:
                """The next new message in the office group (a morning digest may come first elsewhere)."""
                while True:
                    line = await events.content.readline()
                    if line.startswith(b"data: ") and line != b"data: {}\n":
                        event = json.loads(line[6:])
                        if event.get("kind") == "new" and event.get("chat_id") == MSK_GROUP:
                            return event

            event = await asyncio.wait_for(next_message(), 30)
        assert event["kind"] == "new" and event["chat_id"] == MSK_GROUP
        assert "<b>Негативная оценка</b>" in event["message"]["html"]
        assert "Сотрудник: Павел Сидоров" in event["message"]["html"]

        # a user's text is escaped in the state the page draws
        async with http.post(demo.url + "/demo/api/send", json={"chat_id": MSK_GROUP, "user_id": ANNA, "text": "<script>x()</script>"}) as r:
            assert r.status == 200
        async with http.get(demo.url + "/demo/api/state") as r:
            group = next(c for c in (await r.json())["chats"] if c["id"] == MSK_GROUP)
        assert group["messages"][-1]["html"] == "&lt;script&gt;x()&lt;/script&gt;"
        async with http.post(demo.url + "/demo/api/send", json={"chat_id": MSK_GROUP, "user_id": 999, "text": "hi"}) as r:
            assert r.status == 400  # only demo users can speak


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
async def test_a_broker_of_its_own_carries_a_press_to_the_group(tmp_path: Path, kind: str) -> None:
    """Without a broker at MQTT_URL the demo starts one: Mosquitto (MQTT 5) or embedded amqtt
    (MQTT 3.1.1 only: the demo switches the service's clients to 3.1.1 for it)."""
    if kind == "mosquitto" and not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.skip("no mosquitto binary")
    d = Demo(DemoOptions(port=0, traffic=False, broker=kind, workdir=tmp_path / "demo"))
    await d.start()
    try:
        assert d.broker is not None and kind in d.broker.description.lower()
        assert d.broker.mqtt311 is (kind == "amqtt")
        assert d.settings.mqtt_url == d.broker.url and not d.broker.url.endswith(":1883")  # its own free port
        await d.press("EKB-1", "W1", "bad")
        post = await d.emulator.wait_for_bot_message(-1001000000011, contains="Негативная оценка", timeout=30)
        assert "Сотрудник: Мария Смирнова" in post["text"]
    finally:
        await d.stop()


# --------------------------------------------------------------------------- the browser


async def test_the_loop_in_headless_chromium(demo: Demo) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium; .ci/run does it)")
    playwright_api = pytest.importorskip("playwright.async_api", reason="pip install -e '.[test]' brings playwright")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800}, locale="ru-RU", timezone_id="Europe/Moscow")
            await page.goto(demo.url + "/")
            await page.wait_for_selector("#live.on")
            assert await page.inner_text("#chat-title") == "MSK-1 · Москва, Тверская 1 — сотрудники"

            # the demo's «bad» button at MSK-1 W1 → the negative in the office group
            await page.select_option("#point", "MSK-1/W1")
            await page.click("[data-rate=bad]")
            negative = page.locator(".msg.bot", has_text="Негативная оценка").first
            await negative.wait_for(timeout=30_000)
            assert "Сотрудник: Анна Иванова" in await negative.inner_text()
            assert await negative.locator(".kb button", has_text="Комментарий").count() == 1

            # Anna replies to it; the post is edited in place with her comment
            await page.select_option("#as-user", str(ANNA))
            await negative.locator("button.reply").click()
            await page.fill("#text", "Клиент пришёл без паспорта, объяснила порядок")
            await page.click("#send")
            commented = page.locator(".msg.bot", has_text="Комментарий (Анна Иванова").first
            await commented.wait_for(timeout=30_000)
            assert "Клиент пришёл без паспорта" in await commented.inner_text()
            assert await commented.locator(".edited").count() == 1
            await page.locator(".msg.user .quote", has_text="Негативная оценка").first.wait_for()
            await page.locator(".msg.bot", has_text="Комментарий сохранён").first.wait_for(timeout=30_000)
            if demo.audio:  # espeak-ng spoke at the desk before the press: the snippet comes as a voice message
                voice = page.locator(".msg.bot", has=page.locator("audio"))
                await voice.first.wait_for(timeout=60_000)
                assert "Негативная оценка" in await voice.first.locator(".quote").inner_text()
                src = await voice.first.locator("audio").get_attribute("src")
                async with aiohttp.ClientSession() as http, http.get(demo.url + src) as r:
                    assert r.status == 200 and (await r.read()).startswith(b"OggS")
            await page.screenshot(path=str(ARTIFACTS / "demo-office-group-1280x800.png"))
            docs = ROOT / "docs" / "demo.png"
            if not docs.exists() or os.environ.get("LOYALTY_UPDATE_SCREENSHOTS") == "1":
                await page.screenshot(path=str(docs))

            # the manager's chat: /report 7d → figures and the chart album
            await page.click(f".chat-item[data-chat='{MANAGER}']")
            assert await page.input_value("#as-user") == str(MANAGER)  # opening a private chat acts as its owner
            await page.fill("#text", "/report 7d")
            await page.press("#text", "Enter")
            photos = page.locator(".msg.bot img")
            for _ in range(120):  # press through the dialog if it asks for the scope
                if await photos.count() >= 1:
                    break
                scope = page.locator(".msg.bot .kb button", has_text="MSK-1")
                if await scope.count():
                    await scope.first.click()
                await page.wait_for_timeout(500)
            await photos.first.wait_for(timeout=60_000)
            await page.wait_for_function("document.querySelectorAll('.msg.bot img').length >= 5", timeout=60_000)
            await page.wait_for_function(
                "[...document.querySelectorAll('.msg.bot img')].every(i => i.complete && i.naturalWidth > 0)", timeout=30_000
            )
            summary = page.locator(".msg.bot", has_text="Оценок: 1")
            assert await summary.count() >= 1
            csv_button = summary.first.locator(".kb button", has_text="CSV")
            if await csv_button.count():  # the summary's export button sends a document: a download link
                await csv_button.click()
                document = page.locator(".msg.bot a.doc").first
                await document.wait_for(timeout=30_000)
                assert (await document.get_attribute("href") or "").startswith("/demo/files/")
            await page.screenshot(path=str(ARTIFACTS / "demo-manager-report-1280x800.png"), full_page=True)

            # a phone-sized viewport shows the same chat usably
            phone = await browser.new_page(viewport={"width": 390, "height": 844}, locale="ru-RU", timezone_id="Europe/Moscow",
                                           device_scale_factor=2)
            await phone.goto(f"{demo.url}/#chat={MSK_GROUP}")
            await phone.locator(".msg.bot", has_text="Комментарий (Анна Иванова").first.wait_for()
            assert await phone.locator("#chats").is_hidden()  # the chat list is behind the ☰ button
            await phone.click("#menu")
            assert await phone.locator("#chats").is_visible()
            await phone.click(f".chat-item[data-chat='{MSK_GROUP}']")
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
            await phone.screenshot(path=str(ARTIFACTS / "demo-office-group-390x844.png"))
        finally:
            await browser.close()
