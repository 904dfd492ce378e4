"""The composition root: the only place that builds services, the bot and the dispatcher."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BotCommand

from bot import db
from bot.audio import AudioService
from bot.clock import Clock, SystemClock, wait_first
from bot.comments import CommentService
from bot.complaints import ComplaintService
from bot.deadlines import DeadlineScheduler
from bot.device_health import DeviceHealthService
from bot.digests import DigestService
from bot.directory import Directory
from bot.kiosk_display import KioskDisplay
from bot.outbox import OutboxSender
from bot.kpi import KpiService
from bot.ratings import RatingService
from bot.reports import ReportService
from bot.retention import RetentionService
from bot.sampling import CalibrationService, SamplingService
from bot.scoring import ScoreService
from bot.settings import DEFAULT_TELEGRAM_API_URL, Settings
from bot.speech_service import SpeechService
from bot.staff import StaffService
from bot.survey_codes import SurveyCodes
from bot.surveys import SurveyService, load_survey_secret
from bot.texts import Texts, make_i18n
from bot.uploads import DeviceTokens, UploadService
from devices.ingest import MqttIngest
from devices.routing import TopicRouter
from devices.survey_web import add_survey_routes
from devices.upload import HttpServer, add_upload_routes, make_http_app
from handlers import admin, common, group_comments, shifts
from handlers import complaints as complaints_handlers
from handlers import devices as devices_handlers
from handlers import qr as qr_handlers
from handlers import reports as reports_handlers
from handlers import quality as quality_handlers
from handlers import scoring as scoring_handlers
from handlers.middlewares import StaffLocaleMiddleware, StaffMiddleware
from speech.store import SegmentStore
from speech.transcriber import Transcriber, WhisperTranscriber

log = logging.getLogger(__name__)

DIRECTORY_REFRESH_SECONDS = 30.0
GC_GEN0_THRESHOLD = 50_000


class DirectoryHolder:
    """The current org snapshot; rebuilt when something changes it and every 30 s."""

    def __init__(self, root: str) -> None:
        self._root = root
        self.directory = Directory()
        self.router = TopicRouter(root, [], [])
        self._dirty = asyncio.Event()

    async def reload(self) -> None:
        directory = await Directory.load()
        self.router = TopicRouter(self._root, directory.devices, directory.points.keys())
        self.directory = directory

    def invalidate(self) -> None:
        self._dirty.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await wait_first(self._dirty.wait(), stop.wait(), timeout=DIRECTORY_REFRESH_SECONDS)
            self._dirty.clear()
            if not stop.is_set():
                try:
                    await self.reload()
                except Exception:
                    log.exception("reloading the organisation failed; keeping the previous snapshot")


def make_bot(settings: Settings) -> Bot:
    session = None
    if settings.telegram_api_url != DEFAULT_TELEGRAM_API_URL:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(settings.require_bot_token(), session=session, default=DefaultBotProperties(parse_mode=None))


@dataclass
class App:
    settings: Settings
    clock: Clock
    bot: Bot | None  # None without BOT_TOKEN: events are stored, messages wait in the outbox
    dp: Dispatcher
    holder: DirectoryHolder
    ratings: RatingService
    outbox: OutboxSender | None
    scheduler: DeadlineScheduler
    ingest: MqttIngest
    staff_service: StaffService
    comments: CommentService
    speech: SpeechService
    retention: RetentionService
    http: HttpServer
    digests: DigestService
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pinned_models: list[object] = field(default_factory=list)
    complaints: ComplaintService | None = None  # complaint cards, reminders, escalations, contact retention
    surveys: SurveyService | None = None  # QR survey pages (/r/{code}) and /qr table tents
    device_health: DeviceHealthService | None = None  # offline / battery alerts and /devices
    kiosk_display: KioskDisplay | None = None  # review-page QR to a kiosk after good feedback

    async def start(self, stop: asyncio.Event) -> None:
        """Migrate, load the org, then run polling, ingest, outbox and deadlines side by side."""
        await db.upgrade(self.settings.database_url)
        await db.connect(self.settings.database_url)
        if self.settings.org_file is not None:
            from bot.org import import_org, load_org_file

            report = await import_org(load_org_file(self.settings.org_file))
            for line in report.lines():
                log.info("org: %s", line)
        await self.holder.reload()
        await self.http.start()  # after the reload: uploads are checked against the org snapshot
        log.info("HTTP API on %s", self.http.url)
        # Everything loaded so far lives as long as the process: keep the collector from
        # re-scanning it on every full collection (gen-2 pauses stall the event loop).
        gc.collect()
        gc.freeze()
        # Each event allocates hundreds of short-lived objects (MQTT packets, pydantic and ORM
        # rows): with the default gen-0 threshold of 700 the collector ran every event or two.
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)
        spawn: Callable[[Awaitable[None], str], asyncio.Task[None]] = lambda coro, name: asyncio.create_task(coro, name=name)  # noqa: E731
        self.tasks = [
            spawn(self.holder.run(stop), "directory"),
            spawn(self.ingest.run(stop), "ingest"),
            spawn(self.scheduler.run(stop), "deadlines"),
            spawn(self.speech.run(stop), "speech"),
            spawn(self.retention.run(stop), "retention"),
            spawn(self.digests.run(stop), "digests"),
        ]
        if self.complaints is not None:
            self.tasks.append(spawn(self.complaints.run(stop), "complaints"))
        if self.device_health is not None:
            self.tasks.append(spawn(self.device_health.run(stop), "device-health"))
        if self.kiosk_display is not None:
            self.tasks.append(spawn(self.kiosk_display.run(stop), "kiosk-display"))
        if self.bot is None:
            log.warning("BOT_TOKEN is not set: Telegram is off; events are stored and messages wait in the outbox")
            return
        try:
            await self.bot.set_my_commands(
                [
                    BotCommand(command="shift", description="Смена: где я работаю"),
                    BotCommand(command="report", description="Отчёт: показатели и графики"),
                    BotCommand(command="me", description="Мои показатели"),
                    BotCommand(command="devices", description="Устройства: связь и батарея"),
                    BotCommand(command="qr", description="QR-код опроса для стойки"),
                    BotCommand(command="help", description="Помощь"),
                ]
            )
        except Exception as exc:  # commands are a nicety; the Bot API may be briefly away
            log.warning("setMyCommands failed: %s", exc)
        assert self.outbox is not None
        self.tasks += [
            spawn(self.outbox.run(stop), "outbox"),
            spawn(self.dp.start_polling(self.bot, handle_signals=False, close_bot_session=False), "polling"),
        ]

    async def shutdown(self) -> None:
        """In-flight work finishes: the ingest batch in hand is stored and acknowledged."""
        await self.http.stop()  # uploads in progress finish while the database is still open
        if self.surveys is not None:
            await self.surveys.aclose()  # the QR submissions' batch in hand is committed
        if self.bot is not None:
            try:
                await self.dp.stop_polling()
            except RuntimeError:
                pass
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.speech.aclose()
        if self.bot is not None:
            await self.bot.session.close()
        await db.close()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start(stop)
        try:
            await stop.wait()
        finally:
            await self.shutdown()


def make_transcriber(settings: Settings) -> WhisperTranscriber:
    return WhisperTranscriber(
        settings.whisper_model, settings.whisper_cache_dir, cpu_threads=settings.whisper_threads, vad=settings.whisper_vad
    )


def build(
    settings: Settings, clock: Clock | None = None, bot: Bot | None = None, transcriber: Transcriber | None = None
) -> App:
    clock = clock or SystemClock()
    i18n = make_i18n(settings.default_language)
    texts = Texts(i18n)
    holder = DirectoryHolder(settings.mqtt_topic_root)
    if bot is None and settings.bot_token is not None:
        bot = make_bot(settings)
    outbox = OutboxSender(bot, settings, clock, texts, lambda: holder.directory) if bot is not None else None
    notify = outbox.notify if outbox is not None else (lambda: None)
    store = SegmentStore(settings.audio_dir)
    audio = AudioService(store, clock, lambda: holder.directory, timedelta(hours=settings.audio_retention_hours))
    retention = RetentionService(settings, clock, store)
    max_bytes = int(settings.upload_max_mb * 1024 * 1024)
    http_app = make_http_app(max_bytes)  # one aiohttp app: later issues add their pages to it
    add_upload_routes(
        http_app, UploadService(audio, clock, timedelta(days=settings.audio_keep_days)), DeviceTokens(),
        max_bytes=max_bytes, max_future=timedelta(seconds=settings.max_future_seconds), clock=clock,
    )
    http = HttpServer(http_app, settings.http_host, settings.http_port)
    kiosk_display = KioskDisplay(settings, clock)
    complaints = ComplaintService(settings, clock, texts, lambda: holder.directory, notify)
    ratings = RatingService(
        settings, clock, texts, lambda: holder.directory, on_outbox=notify, audio=audio,
        on_kiosk_good=kiosk_display.offer, on_complaints=complaints.wake,
    )
    survey_secret, survey_key_source = load_survey_secret(settings)
    log.info("QR survey codes are signed with the key from %s", survey_key_source)
    surveys = SurveyService(
        settings, clock, SurveyCodes(survey_secret), lambda: holder.directory, ratings.store_batch, texts,
        base_url=lambda: settings.public_url or http.url,
    )
    add_survey_routes(http_app, surveys, texts, secure_cookie=(settings.public_url or "").startswith("https://"))
    scheduler = DeadlineScheduler(clock, texts, lambda: holder.directory, settings.scheduler_interval_seconds, notify)
    staff_service = StaffService(clock, on_org_change=holder.invalidate)
    comments = CommentService(clock, on_outbox=notify)
    device_health = DeviceHealthService(settings, clock, texts, lambda: holder.directory, notify)
    ingest = MqttIngest(settings, lambda: holder.router, ratings.store_batch, clock)
    speech = SpeechService(
        settings, clock, texts, lambda: holder.directory, audio, transcriber or make_transcriber(settings), notify,
        fetch_voice=voice_fetcher(bot) if bot is not None else None,
    )

    # at once on PostgreSQL's pool; one after another on SQLite's single connection
    kpi = KpiService(clock, queries_at_once=not settings.database_url.startswith("sqlite"))
    reports = ReportService(clock, texts, kpi)
    digests = DigestService(
        clock, texts, kpi, lambda: holder.directory, reports.summary_text, settings.digest_time,
        settings.scheduler_interval_seconds, notify,
    )
    scoring = ScoreService(clock, texts, notify, checklist_code="desk-sales", audio_keep_days=settings.audio_keep_days)
    sampling = SamplingService(clock)
    calibration = CalibrationService(clock, texts, scoring, notify, checklist_code="desk-sales")
    scoring.add_submit_listener(lambda score: calibration.maybe_report(score.calibration_id))  # type: ignore[attr-defined]

    dp = Dispatcher(
        settings=settings, clock=clock, staff_service=staff_service, comments=comments, texts=texts, reports=reports,
        digests=digests, scoring=scoring, sampling=sampling, calibration=calibration,
    )
    dp["complaints"] = complaints
    dp["surveys"] = surveys
    dp["device_health"] = device_health
    dp.update.outer_middleware(StaffMiddleware(staff_service))
    locale = StaffLocaleMiddleware(i18n, settings.default_language)
    dp.message.middleware(locale)
    dp.callback_query.middleware(locale)
    dp.include_routers(
        common.make_router(), admin.make_router(), shifts.make_router(), reports_handlers.make_router(),
        scoring_handlers.make_router(), quality_handlers.make_router(), complaints_handlers.make_router(),
        qr_handlers.make_router(), devices_handlers.make_router(),
        group_comments.make_router(),
    )
    app = App(settings, clock, bot, dp, holder, ratings, outbox, scheduler, ingest, staff_service, comments, speech, retention, http, digests)
    app.pinned_models = pin_response_models()
    app.complaints = complaints
    app.surveys = surveys
    app.device_health = device_health
    app.kiosk_display = kiosk_display
    return app


def voice_fetcher(bot: Bot) -> Callable[[str], Awaitable[bytes]]:
    """Downloads a voice message's bytes by its Telegram file id (for transcribing comments)."""

    async def fetch(file_id: str) -> bytes:
        file = await bot.get_file(file_id)
        if not file.file_path:
            raise OSError(f"Telegram gave no file path for {file_id}")
        data = await bot.download_file(file.file_path)
        assert data is not None
        return data.read()

    return fetch


def pin_response_models() -> list[object]:
    """aiogram builds ``Response[T]`` per call and pydantic caches it only weakly: without a
    strong reference the model class is rebuilt (milliseconds) on every Bot API call."""
    from aiogram import methods
    from aiogram.methods.base import Response

    used = (
        methods.SendMessage, methods.SendVoice, methods.EditMessageText, methods.EditMessageReplyMarkup,
        methods.AnswerCallbackQuery, methods.GetUpdates, methods.GetMe, methods.DeleteMessage,
        methods.SetMyCommands, methods.SendPhoto, methods.SendDocument, methods.GetFile,
    )
    return [Response[method.__returning__] for method in used]  # type: ignore[name-defined]
