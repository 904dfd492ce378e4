"""``loyalty demo``: the whole loop on one machine, in a browser, without a Telegram token.

What runs: the service on a fresh SQLite database; the broker at ``MQTT_URL`` if one answers,
else a Mosquitto binary on a free port (``devices/mosquitto.conf``), else an embedded amqtt
broker (MQTT 3.1.1 only: the service's clients are switched to 3.1.1 for it, see
:func:`_use_mqtt311`); the Bot API emulator (bot/emulator.py) with a demo token, talked to by
the real aiogram Bot over HTTP; the demo organisation (bot/demo_org.yaml); the simulator
playing buttons, presence and kiosk feedback at a watchable pace (plus desk speech made by
espeak-ng when it is installed); and a web page (bot/demo_web/) on the service's own HTTP
server that shows the emulator's chats like Telegram, live over server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiomqtt
import yaml
from aiohttp import web

from bot.emulator import BotApiEmulator
from bot.settings import Settings, load_settings
from speech.audio import duration_of

log = logging.getLogger("loyalty.demo")

DEMO_ORG = Path(__file__).with_name("demo_org.yaml")
WEB_DIR = Path(__file__).with_name("demo_web")
DEMO_TOKEN = "123456:DEMO-not-a-real-token"
DEMO_TOPIC_ROOT = "loyalty-demo/v1"
WEB_FILES = {"app.css": "text/css", "app.js": "application/javascript"}
ROLE_LABELS = {"staff": "сотрудник", "manager": "руководитель", "quality": "служба качества", "admin": "администратор"}
SPEECH = (  # words espeak-ng's Russian and Whisper base agree on (see tests/speech_samples.py)
    "Здравствуйте. Телефон сегодня без скидки. Спасибо.",
    "Скидка только сегодня. Хорошо, спасибо, до свидания.",
    "Подождите, телефон сейчас проверю. Хорошо.",
)


# --------------------------------------------------------------------------- message rendering

_ENTITY_TAGS = {
    "bold": ("<b>", "</b>"), "italic": ("<i>", "</i>"), "underline": ("<u>", "</u>"),
    "strikethrough": ("<s>", "</s>"), "spoiler": ('<span class="tg-spoiler">', "</span>"),
    "code": ("<code>", "</code>"), "pre": ("<pre>", "</pre>"), "blockquote": ("<blockquote>", "</blockquote>"),
    "expandable_blockquote": ("<blockquote>", "</blockquote>"),
}
_SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:")


def message_html(text: str, entities: list[dict[str, Any]] | None = None) -> str:
    """A message as safe HTML: the text escaped, Telegram's entities (offsets in UTF-16 units)
    as the only tags — b, i, u, s, a (http/https/tg links only), code, pre, spoiler, blockquote.
    Nothing a sender typed can become markup: ``<script>`` in a text stays text."""
    units = text.encode("utf-16-le")
    opens: dict[int, list[str]] = {}
    closes: dict[int, list[str]] = {}
    for e in sorted(entities or [], key=lambda e: (e.get("offset", 0), -e.get("length", 0))):
        start, length = int(e.get("offset", 0)), int(e.get("length", 0))
        kind = e.get("type")
        if length <= 0 or start < 0 or (start + length) * 2 > len(units):
            continue
        if kind == "text_link":
            url = str(e.get("url", ""))
            if not url.lower().startswith(_SAFE_SCHEMES):
                continue
            tags = (f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer">', "</a>")
        elif kind in _ENTITY_TAGS:
            tags = _ENTITY_TAGS[kind]
        else:
            continue
        opens.setdefault(start, []).append(tags[0])
        closes.setdefault(start + length, []).insert(0, tags[1])
    out: list[str] = []
    for i in range(0, len(units) // 2 + 1):
        out.extend(closes.get(i, ()))
        out.extend(opens.get(i, ()))
        if i < len(units) // 2:
            unit = units[2 * i : 2 * i + 2]
            code = int.from_bytes(unit, "little")
            if 0xD800 <= code < 0xDC00:  # a surrogate pair: emit the character with its low half
                out.append(html.escape(units[2 * i : 2 * i + 4].decode("utf-16-le")))
            elif not 0xDC00 <= code < 0xE000:
                out.append(html.escape(unit.decode("utf-16-le")))
    return "".join(out)


def _sender_name(user: dict[str, Any]) -> str:
    return " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p) or str(user.get("id"))


def message_view(chat_id: int, msg: dict[str, Any], bot_id: int) -> dict[str, Any]:
    """What the page needs to draw one message (rendering happens here, not in the browser)."""
    body = msg.get("text") if "text" in msg else msg.get("caption") or ""
    ents = msg.get("entities") if "text" in msg else msg.get("caption_entities")
    view: dict[str, Any] = {
        "chat_id": chat_id, "message_id": msg["message_id"], "date": msg.get("date"),
        "from": {"id": msg["from"]["id"], "name": _sender_name(msg["from"]), "bot": msg["from"]["id"] == bot_id},
        "html": message_html(body or "", ents), "edited": "edit_date" in msg, "media": None,
    }
    if "photo" in msg:
        view["media"] = {"kind": "photo", "url": f"/demo/files/{msg['photo'][-1]['file_id']}"}
    elif "voice" in msg:
        view["media"] = {"kind": "voice", "url": f"/demo/files/{msg['voice']['file_id']}",
                         "duration": msg["voice"].get("duration", 0)}
    elif "document" in msg:
        doc = msg["document"]
        view["media"] = {"kind": "document", "url": f"/demo/files/{doc['file_id']}",
                         "name": doc.get("file_name") or "file", "size": doc.get("file_size", 0)}
    reply = msg.get("reply_to_message")
    if reply:
        snippet = reply.get("text") or reply.get("caption") or next(
            (f"[{k}]" for k in ("photo", "voice", "document") if k in reply), "")
        view["reply_to"] = {"message_id": reply["message_id"], "from": _sender_name(reply["from"]),
                            "text": snippet[:120]}
    keyboard = msg.get("reply_markup", {}).get("inline_keyboard") or []
    view["keyboard"] = [[{"text": b.get("text", ""), "data": b.get("callback_data"), "url": b.get("url")}
                         for b in row] for row in keyboard]
    return view


# --------------------------------------------------------------------------- the organisation


@dataclass(frozen=True)
class DemoUser:
    id: int
    name: str
    role: str
    office: str | None

    @property
    def label(self) -> str:
        where = f", {self.office}" if self.office else ""
        return f"{self.name} — {ROLE_LABELS.get(self.role, self.role)}{where}"


@dataclass
class DemoOrg:
    raw: dict[str, Any]
    users: list[DemoUser]
    chats: list[dict[str, Any]]  # {"id", "type", "title"}
    points: list[dict[str, str]]  # {"site", "point", "name", "office", "device"}

    @classmethod
    def load(cls, path: Path = DEMO_ORG) -> DemoOrg:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        users = [DemoUser(int(s["telegram_id"]), s["name"], s["role"], s.get("office")) for s in raw["staff"]]
        by_id = {u.id: u for u in users}
        chats: dict[int, dict[str, Any]] = {}

        def add(chat_id: int, title: str) -> None:
            kind = "private" if chat_id > 0 else "supergroup"
            if chat_id > 0 and chat_id in by_id:
                title = f"{by_id[chat_id].name} ({ROLE_LABELS[by_id[chat_id].role]})"
            chats.setdefault(chat_id, {"id": chat_id, "type": kind, "title": title})

        for office in raw["offices"]:
            add(int(office["staff_chat"]), f"{office['code']} · {office['name']} — сотрудники")
        for office in raw["offices"]:
            add(int(office["manager_chat"]), f"{office['code']} — руководитель")
        for office in raw["offices"]:
            if office.get("complaint_chat"):
                add(int(office["complaint_chat"]), "Жалобы клиентов")
        for user in users:
            if user.role in ("quality", "admin"):
                add(user.id, user.name)
        buttons = {d["point"]: d["id"] for d in raw["devices"] if d["kind"] == "native"}
        points = [
            {"site": o["code"], "point": p["code"], "name": p["name"], "office": o["name"],
             "device": buttons[f"{o['code']}/{p['code']}"]}
            for o in raw["offices"] for p in o["points"] if f"{o['code']}/{p['code']}" in buttons
        ]
        return cls(raw, users, list(chats.values()), points)

    def register(self, emulator: BotApiEmulator) -> None:
        for user in self.users:
            emulator.add_user(user.id, user.name)
        for chat in self.chats:
            emulator.add_chat(chat["id"], chat["type"], chat["title"])


# --------------------------------------------------------------------------- the broker


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def broker_answers(settings: Settings, timeout: float = 1.0) -> bool:
    target = settings.mqtt
    try:
        async with asyncio.timeout(timeout + 0.5):
            async with aiomqtt.Client(
                target.host, target.port, identifier=f"loyalty-demo-probe-{uuid.uuid4().hex[:6]}",
                username=unquote(target.username) if target.username else None,
                password=unquote(target.password) if target.password else None,
                timeout=timeout, tls_context=ssl.create_default_context() if target.tls else None,
            ):
                return True
    except Exception:
        return False


async def _wait_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        except OSError:
            await asyncio.sleep(0.1)
    return False


@dataclass
class Broker:
    url: str
    description: str
    mqtt311: bool = False  # amqtt speaks MQTT 3.1.1 only
    stop: Callable[[], Awaitable[None]] | None = None


async def start_mosquitto(workdir: Path) -> Broker | None:
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None)
    if binary is None:
        return None
    import devices

    source = Path(devices.__file__).with_name("mosquitto.conf")
    port = free_port()
    lines = [line for line in source.read_text(encoding="utf-8").splitlines()
             if not line.strip().startswith(("listener", "persistence", "autosave", "log_dest"))]
    lines += ["# loyalty demo: a loopback listener on a free port, nothing kept on disk",
              f"listener {port} 127.0.0.1", "persistence false", f"log_dest file {workdir / 'mosquitto.log'}"]
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (workdir / "mosquitto.log").touch()
    (workdir / "mosquitto.log").chmod(0o666)
    proc = subprocess.Popen(  # its own session: Ctrl+C reaches the demo, which stops it last
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if not await _wait_port(port, 5):
        proc.terminate()
        log.warning("mosquitto did not start (see %s)", workdir / "mosquitto.log")
        return None

    async def stop() -> None:
        proc.terminate()
        try:
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 5)
        except subprocess.TimeoutExpired:
            proc.kill()

    return Broker(f"mqtt://127.0.0.1:{port}", f"started Mosquitto ({binary}, devices/mosquitto.conf) on 127.0.0.1:{port}",
                  stop=stop)


async def start_amqtt() -> Broker:
    import warnings

    from amqtt.broker import Broker as AmqttBroker

    port = free_port()
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
              "auth": {"allow-anonymous": True}, "topic-check": {"enabled": False}}
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        broker = AmqttBroker(config)
    await broker.start()
    return Broker(f"mqtt://127.0.0.1:{port}", f"started an embedded amqtt broker on 127.0.0.1:{port} "
                  "(it speaks MQTT 3.1.1 only: the service connects with 3.1.1 and a persistent session)",
                  mqtt311=True, stop=broker.shutdown)


async def choose_broker(settings: Settings, workdir: Path, prefer: str = "auto") -> Broker:
    """The broker at MQTT_URL if it answers within a second; else Mosquitto; else amqtt."""
    if prefer == "auto" and await broker_answers(settings):
        return Broker(settings.mqtt_url, f"using the broker at {settings.mqtt_url}")
    where = f"no broker at {settings.mqtt_url}" if prefer == "auto" else f"--broker {prefer}"
    if prefer in ("auto", "mosquitto"):
        broker = await start_mosquitto(workdir)
        if broker is not None:
            broker.description = f"{where}; {broker.description}"
            return broker
    broker = await start_amqtt()
    broker.description = f"{where}; {broker.description}"
    return broker


def _use_mqtt311(app: Any) -> None:
    """amqtt has no MQTT 5: the ingest keeps its guarantees with 3.1.1's clean_session=False
    (a persistent session) and manual acks; only the MQTT 5 extras go (session expiry,
    receive maximum, retain handling, the kiosk screen's message expiry)."""
    from devices.ingest import KEEPALIVE_SECONDS, _BatchQueue

    ingest, display = app.ingest, app.kiosk_display

    def client311() -> aiomqtt.Client:
        target = app.settings.mqtt
        client = aiomqtt.Client(
            target.host, target.port, identifier=app.settings.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V311, clean_session=False, keepalive=KEEPALIVE_SECONDS,
            queue_type=_BatchQueue,
        )
        client._client.manual_ack_set(True)  # noqa: SLF001
        return client

    async def subscribe(client: aiomqtt.Client, filters: Any) -> None:
        wanted = [f for f in filters if f not in ingest._filters]  # noqa: SLF001
        if wanted:
            await client.subscribe([(f, 1) for f in wanted])
            ingest._filters.update(wanted)  # noqa: SLF001

    ingest._client = client311  # noqa: SLF001
    ingest._subscribe = subscribe  # noqa: SLF001
    if display is not None:
        target = app.settings.mqtt

        def display_client() -> aiomqtt.Client:
            return aiomqtt.Client(target.host, target.port, identifier=f"{app.settings.mqtt_client_id}-display",
                                  protocol=aiomqtt.ProtocolVersion.V311)

        async def publish(client: aiomqtt.Client, request: Any) -> None:
            built = await display.message(request)
            if built is not None:
                await client.publish(built[0], built[1], qos=1, retain=True)
                display.published += 1

        display._client = display_client  # noqa: SLF001
        display._publish = publish  # noqa: SLF001


# --------------------------------------------------------------------------- speech


SAMPLE_CLIPS = Path(__file__).parent / "demo_audio"  # the SPEECH lines, made once with espeak-ng, Ogg/Opus


def shipped_clip(rng: random.Random) -> bytes | None:
    """One of the sample clips shipped with the package: desk speech where espeak-ng is absent."""
    clips = sorted(SAMPLE_CLIPS.glob("*.ogg"))
    return rng.choice(clips).read_bytes() if clips else None


def espeak_wav(text: str) -> bytes | None:
    """Russian speech as WAV bytes from espeak-ng, or None when it is not installed."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    with tempfile.TemporaryDirectory(prefix="loyalty-demo-speech-") as tmp:
        src, out = Path(tmp, "text.txt"), Path(tmp, "out.wav")
        src.write_text(text, encoding="utf-8")
        subprocess.run([binary, "-v", "ru", "-s", "140", "-f", str(src), "-w", str(out)],
                       check=True, capture_output=True, timeout=60)
        return out.read_bytes()


# --------------------------------------------------------------------------- the demo


@dataclass
class DemoOptions:
    port: int | None = 8080  # None or 0: a free port
    host: str = "127.0.0.1"
    traffic: bool = True  # the simulator's automatic traffic
    interval: float = 7.0  # seconds between simulated events
    broker: str = "auto"  # auto | mosquitto | amqtt
    workdir: Path | None = None  # default: a fresh temporary folder
    overrides: dict[str, Any] = field(default_factory=dict)  # settings (tests: topic root, client id)


def _pick_port(host: str, wanted: int | None) -> int:
    if not wanted:
        return 0
    for port in range(wanted, wanted + 20):
        with socket.socket() as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    return 0


class Demo:
    def __init__(self, options: DemoOptions | None = None) -> None:
        self.options = options or DemoOptions()
        self.org = DemoOrg.load()
        self.emulator = BotApiEmulator(token=DEMO_TOKEN, bot_username="loyalty_demo_bot", group_messages_per_minute=20)
        self.emulator.bot_user["first_name"] = "Loyalty Desk"
        self.app: Any = None
        self.broker: Broker | None = None
        self.url = ""
        self.workdir: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._stop = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: aiomqtt.Client | None = None
        self._publish_lock = asyncio.Lock()
        self.audio = False
        self.published = 0
        self.summary: list[str] = []  # what runs, for the start banner

    def _say(self, what: str, line: str) -> None:
        log.info("%s: %s", what, line)
        self.summary.append(f"  {what:<10} {line}")

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        from bot.app import build

        opts = self.options
        if opts.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="loyalty-demo-")
            self.workdir = Path(self._tmp.name)
        else:
            self.workdir = opts.workdir
            self.workdir.mkdir(parents=True, exist_ok=True)
        database = self.workdir / "loyalty.sqlite3"
        self._say("database", f"{database} (SQLite, fresh{'' if opts.workdir else '; deleted on exit, keep it with --data-dir'})")
        base = load_settings()
        self.broker = await choose_broker(base, self.workdir, opts.broker)
        self._say("broker", self.broker.description)
        await self.emulator.start()
        self.org.register(self.emulator)
        self._say("telegram", f"Bot API emulator on {self.emulator.url} (a demo token: no Telegram, no internet)")
        values: dict[str, Any] = dict(
            bot_token=DEMO_TOKEN, telegram_api_url=self.emulator.url, database_url=f"sqlite://{database}",
            # its own topic root and client id: a service on the same broker never hears the demo
            mqtt_url=self.broker.url, mqtt_topic_root=DEMO_TOPIC_ROOT, mqtt_client_id="loyalty-demo", org_file=DEMO_ORG,
            audio_dir=self.workdir / "audio", http_host=opts.host, http_port=_pick_port(opts.host, opts.port),
            scheduler_interval_seconds=2.0, mqtt_shared_group=None,
            # the demo's recording is a few seconds of speech that ends at the press: cut it at once
            snippet_before_seconds=6, snippet_after_seconds=0, snippet_wait_seconds=5,
        )
        if "whisper_model" not in base.model_fields_set:
            values["whisper_model"] = "packaged:base"  # multilingual (Russian), from PyPI, no hub
        values.update(opts.overrides)
        settings = load_settings(**values)
        self.settings = settings
        self.app = build(settings)
        if self.broker.mqtt311:
            _use_mqtt311(self.app)
        add_demo_routes(self.app.http.app, self)
        await self.app.start(self._stop)
        self.url = self.app.http.url
        await asyncio.wait_for(self.app.ingest.connected.wait(), 15)
        target = settings.mqtt
        self._publisher = aiomqtt.Client(target.host, target.port, identifier=f"loyalty-demo-devices-{uuid.uuid4().hex[:6]}",
                                         protocol=aiomqtt.ProtocolVersion.V311)
        await self._publisher.__aenter__()
        self.espeak = shutil.which("espeak-ng") is not None
        self.audio = self.espeak or shipped_clip(random.Random(0)) is not None
        self._say("speech", ("desk audio made by espeak-ng before each negative" if self.espeak
                             else "espeak-ng is not installed: desk audio from the sample clips shipped in bot/demo_audio"
                             if self.audio else "no espeak-ng and no sample clips: negatives come without a recording")
                  + f"; transcripts by whisper {settings.whisper_model}")
        if opts.traffic:
            seeded = await self.seed_history()
            self._say("history", f"{seeded} good and neutral ratings over the past 7 days, so /report has something to show")
            self._tasks.append(asyncio.create_task(self._traffic(), name="demo-traffic"))
            self._tasks.append(asyncio.create_task(self._kiosk(), name="demo-kiosk"))
            self._say("simulator", f"a visit or a press every ~{opts.interval:.0f} s (now and then a negative), exit-kiosk feedback now and then")
        else:
            self._say("simulator", "automatic traffic off (--no-traffic): press the buttons in the page")
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.__aexit__(None, None, None)
        if self.app is not None:
            await self.app.shutdown()
        await self.emulator.stop()
        if self.broker is not None and self.broker.stop is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    # ------------------------------------------------------------------ devices
    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        assert self._publisher is not None
        async with self._publish_lock:
            await self._publisher.publish(topic, payload, qos=qos, retain=retain)
        self.published += 1

    async def press(self, site: str, point: str, value: str) -> dict[str, Any]:
        """A demo button press: the native rating message, exactly as a device publishes it."""
        from devices.simulator import native_rating

        spot = next((p for p in self.org.points if p["site"] == site and p["point"] == point), None)
        if spot is None or value not in ("good", "neutral", "bad"):
            raise web.HTTPBadRequest(text="unknown point or value")
        if value == "bad":
            await self._speak(site, point)
        root = self.settings.mqtt_topic_root
        topic = f"{root}/{site}/{point}/rating"
        payload = native_rating(event_id=f"demo-{uuid.uuid4().hex[:12]}", ts=datetime.now(UTC), device=spot["device"], value=value)
        await self.publish(topic, payload)
        return {"topic": topic, "payload": json.loads(payload)}

    async def seed_history(self, days: int = 7, visits_per_day: int = 8, seed: int = 7) -> int:
        """A week of past visits (presence start, a good or neutral press for most, presence end:
        the devices' own messages, stamped in the past), so a report has a week behind it. No
        negatives: old ones would all be overdue at once."""
        from datetime import timedelta

        from devices.simulator import native_presence, native_rating

        rng = random.Random(seed)
        now = datetime.now(UTC)
        stem = f"demo-history-{int(now.timestamp())}"
        root = self.settings.mqtt_topic_root
        count = 0
        for spot in self.org.points:
            topic = f"{root}/{spot['site']}/{spot['point']}"
            for day in range(days, 0, -1):
                starts = sorted(rng.sample(range(0, 86_000, 300), rng.randint(visits_per_day // 2, visits_per_day)))
                for n, offset in enumerate(starts):
                    begin = now - timedelta(days=day) + timedelta(seconds=offset)
                    key = f"{stem}-{spot['device']}-{day}-{n}"
                    ticket = f"H{n:03d}"
                    await self.publish(f"{topic}/presence", native_presence(event_id=f"{key}-s", ts=begin, state="start", ticket=ticket))
                    if rng.random() < 0.8:
                        value = "good" if rng.random() < 0.75 else "neutral"
                        await self.publish(f"{topic}/rating", native_rating(
                            event_id=f"{key}-r", ts=begin + timedelta(seconds=rng.randint(60, 200)), device=spot["device"], value=value))
                        count += 1
                    await self.publish(f"{topic}/presence", native_presence(
                        event_id=f"{key}-e", ts=begin + timedelta(seconds=240), state="end", ticket=ticket))
        return count

    async def _speak(self, site: str, point: str) -> None:
        """A few seconds of desk speech just before a negative, as the recorder would upload."""
        if not self.audio:
            return
        clip: bytes | None = None
        if self.espeak:
            try:
                clip = await asyncio.get_running_loop().run_in_executor(None, espeak_wav, random.choice(SPEECH))
            except Exception as exc:
                log.warning("espeak-ng failed (%s): a shipped sample clip instead", exc)
        clip = clip or shipped_clip(random.Random())
        if clip:
            seconds = duration_of(clip)
            start_ms = int((time.time() - seconds) * 1000) - 200  # the recording ends at the press
            await self.publish(f"{self.settings.mqtt_topic_root}/{site}/{point}/audio/{start_ms}", clip)

    async def _traffic(self) -> None:
        from devices.simulator import TrafficPlan, run_simulation

        devices = [d for d in self.app.holder.directory.devices if d.kind == "native"]
        seed = int(time.time())
        while not self._stop.is_set():
            plan = TrafficPlan(devices, root=self.settings.mqtt_topic_root, rate=1 / self.options.interval,
                               duration=600, negative_share=0.15, presence=True, seed=seed,
                               session_seconds=(10.0, 40.0), ha_reset=False)
            seed += 1

            async def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
                if topic.endswith("/rating") and b'"bad"' in payload:
                    site, point = topic.split("/")[-3:-1]
                    await self._speak(site, point)
                await self.publish(topic, payload, qos, retain)

            try:
                await run_simulation(publish, plan)
            except aiomqtt.MqttError as exc:
                log.warning("simulator: MQTT %s; retrying in 5 s", exc)
                await asyncio.sleep(5)

    async def _kiosk(self) -> None:
        from devices.simulator import KioskPlan, run_simulation

        kiosks = [d for d in self.app.holder.directory.devices if d.kind == "kiosk"]
        if not kiosks:
            return
        reasons = [code for code, reason in self.app.holder.directory.reasons.items() if reason.active]
        seed = int(time.time())
        while not self._stop.is_set():
            plan = KioskPlan(kiosks, root=self.settings.mqtt_topic_root, rate=1 / (self.options.interval * 6),
                             duration=1200, negative_share=0.2, complaint_share=0.1, seed=seed,
                             **({"reasons": reasons} if reasons else {}))
            seed += 1
            try:
                await run_simulation(lambda t, p, q, r: self.publish(t, p, q, r), plan)
            except aiomqtt.MqttError as exc:
                log.warning("kiosk simulator: MQTT %s; retrying in 5 s", exc)
                await asyncio.sleep(5)

    # ------------------------------------------------------------------ page state
    def state(self) -> dict[str, Any]:
        emu = self.emulator
        chats = []
        for chat in self.org.chats:
            msgs = [message_view(chat["id"], m, emu.bot_id) for m in emu.messages(chat["id"])]
            chats.append({**chat, "messages": msgs})
        return {
            "bot": emu.bot_user["first_name"],
            "users": [{"id": u.id, "name": u.name, "role": u.role, "office": u.office, "label": u.label}
                      for u in self.org.users],
            "chats": chats,
            "points": self.org.points,
            "traffic": self.options.traffic,
            "audio": self.audio,
        }


# --------------------------------------------------------------------------- HTTP


def add_demo_routes(app: web.Application, demo: Demo) -> None:
    """The page, its state, live events (SSE), acting as a user, pressing the demo buttons."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=(WEB_DIR / "index.html").read_bytes(), content_type="text/html", charset="utf-8")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in WEB_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=(WEB_DIR / name).read_bytes(), content_type=WEB_FILES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def state(request: web.Request) -> web.Response:
        return web.json_response(demo.state())

    async def files(request: web.Request) -> web.Response:
        f = demo.emulator.stored_file(request.match_info["file_id"])
        if f is None:
            raise web.HTTPNotFound()
        headers = {}
        if f.file_name and not (f.mime_type or "").startswith(("image/", "audio/")):
            headers["Content-Disposition"] = f'attachment; filename="{f.file_name}"'
        mime = f.mime_type or ("audio/ogg" if f.file_path.startswith("voice/") else "application/octet-stream")
        return web.Response(body=f.data, content_type=mime, headers=headers)

    async def events(request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[tuple[str, int, dict[str, Any]]] = asyncio.Queue(maxsize=1000)

        def listener(kind: str, chat_id: int, msg: dict[str, Any]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((kind, chat_id, msg))

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        remove = demo.emulator.add_listener(listener)
        closing = asyncio.ensure_future(demo._closing.wait())  # noqa: SLF001
        try:
            await response.write(b"event: hello\ndata: {}\n\n")
            while not closing.done():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, closing}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if not closing.done():
                        await response.write(b": keep-alive\n\n")
                    continue
                kind, chat_id, msg = getter.result()
                data = {"kind": kind, "chat_id": chat_id, "message": message_view(chat_id, msg, demo.emulator.bot_id)}
                await response.write(f"event: message\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode())
        except ConnectionResetError:  # the page went away
            pass
        finally:
            remove()
            closing.cancel()
        return response

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="JSON body expected") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="JSON object expected")
        return data

    def known_user(data: dict[str, Any]) -> int:
        user_id = int(data.get("user_id") or 0)
        if user_id not in {u.id for u in demo.org.users}:
            raise web.HTTPBadRequest(text="pick a demo user")
        return user_id

    async def send(request: web.Request) -> web.Response:
        data = await body(request)
        text = str(data.get("text") or "").strip()
        if not text:
            raise web.HTTPBadRequest(text="empty message")
        reply = int(data["reply_to"]) if data.get("reply_to") else None
        try:
            msg = await demo.emulator.user_message(int(data["chat_id"]), known_user(data), text[:4096], reply_to_message_id=reply)
        except AssertionError as exc:
            raise web.HTTPBadRequest(text=str(exc).splitlines()[0]) from None
        return web.json_response({"message_id": msg["message_id"]})

    async def press_button(request: web.Request) -> web.Response:
        data = await body(request)
        emu = demo.emulator
        try:
            query_id = await emu.press_button(int(data["chat_id"]), known_user(data), int(data["message_id"]), str(data["data"]))
        except AssertionError as exc:
            raise web.HTTPConflict(text=str(exc).splitlines()[0]) from None

        def answered() -> dict[str, Any] | None:
            return next((a for a in emu.answered_callbacks if a["id"] == query_id), None)

        try:
            answer = await emu.wait_for(answered, timeout=5, what="the callback answer")
        except AssertionError:
            answer = None
        return web.json_response({"text": (answer or {}).get("text"), "alert": bool((answer or {}).get("show_alert"))})

    async def rate(request: web.Request) -> web.Response:
        data = await body(request)
        return web.json_response(await demo.press(str(data.get("site")), str(data.get("point")), str(data.get("value"))))

    app.router.add_get("/", index)
    app.router.add_get("/demo/static/{name}", static)
    app.router.add_get("/demo/api/state", state)
    app.router.add_get("/demo/api/events", events)
    app.router.add_get("/demo/files/{file_id}", files)
    app.router.add_post("/demo/api/send", send)
    app.router.add_post("/demo/api/button", press_button)
    app.router.add_post("/demo/api/rate", rate)


async def run_demo(options: DemoOptions, stop: asyncio.Event) -> None:
    demo = Demo(options)
    try:
        url = await demo.start()
        log.info("Loyalty Desk demo: open %s (Ctrl+C stops everything)", url)
        print("\n".join([f"Loyalty Desk demo: open {url}", *demo.summary, "Ctrl+C stops everything."]), flush=True)
        await stop.wait()
        log.info("demo stopping")
    finally:
        await demo.stop()
