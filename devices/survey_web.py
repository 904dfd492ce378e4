"""``/r/{code}``: the QR survey page a customer's phone opens, and its form's submission.

Transport and HTML only; :class:`bot.surveys.SurveyService` decides. The page is one small
HTML document with inline CSS: no framework, no script, no CDN, nothing fetched after it, so
it opens fast on a weak mobile connection and works with JavaScript off. The rating is three
big radio buttons; the reasons show once «so-so» or «bad» is chosen (pure CSS, ``:checked ~``;
without CSS they are simply always there); everything is escaped with :func:`html.escape`. The
faces are emoji that even a plain DejaVu Sans has (😊 😐 😞), so no phone shows an empty box.

Every answer carries ``Content-Security-Policy`` (nothing but inline styles and a same-origin
form), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (the code in the
URL does not leak to the review site), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``.

Language: English when the office's language is ``en`` or the browser's ``Accept-Language``
ranks English above Russian; Russian otherwise. The client's address is the TCP peer's:
``X-Forwarded-For`` is not trusted (anyone could send one to dodge the per-address limit).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import secrets
from html import escape
from typing import Final
from urllib.parse import parse_qsl

from aiohttp import hdrs, web

from bot.surveys import MAX_COMMENT, W, Submission, SurveyError, SurveyPage, SurveyService, Stored, phone_key
from bot.texts import Texts

__all__ = ["COOKIE", "MAX_FORM_BYTES", "SURVEY_PATH", "add_survey_routes", "pick_locale"]

log = logging.getLogger(__name__)

SURVEY_PATH: Final = "/r/{code}"
COOKIE: Final = "ld_phone"
COOKIE_MAX_AGE: Final = 2 * 365 * 24 * 3600
MAX_FORM_BYTES: Final = 64 * 1024  # a 2,000-character comment percent-encoded is under 20 KB
_COOKIE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{22}$")
_FORM_TYPE: Final = "application/x-www-form-urlencoded"

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

CSS: Final = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:18px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1d2330;background:#f4f5f7}
main{max-width:32rem;margin:0 auto;padding:20px 16px 40px}
h1{font-size:1.6rem;line-height:1.2;margin:4px 0 6px}
.where{color:#5a6272;margin:0 0 18px}
.where b{color:#1d2330}
.card{background:#fff;border-radius:16px;padding:18px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:16px}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
fieldset{border:0;margin:0;padding:0;min-width:0}
legend{font-weight:600;margin-bottom:10px;padding:0}
.faces{display:flex;gap:10px}
.faces label{flex:1;display:flex;flex-direction:column;align-items:center;justify-content:center;min-height:104px;
 border:3px solid #d9dce3;border-radius:16px;background:#fff;cursor:pointer;font-weight:600;user-select:none}
.faces .e{font-size:2.6rem;line-height:1.1}
#v-good:checked~.card .faces label[for=v-good]{border-color:#1f9d55;background:#e9f8ef}
#v-neutral:checked~.card .faces label[for=v-neutral]{border-color:#d69e2e;background:#fdf6e3}
#v-bad:checked~.card .faces label[for=v-bad]{border-color:#d64545;background:#fdecec}
#v-good:focus-visible~.card .faces label[for=v-good],#v-neutral:focus-visible~.card .faces label[for=v-neutral],
#v-bad:focus-visible~.card .faces label[for=v-bad]{outline:3px solid #2b6cb0;outline-offset:2px}
#v-good:checked~.reasons{display:none}
.reasons label{display:flex;align-items:center;gap:12px;min-height:52px;padding:8px 4px;border-top:1px solid #eef0f3;cursor:pointer}
.reasons label:first-of-type{border-top:0}
.reasons input{width:26px;height:26px;flex:none;accent-color:#2b6cb0}
textarea{width:100%;min-height:120px;font:inherit;padding:12px;border:2px solid #d9dce3;border-radius:12px;resize:vertical}
textarea:focus{outline:none;border-color:#2b6cb0}
.hint{color:#5a6272;font-size:.9rem;margin:6px 0 0}
button,.big{display:block;width:100%;min-height:58px;border:0;border-radius:14px;background:#2b6cb0;color:#fff;
 font:inherit;font-weight:700;font-size:1.15rem;text-align:center;text-decoration:none;padding:16px;cursor:pointer}
.big{margin-top:14px}
.error{background:#fdecec;color:#9b2c2c;border-radius:12px;padding:12px 14px;margin-bottom:16px}
.note{color:#5a6272;font-size:.9rem;text-align:center;margin-top:14px}
.icon{font-size:3.4rem;text-align:center;margin:18px 0 4px}
.center{text-align:center}
a.back{display:inline-block;margin-top:16px;color:#2b6cb0;font-weight:600;padding:10px 0}
"""


@functools.lru_cache(maxsize=1024)  # browsers send a few dozen distinct headers
def pick_locale(office_language: str, accept_language: str | None) -> str:
    """``en`` for an English office or a browser that ranks English above Russian; else ``ru``."""
    if office_language == "en":
        return "en"
    best: dict[str, tuple[float, int]] = {}
    for position, part in enumerate((accept_language or "").split(",")[:32]):
        tag, _sep, params = part.strip().partition(";")
        primary = tag.strip().split("-", 1)[0].lower()
        if primary not in ("ru", "en"):
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and (primary not in best or quality > best[primary][0]):
            best[primary] = (quality, -position)
    if "en" in best and ("ru" not in best or best["en"] > best["ru"]):
        return "en"
    return "ru"


class _SurveyHandler:
    def __init__(self, surveys: SurveyService, texts: Texts, *, secure_cookie: bool) -> None:
        self._surveys = surveys
        self._texts = texts
        self._secure_cookie = secure_cookie

    # --- routes ------------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        page = await self._surveys.page(code)
        if page is None:
            retry = self._surveys.count_bad_code(_address(request))
            if retry:
                return self._too_many(request, None, retry)
            return self._not_found(request)
        locale = _locale(request, page)
        response = self._html(self._form(page, locale, nonce=secrets.token_urlsafe(16)), locale)
        self._ensure_cookie(request, response)
        return response

    async def post(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        try:
            form = await _read_form(request)
        except SurveyError as error:
            return self._error(request, None, error)
        cookie = _cookie(request)
        phone = phone_key(cookie, _address(request), request.headers.get(hdrs.USER_AGENT, ""))
        try:
            stored = await self._surveys.submit(code, form, phone, _address(request))
        except SurveyError as error:
            if error.status == 422 and error.page is not None:  # no answer chosen: the form again
                locale = _locale(request, error.page)
                body = self._form(error.page, locale, nonce=form.nonce or secrets.token_urlsafe(16),
                                  error=self._texts.t(locale, error.message), form=form)
                response = self._html(body, locale, status=422)
                self._ensure_cookie(request, response)
                return response
            return self._error(request, error.page, error)
        locale = _locale(request, stored.page)
        response = self._html(self._thanks(stored, locale), locale)
        self._ensure_cookie(request, response)
        return response

    # --- pages -------------------------------------------------------------------------------

    def _form(self, page: SurveyPage, locale: str, *, nonce: str, error: str | None = None,
              form: Submission | None = None) -> str:
        t = lambda msgid, **params: escape(self._texts.t(locale, msgid, **params))  # noqa: E731
        chosen_value = form.value if form else None
        chosen_reasons = set(form.reasons) if form else set()
        radios = "".join(
            f'<input class="vh" type="radio" name="value" id="v-{value}" value="{value}"'
            f'{" checked" if chosen_value == value else ""}>'
            for value in ("good", "neutral", "bad")
        )
        faces = "".join(
            f'<label for="v-{value}"><span class="e" aria-hidden="true">{icon}</span>{t(label)}</label>'
            for value, icon, label in (("good", "😊", W.GOOD), ("neutral", "😐", W.NEUTRAL), ("bad", "😞", W.BAD))
        )
        reasons = ""
        if page.reasons:
            items = "".join(
                f'<label><input type="checkbox" name="reason" value="{escape(reason.code)}"'
                f'{" checked" if reason.code in chosen_reasons else ""}>'
                f"<span>{escape(reason.text(locale))}</span></label>"
                for reason in page.reasons
            )
            reasons = f'<div class="card reasons"><fieldset><legend>{t(W.REASONS)}</legend>{items}</fieldset></div>'
        staff = f"<br>{t(W.EMPLOYEE, name=page.staff_name)}" if page.staff_name else ""
        comment = escape(form.comment) if form else ""
        error_html = f'<div class="error" role="alert">{escape(error)}</div>' if error else ""
        return (
            f"<h1>{t(W.PAGE_TITLE)}</h1>"
            f'<p class="where"><b>{escape(page.point.name)}</b> · {escape(page.office.name)}{staff}</p>'
            f"{error_html}"
            f'<form method="post" action="/r/{escape(page.code)}" accept-charset="utf-8">'
            f'<input type="hidden" name="nonce" value="{escape(nonce)}">'
            f"{radios}"
            f'<div class="card"><fieldset><legend>{t(W.HOW)}</legend><div class="faces">{faces}</div></fieldset></div>'
            f"{reasons}"
            f'<div class="card"><label for="comment"><b>{t(W.COMMENT)}</b></label>'
            f'<p class="hint">{t(W.COMMENT_HINT, max=MAX_COMMENT)}</p>'
            f'<textarea id="comment" name="comment" maxlength="{MAX_COMMENT}" rows="4">{comment}</textarea></div>'
            f"<button type=\"submit\">{t(W.SEND)}</button>"
            f'<p class="note">{t(W.PRIVACY)}</p>'
            "</form>"
        )

    def _thanks(self, stored: Stored, locale: str) -> str:
        t = lambda msgid, **params: escape(self._texts.t(locale, msgid, **params))  # noqa: E731
        office = stored.page.office
        if stored.value == "good":
            body = f'<p class="center">{t(W.THANKS_GOOD)}</p>'
            url = office.review_url or ""
            if url.startswith(("https://", "http://")):
                title = escape(office.review_title) if office.review_title else t(W.REVIEW_LINK)
                body += (
                    f'<p class="center">{t(W.REVIEW_ASK)}</p>'
                    f'<a class="big" id="review" href="{escape(url)}" rel="noopener noreferrer">{title}</a>'
                )
            icon = "😊"
        elif stored.value == "neutral":
            body, icon = f'<p class="center">{t(W.THANKS_NEUTRAL)}</p>', "✔"
        else:
            body, icon = f'<p class="center">{t(W.THANKS_BAD)}</p>', "✔"
        return f'<div class="icon" aria-hidden="true">{icon}</div><h1 class="center">{t(W.THANKS)}</h1>{body}'

    def _message(self, locale: str, title: str, text: str, back: str | None = None) -> str:
        link = f'<a class="back" href="{escape(back)}">← {escape(self._texts.t(locale, W.BACK))}</a>' if back else ""
        return (
            f'<div class="icon" aria-hidden="true">⚠</div><h1 class="center">{escape(self._texts.t(locale, title))}</h1>'
            f'<p class="center">{escape(text)}</p><p class="center">{link}</p>'
        )

    def _html(self, body: str, locale: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        title = escape(self._texts.t(locale, W.PAGE_TITLE))
        document = (
            f'<!doctype html><html lang="{locale}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<meta name="robots" content="noindex,nofollow">'
            f"<title>{title}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>"
        )
        return web.Response(text=document, status=status, content_type="text/html", charset="utf-8",
                            headers={**SECURITY_HEADERS, **(headers or {})})

    # --- refusals ----------------------------------------------------------------------------

    def _not_found(self, request: web.Request) -> web.Response:
        locale = pick_locale("ru", request.headers.get(hdrs.ACCEPT_LANGUAGE))
        text = self._texts.t(locale, W.NOT_FOUND)
        return self._html(self._message(locale, W.NOT_FOUND_TITLE, text), locale, status=404)

    def _too_many(self, request: web.Request, page: SurveyPage | None, retry_after: float) -> web.Response:
        locale = _locale(request, page)
        text = self._texts.t(locale, W.TOO_MANY)
        seconds = str(max(1, math.ceil(retry_after)))
        return self._html(self._message(locale, W.TOO_MANY_TITLE, text), locale, status=429,
                          headers={hdrs.RETRY_AFTER: seconds})

    def _error(self, request: web.Request, page: SurveyPage | None, error: SurveyError) -> web.Response:
        log.info("QR survey %s from %s: %d %s", request.match_info.get("code", "")[:40], _address(request),
                 error.status, error.reason)
        if error.status == 429:
            return self._too_many(request, page, error.retry_after)
        if error.status == 404:
            return self._not_found(request)
        locale = _locale(request, page)
        title = W.FAILED_TITLE if error.status >= 500 else W.BAD_FORM_TITLE
        text = self._texts.t(locale, error.message, **error.params)
        back = f"/r/{page.code}" if page is not None else None
        headers = {hdrs.RETRY_AFTER: str(math.ceil(error.retry_after))} if error.retry_after else None
        return self._html(self._message(locale, title, text, back), locale, status=error.status, headers=headers)

    def _ensure_cookie(self, request: web.Request, response: web.Response) -> None:
        if _cookie(request) is None:
            response.set_cookie(COOKIE, secrets.token_urlsafe(16), max_age=COOKIE_MAX_AGE, path="/r/",
                                httponly=True, samesite="Lax", secure=self._secure_cookie or request.secure)


def _address(request: web.Request) -> str:
    return request.remote or "unknown"  # the TCP peer; X-Forwarded-For is not trusted


def _cookie(request: web.Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value and _COOKIE_RE.match(value) else None


def _locale(request: web.Request, page: SurveyPage | None) -> str:
    office_language = page.office.language if page is not None else "ru"
    return pick_locale(office_language, request.headers.get(hdrs.ACCEPT_LANGUAGE))


async def _read_form(request: web.Request) -> Submission:
    """The urlencoded form, bounded: a body over :data:`MAX_FORM_BYTES` is refused unread."""
    content_type = request.content_type
    if content_type != _FORM_TYPE:
        raise SurveyError(400, "bad_form", W.BAD_FORM)
    length = request.content_length
    if length is not None and length > MAX_FORM_BYTES:
        raise SurveyError(413, "too_large", W.TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    while True:  # read() returns what has arrived: loop to the end, never past the limit
        chunk = await request.content.read(MAX_FORM_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise SurveyError(413, "too_large", W.TOO_LARGE)
    body = b"".join(chunks)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise SurveyError(400, "bad_form", W.BAD_FORM) from None
    value: str | None = None
    reasons: list[str] = []
    comment = ""
    nonce: str | None = None
    for key, item in pairs:
        if key == "value":
            value = item
        elif key == "reason":
            reasons.append(item[:64])
        elif key == "comment":
            comment = item.replace("\r\n", "\n")
        elif key == "nonce":
            nonce = item or None
    return Submission(value, tuple(reasons), comment, nonce)


def add_survey_routes(app: web.Application, surveys: SurveyService, texts: Texts, *, secure_cookie: bool = False) -> None:
    """``GET`` and ``POST /r/{code}`` on ``app``; ``secure_cookie`` when the public URL is https."""
    handler = _SurveyHandler(surveys, texts, secure_cookie=secure_cookie)
    app.router.add_get(SURVEY_PATH, handler.get)
    app.router.add_post(SURVEY_PATH, handler.post)
