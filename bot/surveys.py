"""QR surveys on a phone: what a ``/r/{code}`` page shows and what a submission becomes.

A printed QR code carries a signed code (:mod:`bot.survey_codes`) naming a point or an
employee. :class:`SurveyService` resolves it against the org snapshot, checks a submitted form,
applies the per-address and per-phone limits (:mod:`bot.rate_limit`), marks a phone rating the
same target again within ``SURVEY_REPEAT_MINUTES`` as a repeat, and stores the rating through
:meth:`bot.ratings.RatingService.store_batch` like a button press: a negative opens a case and
is posted into the office group, and the tallies and reports count it. The HTTP side
(``devices/survey_web.py``) only parses requests and renders HTML.

Choices worth knowing:

* **No CSRF token.** A submission needs no credentials: its only authority is the signed code
  anyone holding the printed card has. A forged cross-site POST could do no more than the
  attacker can do directly (and the phone cookie is ``SameSite=Lax``, so it is not even sent
  on one). Abuse is bounded by the limits instead. The form does carry a random **nonce**,
  but for idempotency, not security: the rating's ``event_uid`` is derived from the code and
  the nonce, so a double tap or a reload of the thank-you page stores the rating once.
* **Phone key**: a long-lived random cookie set on the page; without it (cookies off, a bare
  client), a hash of address and User-Agent. ``device_id`` is ``qr:`` + a short hash of it, so
  the button's repeated-press rule (``REPEAT_PRESS_SECONDS``) applies to phones as well.
* **Limits** (in memory, per process): ``SURVEY_IP_PER_MINUTE`` POSTs per address in any 60 s
  (bad codes count too: guessing is throttled), and :data:`PHONE_LIMIT` submissions per phone
  and target in :data:`PHONE_WINDOW_SECONDS`. ``X-Forwarded-For`` is not trusted: behind a
  reverse proxy every customer has the proxy's address (raise ``SURVEY_IP_PER_MINUTE``).
* **Unknown reasons are ignored**, not rejected: a page opened before the office's list
  changed must not lose the customer's rating; codes the office does not offer are dropped
  (and counted in the result), the rest are kept.
* **Group commit**: concurrent submissions are stored together in one ``store_batch``
  transaction (each request answered when its batch has committed), which is what lets
  one process take a thousand submissions a second on SQLite.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.clock import Clock
from bot.directory import Directory, OfficeInfo, PointInfo, ReasonInfo
from bot.errors import AccessDenied, NotFound
from bot.models import Role, Shift, Staff
from bot.rate_limit import RepeatDetector, SlidingWindowLimiter, clock_seconds
from bot.ratings import BatchResult, Received
from bot.settings import Settings
from bot.survey_codes import SurveyCodes, SurveyTarget, TargetKind
from bot.texts import Texts, _
from devices.contract import InboundMessage, RatingEvent

__all__ = [
    "MAX_COMMENT",
    "PHONE_LIMIT",
    "PHONE_WINDOW_SECONDS",
    "W",
    "Submission",
    "SurveyError",
    "SurveyPage",
    "SurveyService",
    "TableTent",
    "load_survey_secret",
    "phone_key",
]

log = logging.getLogger(__name__)

MAX_COMMENT = 2000  # characters of the customer's comment
MAX_REASONS = 32  # reason fields in one form; more is not a browser
MAX_NONCE = 64
PHONE_LIMIT = 5  # submissions of one phone for one target …
PHONE_WINDOW_SECONDS = 600.0  # … in any ten minutes
IP_WINDOW_SECONDS = 60.0
MAX_BATCH = 500
COMMIT_WAIT_SECONDS = 0.004  # how long a batch collects company before it is stored
SECRET_LABEL = b"loyalty-desk/survey-secret/v1"
KEY_FILE = "survey.key"
VALUES = ("good", "neutral", "bad")


class W:
    """What the survey pages and the table tent say (msgids; Russian in ``bot/locales/ru.yaml``)."""

    PAGE_TITLE = _("Rate our service")
    HOW = _("How were you served?")
    EMPLOYEE = _("Employee: {name}")
    GOOD = _("Good")
    NEUTRAL = _("So-so")
    BAD = _("Bad")
    REASONS = _("What went wrong? Choose one or several")
    COMMENT = _("Comment (optional)")
    COMMENT_HINT = _("What should we know? Up to {max} characters")
    SEND = _("Send")
    PRIVACY = _("Anonymous: we do not ask for your name or phone number.")
    CHOOSE = _("Please choose one of the three answers.")
    THANKS = _("Thank you!")
    THANKS_GOOD = _("We are glad you liked it.")
    REVIEW_ASK = _("Would you tell others about us? It takes a minute.")
    REVIEW_LINK = _("Leave a review")
    THANKS_NEUTRAL = _("Thank you for your feedback: it helps us do better.")
    THANKS_BAD = _("We are sorry it went wrong. The office will look into your feedback.")
    NOT_FOUND_TITLE = _("Page not found")
    NOT_FOUND = _("This QR code is not valid or is no longer in use. Please scan the code at the desk again.")
    TOO_MANY_TITLE = _("Too many reviews")
    TOO_MANY = _("Too many reviews in a row, please try again in a minute.")
    BAD_FORM_TITLE = _("Something is wrong with the form")
    TOO_LONG = _("The comment is too long: at most {max} characters, please shorten it.")
    BAD_VALUE = _("This answer is not one we know. Please open the page again and choose one of the three answers.")
    BAD_FORM = _("The form could not be read. Please open the page again.")
    TOO_LARGE = _("The form is too large. Please shorten the comment.")
    FAILED_TITLE = _("Not saved")
    FAILED = _("We could not save your feedback just now. Please try again in a minute.")
    BACK = _("Back to the form")
    TENT_TITLE = _("Rate our service")
    TENT_CTA = _("Point your phone's camera at the code: three taps, anonymous, no app needed.")


@dataclass(frozen=True, slots=True)
class SurveyPage:
    """What a valid code names, resolved now: the point rated and, for a staff code, who."""

    code: str
    kind: TargetKind
    target_id: int
    point: PointInfo
    reasons: tuple[ReasonInfo, ...]
    staff_code: str | None = None
    staff_name: str | None = None
    stale: bool = False  # signed with a previous secret: the card should be reprinted

    @property
    def office(self) -> OfficeInfo:
        return self.point.office


@dataclass(frozen=True, slots=True)
class Submission:
    """A parsed form, not yet checked (``value`` may be anything the client sent)."""

    value: str | None
    reasons: tuple[str, ...] = ()
    comment: str = ""
    nonce: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    page: SurveyPage
    value: str
    event_uid: str
    repeat: bool
    ignored_reasons: tuple[str, ...] = ()


class SurveyError(Exception):
    """A request we answer with a human page: ``status`` and the msgid that explains it."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: float = 0.0,
                 page: SurveyPage | None = None, params: dict[str, object] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.page = page  # set for a form to show again (422: no answer chosen)
        self.params = params or {}


@dataclass(frozen=True, slots=True)
class TableTent:
    """Everything ``charts.qr.render_table_tent`` needs, in the office's language."""

    url: str
    title: str
    call_to_action: str
    point_label: str
    office_name: str
    filename: str


def load_survey_secret(settings: Settings) -> tuple[bytes, str]:
    """The secret that signs survey codes and where it came from.

    ``SURVEY_SECRET`` if set; else derived from ``BOT_TOKEN`` (HMAC with a fixed label, so the
    token itself never signs anything); else a random key kept in ``survey.key`` beside the
    SQLite database (``data/survey.key`` for PostgreSQL), created on first use, so printed
    codes survive restarts. Set ``SURVEY_SECRET`` in production: a revoked bot token would
    otherwise invalidate every printed card.
    """
    if settings.survey_secret is not None and settings.survey_secret.get_secret_value():
        return settings.survey_secret.get_secret_value().encode(), "SURVEY_SECRET"
    if settings.bot_token is not None and settings.bot_token.get_secret_value():
        token = settings.bot_token.get_secret_value().encode()
        return hmac.new(token, SECRET_LABEL, hashlib.sha256).hexdigest().encode(), "BOT_TOKEN"
    path = key_file(settings)
    if path.exists():
        secret = path.read_text(encoding="ascii").strip().encode()
        if len(secret) >= 32:
            return secret, str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret.decode() + "\n")
    os.replace(tmp, path)
    log.info("survey codes: generated a signing key in %s (set SURVEY_SECRET to choose one)", path)
    return secret, str(path)


def key_file(settings: Settings) -> Path:
    url = settings.database_url
    if url.startswith("sqlite://"):
        db_path = url[len("sqlite://"):].split("?", 1)[0]
        if db_path and db_path != ":memory:":
            return Path(db_path).parent / KEY_FILE
    return Path("data") / KEY_FILE


def phone_key(cookie: str | None, address: str, user_agent: str) -> str:
    """Who is submitting, as well as we can tell without asking: the cookie, else address + UA."""
    if cookie:
        return "c:" + cookie
    return "a:" + hashlib.sha256(f"{address}\x00{user_agent}".encode("utf-8", "replace")).hexdigest()[:32]


class _GroupCommit:
    """Stores submissions that arrive together in one ``store_batch`` call.

    The first submission starts a drain task, which waits ``wait`` seconds (4 ms) for company
    and stores what has come; whatever arrives while a batch is being stored forms the next
    one, so under load batches grow by themselves (a store costs a dozen queries whatever its
    size: fewer, bigger transactions are what let one process keep up). A batch that fails is
    retried one by one, so one bad submission cannot take the others with it.
    """

    def __init__(self, store: Callable[[Sequence[Received]], Awaitable[BatchResult]], max_batch: int = MAX_BATCH,
                 wait: float = COMMIT_WAIT_SECONDS) -> None:
        self._store = store
        self._max = max_batch
        self.wait = wait
        self._pending: list[tuple[Received, asyncio.Future[None]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.stored = 0

    async def write(self, item: Received) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="survey-commit")
        await asyncio.shield(future)  # a client that goes away does not unstore its rating

    async def _drain(self) -> None:
        while self._pending:
            if self.wait > 0 and len(self._pending) < self._max:
                await asyncio.sleep(self.wait)  # let the submissions arriving now share the transaction
            batch, self._pending = self._pending[: self._max], self._pending[self._max:]
            try:
                await self._store([item for item, _ in batch])
            except asyncio.CancelledError:
                for _item, future in batch + self._pending:  # nobody waits forever for a cancelled store
                    _settle(future, RuntimeError("the service is stopping"))
                self._pending = []
                raise
            except Exception as error:
                if len(batch) == 1:
                    log.exception("storing a QR survey submission failed")
                    _settle(batch[0][1], error)
                    continue
                log.warning("storing %d QR survey submissions together failed (%s); one by one", len(batch), error)
                for item, future in batch:
                    try:
                        await self._store([item])
                    except Exception as single:
                        log.exception("storing a QR survey submission failed")
                        _settle(future, single)
                    else:
                        self.stored += 1
                        _settle(future, None)
                continue
            self.batches += 1
            self.stored += len(batch)
            for _item, future in batch:
                _settle(future, None)

    async def aclose(self) -> None:
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


@dataclass
class SurveyService:
    """Resolves codes, checks and stores submissions, and prepares table tents for ``/qr``."""

    settings: Settings
    clock: Clock
    codes: SurveyCodes
    directory: Callable[[], Directory]
    store: Callable[[Sequence[Received]], Awaitable[BatchResult]]
    texts: Texts
    base_url: Callable[[], str] = field(default=lambda: "http://127.0.0.1:8080")
    ip_limiter: SlidingWindowLimiter = field(init=False)
    phone_limiter: SlidingWindowLimiter = field(init=False)
    repeats: RepeatDetector | None = field(init=False)
    writer: _GroupCommit = field(init=False)
    _parse: Callable[[str], SurveyTarget | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        now = clock_seconds(self.clock)
        self.ip_limiter = SlidingWindowLimiter(self.settings.survey_ip_per_minute, IP_WINDOW_SECONDS, now=now)
        self.phone_limiter = SlidingWindowLimiter(PHONE_LIMIT, PHONE_WINDOW_SECONDS, now=now)
        minutes = self.settings.survey_repeat_minutes
        self.repeats = RepeatDetector(minutes * 60.0, now=now) if minutes > 0 else None
        self.writer = _GroupCommit(self.store)
        # a handful of printed codes are scanned over and over: parse each once (HMAC + base32)
        self._parse = functools.lru_cache(maxsize=4096)(self.codes.parse)

    # --- codes and pages -----------------------------------------------------------------

    def url(self, code: str) -> str:
        return f"{self.base_url().rstrip('/')}/r/{code}"

    async def page(self, code: str) -> SurveyPage | None:
        """The page a code opens, or ``None`` for a bad signature or a target that is gone."""
        target = self._parse(code) if isinstance(code, str) and len(code) <= 64 else None
        if target is None:
            return None
        directory = self.directory()
        if target.kind == "point":
            point = directory.points_by_id.get(target.target_id)
            if point is None:
                return None
            return SurveyPage(code, "point", point.id, point, tuple(directory.office_reasons(point.office.id)),
                              stale=target.stale)
        person = await Staff.get_or_none(id=target.target_id, active=True)
        if person is None:
            return None
        point = await self.staff_point(person.id, person.office_id, directory)  # type: ignore[attr-defined]
        if point is None:
            return None
        return SurveyPage(code, "staff", person.id, point, tuple(directory.office_reasons(point.office.id)),
                          staff_code=person.code, staff_name=person.name, stale=target.stale)

    async def staff_point(self, staff_id: int, office_id: int | None, directory: Directory) -> PointInfo | None:
        """Where a rating of this employee belongs now: the point of their open shift, else the
        point the roster has them at, else their office's first point."""
        for point_id in await Shift.filter(staff_id=staff_id, ended_at__isnull=True).order_by("-started_at").values_list(
            "point_id", flat=True
        ):
            if point_id in directory.points_by_id:
                return directory.points_by_id[point_id]
        now = self.clock.now()
        for point_id, slots in directory.roster.items():
            point = directory.points_by_id.get(point_id)
            if point is None:
                continue
            local = now.astimezone(point.office.tz)
            if any(slot.staff_id == staff_id and slot.covers(local) for slot in slots):
                return point
        if office_id is not None:
            own = [p for p in directory.points_by_id.values() if p.office.id == office_id]
            if own:
                return min(own, key=lambda p: p.id)
        return None

    # --- submissions -----------------------------------------------------------------------

    def count_bad_code(self, address: str) -> float:
        """A page asked for with a bad code counts against the address (guessing is throttled);
        returns the seconds to wait if the address is over its limit, else 0."""
        decision = self.ip_limiter.hit(address)
        return 0.0 if decision.allowed else decision.retry_after

    async def submit(self, code: str, form: Submission, phone: str, address: str) -> Stored:
        """Check and store one submission; raises :class:`SurveyError` with what to answer."""
        decision = self.ip_limiter.hit(address)
        if not decision.allowed:
            raise SurveyError(429, "ip_limit", W.TOO_MANY, retry_after=decision.retry_after)
        page = await self.page(code)
        if page is None:
            raise SurveyError(404, "bad_code", W.NOT_FOUND)
        if form.value is None or form.value == "":
            raise SurveyError(422, "no_value", W.CHOOSE, page=page)
        if form.value not in VALUES:
            raise SurveyError(400, "bad_value", W.BAD_VALUE, page=page)
        if len(form.comment) > MAX_COMMENT:
            raise SurveyError(400, "too_long", W.TOO_LONG, page=page, params={"max": MAX_COMMENT})
        if len(form.reasons) > MAX_REASONS or (form.nonce is not None and len(form.nonce) > MAX_NONCE):
            raise SurveyError(400, "bad_form", W.BAD_FORM, page=page)
        target = (page.kind, page.target_id)
        decision = self.phone_limiter.hit((phone, target))
        if not decision.allowed:
            raise SurveyError(429, "phone_limit", W.TOO_MANY, retry_after=decision.retry_after)
        repeat = self.repeats.is_repeat(phone, target) if self.repeats is not None else False

        offered = {reason.code for reason in page.reasons}
        chosen = tuple(dict.fromkeys(form.reasons))
        kept = tuple(code for code in chosen if code in offered)
        ignored = tuple(code for code in chosen if code not in offered)
        nonce = form.nonce or uuid.uuid4().hex
        digest = hashlib.sha256(f"{page.code.lower()}\x00{nonce}".encode()).hexdigest()[:40]
        event_uid = f"qr:{digest}"
        now = self.clock.now()
        text = form.comment.strip() or None
        event = RatingEvent(
            event_uid=event_uid, site=page.office.code, point=page.point.code,
            device_id="qr:" + hashlib.sha256(phone.encode()).hexdigest()[:16], value=form.value, ts=now,
            channel="qr", staff=page.staff_code, reasons=kept, text=text, repeat=repeat,
        )
        message = InboundMessage(f"qr/{page.code}"[:500], b"", False, now)
        try:
            await self.writer.write(Received(message, [event]))
        except Exception:
            raise SurveyError(503, "store_failed", W.FAILED, retry_after=60) from None
        if ignored:
            log.info("QR survey %s: ignored reasons the office does not offer: %s", page.code, ", ".join(ignored))
        return Stored(page, form.value, event_uid, repeat, ignored)

    async def aclose(self) -> None:
        """Wait for the batch in hand (call after the HTTP server has stopped)."""
        await self.writer.aclose()

    # --- /qr ---------------------------------------------------------------------------------

    async def table_tent(self, staff: Staff, words: Sequence[str]) -> TableTent:
        """The table tent for ``MSK-1/W1`` (or ``W1`` in one's own office) or ``staff CODE``;
        admins anywhere, managers in their own office; raises ``AccessDenied``/``NotFound``."""
        if staff.role not in (Role.ADMIN, Role.MANAGER):
            raise AccessDenied(_("QR codes for table tents are printed by admins and office managers."))
        if not words:
            raise NotFound(_("Write it as /qr OFFICE/POINT (e.g. /qr MSK-1/W1) or /qr staff CODE."))
        directory = self.directory()
        own_office = staff.office_id  # type: ignore[attr-defined]
        if words[0].lower() in ("staff", "сотрудник") and len(words) >= 2:
            person = await Staff.get_or_none(code=words[1], active=True)
            if person is None or (staff.role != Role.ADMIN and person.office_id != own_office):  # type: ignore[attr-defined]
                raise NotFound(_("No staff member with code {code} in your offices."), code=words[1])
            point = await self.staff_point(person.id, person.office_id, directory)  # type: ignore[attr-defined]
            if point is None:
                raise NotFound(_("{name} has no office and no point: nowhere to file the ratings."), name=person.name)
            code = self.codes.make("staff", person.id)
            office = point.office
            label = person.name
            filename = f"qr-{office.code}-{person.code}"
        else:
            text = words[0]
            office_code, sep, point_code = text.partition("/")
            if not sep:
                own = directory.offices.get(own_office) if own_office is not None else None
                office_code, point_code = (own.code if own else ""), text
            point = directory.points.get((office_code, point_code))
            if point is None:
                lowered = {(o.lower(), p.lower()): info for (o, p), info in directory.points.items()}
                point = lowered.get((office_code.lower(), point_code.lower()))
            if point is None or (staff.role != Role.ADMIN and point.office.id != own_office):
                raise NotFound(_("No point {code}; write it as OFFICE/POINT."), code=text)
            code = self.codes.make("point", point.id)
            office = point.office
            label = point.name
            filename = f"qr-{office.code}-{point.code}"
        lang = office.language if office.language in ("ru", "en") else "ru"
        return TableTent(
            url=self.url(code),
            title=self.texts.t(lang, W.TENT_TITLE),
            call_to_action=self.texts.t(lang, W.TENT_CTA),
            point_label=label,
            office_name=office.name,
            filename=filename,
        )
