"""A negative's audio: cut the conversation around the press, post it, then its transcript.

Each case moves WAITING → PENDING → DONE (or NO_AUDIO / FAILED). The snippet and its voice
message are written in one transaction with the move to PENDING, so a crash during
transcription leaves only the transcript to redo after a restart; three failed attempts
mark the case FAILED and the group is told so plainly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from html import escape
from pathlib import Path

import numpy as np
from tortoise.transactions import in_transaction

from bot.audio import AudioService, read_file
from bot.clock import Clock, wait_first
from bot.directory import Directory
from bot.models import (
    AudioSegment,
    Conversation,
    ConversationKind,
    NegativeCase,
    OutboxKind,
    OutboxMessage,
    PresenceEvent,
    Rating,
    SpeechStatus,
)
from bot.settings import Settings
from bot.texts import Texts
from speech.audio import AudioError, decode_pcm, encode_ogg_opus, encode_wav
from speech.rules import RuleResult, RuleSet, highlight_html
from speech.snippets import Segment, cut, snippet_window
from speech.transcriber import Transcript, Transcriber, TranscriptionError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
TELEGRAM_TEXT_LIMIT = 4096
PRESENCE_LOOKBACK = timedelta(hours=1)


def split_message(header: str, lines: list[str], limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Telegram's 4,096-character limit: split between lines, a too-long line by characters."""
    chunks: list[str] = []
    current = header
    for line in lines:
        while len(line) > limit:
            chunks.append(current) if current else None
            chunks.append(line[:limit])
            current, line = "", line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


class SpeechService:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        texts: Texts,
        directory: Callable[[], Directory],
        audio: AudioService,
        transcriber: Transcriber | None,
        on_outbox: Callable[[], None] = lambda: None,
        fetch_voice: Callable[[str], Awaitable[bytes]] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._texts = texts
        self._directory = directory
        self._audio = audio
        self._transcriber = transcriber
        self._on_outbox = on_outbox
        self._snippets = settings.audio_dir / "snippets"
        self._comments = settings.audio_dir / "comments"
        self._fetch_voice = fetch_voice  # downloads a Telegram voice message by file id
        self._customer_attempts: dict[int, int] = {}  # rating id → failed transcriptions of its voice

    async def aclose(self) -> None:
        closer = getattr(self._transcriber, "aclose", None)
        if closer is not None:
            await closer()

    async def run(self, stop: asyncio.Event) -> None:
        # the first negative should not wait seconds for the model: load it while nothing happens
        preload = asyncio.create_task(self._preload(), name="whisper-preload") if self._model_is_local() else None
        try:
            while not stop.is_set():
                try:
                    busy = await self.run_once()
                except Exception:
                    log.exception("speech pass failed")
                    busy = False
                if not busy:
                    await wait_first(self._clock.sleep(1.0), stop.wait())
        finally:
            if preload is not None:
                await preload  # the load runs in a thread and cannot be cancelled: let it finish

    def _model_is_local(self) -> bool:
        """Packaged or on disk: loading cannot stall on a hub download nobody can reach."""
        model = self._settings.whisper_model
        return model.startswith("packaged:") or Path(model).is_dir()

    async def _preload(self) -> None:
        loader = getattr(self._transcriber, "load", None)
        if loader is None:
            return
        try:
            await loader()
        except Exception as error:  # noqa: BLE001 - reported again, per negative, when it is used
            log.warning("whisper model did not load at start: %s", error)

    async def run_once(self) -> bool:
        """One pass: negatives' snippets first (the group waits for them), then staff and customer
        voice comments, then calls."""
        now = self._clock.now()
        due = await NegativeCase.filter(
            speech_status__in=[SpeechStatus.WAITING, SpeechStatus.PENDING], speech_next_at__lte=now, message_id__isnull=False
        ).order_by("id").limit(5).select_related("rating", "office")
        for case in due:
            pcm = None
            if case.speech_status == SpeechStatus.WAITING:
                pcm = await self._cut(case, now)
            if case.speech_status == SpeechStatus.PENDING:
                await self._transcribe(case, pcm)
        comments = await NegativeCase.filter(comment_speech_status=SpeechStatus.PENDING).order_by("id").limit(5)
        for case in comments:
            await self._transcribe_comment(case)
        customers = await Rating.filter(customer_speech_status=SpeechStatus.PENDING).order_by("id").limit(5)
        for rating in customers:
            await self._transcribe_customer(rating)
        calls: list[Conversation] = []
        if not (due or comments or customers):  # calls wait for no one: they go when the group's work is done
            calls = await Conversation.filter(
                speech_status=SpeechStatus.PENDING, speech_next_at__lte=now, audio_path__isnull=False
            ).order_by("id").limit(2)
        for conversation in calls:
            await self._transcribe_conversation(conversation)
        return bool(due or comments or customers or calls)

    async def _presence_interval(self, case: NegativeCase) -> tuple[int, int | None] | None:
        rating = case.rating
        start = await PresenceEvent.filter(
            point_id=rating.point_id, state="start", ts__lte=rating.ts, ts__gte=rating.ts - PRESENCE_LOOKBACK  # type: ignore[attr-defined]
        ).order_by("-ts").first()
        if start is None:
            return None
        end = await PresenceEvent.filter(point_id=rating.point_id, state="end", ts__gte=start.ts).order_by("ts").first()  # type: ignore[attr-defined]
        return (_ms(start.ts), _ms(end.ts) if end else None)

    async def _cut(self, case: NegativeCase, now: datetime) -> np.ndarray | None:
        """Cut and post the snippet; returns its PCM so the transcript needs no second decode."""
        settings = self._settings
        rating = case.rating
        start_ms, end_ms = snippet_window(
            _ms(rating.ts), await self._presence_interval(case),
            before_s=settings.snippet_before_seconds, after_s=settings.snippet_after_seconds,
        )
        start, end = _dt(start_ms), _dt(end_ms)
        segments = await self._audio.segments_between(rating.point_id, start, end)  # type: ignore[attr-defined]
        covered_to = max((s.ended_at for s in segments), default=None)
        waited_enough = now >= end + timedelta(seconds=settings.snippet_wait_seconds)
        if (covered_to is None or covered_to < end) and not waited_enough:
            case.speech_next_at = now + timedelta(seconds=5)
            await case.save(update_fields=["speech_next_at"])
            return None
        locale = self._locale(case)
        if not segments:
            async with in_transaction():
                await NegativeCase.filter(id=case.id).update(speech_status=SpeechStatus.NO_AUDIO)
                await self._text(case, self._texts.t(locale, "No recording of this conversation was found."))
            case.speech_status = SpeechStatus.NO_AUDIO
            self._on_outbox()
            return None
        loop = asyncio.get_running_loop()
        paths = [(s.path, _ms(s.started_at)) for s in segments]
        try:
            ogg, seconds, gaps, pcm = await loop.run_in_executor(None, _make_snippet, paths, start_ms, end_ms)
        except (AudioError, OSError) as error:
            await self._failed(case, f"audio: {error}")
            return None
        self._snippets.mkdir(parents=True, exist_ok=True)
        path = self._snippets / f"case-{case.id}.ogg"
        await loop.run_in_executor(None, path.write_bytes, ogg)
        keep = now + timedelta(days=settings.audio_keep_days)
        caption = self._texts.t(locale, "Conversation around negative #{case}", case=case.id)
        if gaps:
            missing = sum(b - a for a, b in gaps) / 1000
            caption += " · " + self._texts.t(locale, "{seconds} s without recording", seconds=round(missing))
        async with in_transaction():
            await NegativeCase.filter(id=case.id).update(
                speech_status=SpeechStatus.PENDING, snippet_path=str(path), snippet_seconds=seconds, snippet_gaps=gaps,
                speech_next_at=now,
            )
            await AudioSegment.filter(id__in=[s.id for s in segments]).update(keep_until=keep)
            # the quality service samples and scores conversations: a negative's is one of them
            await Conversation.create(
                kind=ConversationKind.NEGATIVE, case_id=case.id, office_id=case.office_id,  # type: ignore[attr-defined]
                point_id=rating.point_id, staff_id=rating.staff_id, started_at=start, ended_at=end,  # type: ignore[attr-defined]
                audio_path=str(path), codec="opus", size_bytes=len(ogg), digest=hashlib.sha256(ogg).hexdigest(),
                received_at=now, keep_until=keep,
            )
            await OutboxMessage.create(
                chat_id=case.chat_id, kind=OutboxKind.VOICE, text=caption, file_path=str(path), file_seconds=seconds,
                reply_to_message_id=case.message_id, case_id=case.id, next_attempt_at=now, created_at=now,
            )
        case.speech_status, case.snippet_path, case.snippet_seconds = SpeechStatus.PENDING, str(path), seconds
        self._on_outbox()
        return pcm

    async def _transcribe(self, case: NegativeCase, pcm: np.ndarray | None = None) -> None:
        locale = self._locale(case)
        if self._transcriber is None or not case.snippet_path:
            await self._failed(case, "transcription is not configured")
            return
        office = self._directory().offices.get(case.office_id)  # type: ignore[attr-defined]
        try:
            audio = pcm if pcm is not None else Path(case.snippet_path)  # after a restart: the stored snippet
            transcript = await self._transcriber.transcribe(audio, language=office.language if office else "ru")
        except (TranscriptionError, OSError) as error:
            await self._failed(case, f"transcription: {error}")
            return
        header = "📝 " + self._texts.t(locale, "Transcript of negative #{case}", case=case.id)
        rules = office.rules if office else RuleSet()
        shown, result = check_transcript(transcript, rules)
        lines = highlight_html(shown, result).splitlines() or [self._texts.t(locale, "(no speech recognised)")]
        lines += self._rule_summary(locale, rules, result)
        heard = transcript_fields(transcript, shown, result)
        async with in_transaction():
            await NegativeCase.filter(id=case.id).update(speech_status=SpeechStatus.DONE, **heard)
            await Conversation.filter(case_id=case.id).update(speech_status=SpeechStatus.DONE, **heard)
            for chunk in split_message(header, lines):
                await self._text(case, chunk)
        case.speech_status = SpeechStatus.DONE
        self._on_outbox()

    def _rule_summary(self, locale: str, rules: RuleSet, result: RuleResult) -> list[str]:
        """One line under the transcript: what was said that must not be, and what was not said."""
        if not (rules.forbidden or rules.required):
            return []
        parts = []
        if result.forbidden_hits:
            words = ", ".join(sorted({escape(h.word.lower()) for h in result.forbidden_hits}))
            parts.append("❗ " + self._texts.t(locale, "forbidden: {words}", words=words))
        if result.required_missing:
            parts.append("⚠️ " + self._texts.t(locale, "not heard: {names}", names=escape(", ".join(result.required_missing))))
        if not parts:
            parts.append("✅ " + self._texts.t(locale, "speech rules met"))
        return ["", " · ".join(parts)]

    async def _transcribe_comment(self, case: NegativeCase) -> None:
        """A staff voice comment: fetch it from Telegram, keep it, transcribe it, refresh the post."""
        office = self._directory().offices.get(case.office_id)  # type: ignore[attr-defined]
        path = self._comments / f"case-{case.id}.ogg"
        try:
            if self._transcriber is None or self._fetch_voice is None or not case.comment_voice_file_id:
                raise TranscriptionError("unavailable", "transcription is not configured")
            data = await self._fetch_voice(case.comment_voice_file_id)
            await asyncio.get_running_loop().run_in_executor(None, _write_file, path, data)
            transcript = await self._hear(data, office.language if office else "ru")
        except Exception as error:  # noqa: BLE001 - Telegram, audio and model errors all end the same way
            attempts = case.comment_speech_attempts + 1
            log.warning("voice comment of negative #%s not transcribed (attempt %d): %s", case.id, attempts, error)
            status = SpeechStatus.FAILED if attempts >= MAX_ATTEMPTS else SpeechStatus.PENDING
            await NegativeCase.filter(id=case.id, comment_voice_file_id=case.comment_voice_file_id).update(
                comment_speech_status=status, comment_speech_attempts=attempts
            )
            return
        now = self._clock.now()
        async with in_transaction():
            # only if the comment is still the one we heard (a newer comment restarts the job)
            updated = await NegativeCase.filter(id=case.id, comment_voice_file_id=case.comment_voice_file_id).update(
                comment_speech_status=SpeechStatus.DONE, comment_transcript=transcript.text.strip()[:3000]
            )
            if updated and case.chat_id is not None:
                await _refresh_card(case.id, case.chat_id, now)
        self._on_outbox()

    async def _hear(self, data: bytes, language: str) -> Transcript:
        """A voice message's words: decoded by our decoder (untrusted bytes), then the model."""
        if self._transcriber is None:
            raise TranscriptionError("unavailable", "transcription is not configured")
        pcm = await asyncio.get_running_loop().run_in_executor(None, decode_pcm, data)
        return await self._transcriber.transcribe(pcm, language=language)

    async def _transcribe_customer(self, rating: Rating) -> None:
        """A kiosk customer's voice comment: transcribed, and the negative's card (if any) refreshed."""
        office = self._directory().offices.get(rating.office_id)  # type: ignore[attr-defined]
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, read_file, rating.customer_voice_path or "")
            transcript = await self._hear(data, office.language if office else "ru")
        except Exception as error:  # noqa: BLE001 - a vanished file, audio and model errors all end the same way
            # no attempts column on the rating: counted here, so a restart grants a few more tries
            attempts = self._customer_attempts.get(rating.id, 0) + 1
            log.warning("voice comment of rating #%s not transcribed (attempt %d): %s", rating.id, attempts, error)
            if attempts < MAX_ATTEMPTS:
                self._customer_attempts[rating.id] = attempts
                return
            self._customer_attempts.pop(rating.id, None)
            await self._customer_heard(rating, customer_speech_status=SpeechStatus.FAILED)
            return
        self._customer_attempts.pop(rating.id, None)
        await self._customer_heard(
            rating, customer_speech_status=SpeechStatus.DONE, customer_transcript=transcript.text.strip()[:3000]
        )

    async def _customer_heard(self, rating: Rating, **fields: object) -> None:
        """Store the outcome and, when the rating is a negative in a group, refresh its card."""
        now = self._clock.now()
        async with in_transaction():
            updated = await Rating.filter(id=rating.id, customer_speech_status=SpeechStatus.PENDING).update(**fields)
            case = await NegativeCase.filter(rating_id=rating.id, chat_id__isnull=False).first() if updated else None
            if case is not None:  # posted, or about to be: the refresh queues behind the post
                await _refresh_card(case.id, case.chat_id, now)  # type: ignore[arg-type]
        if case is not None:
            self._on_outbox()

    async def _transcribe_conversation(self, conversation: Conversation) -> None:
        """A phone call: transcribed and checked against its office's rules for the quality service."""
        office = self._directory().offices.get(conversation.office_id)  # type: ignore[attr-defined]
        try:
            if self._transcriber is None:
                raise TranscriptionError("unavailable", "transcription is not configured")
            transcript = await self._transcriber.transcribe(
                Path(conversation.audio_path or ""), language=office.language if office else "ru"
            )
        except (TranscriptionError, OSError) as error:
            attempts = conversation.speech_attempts + 1
            log.warning("conversation #%s not transcribed (attempt %d): %s", conversation.id, attempts, error)
            await Conversation.filter(id=conversation.id).update(
                speech_attempts=attempts, speech_error=str(error)[:2000],
                speech_status=SpeechStatus.FAILED if attempts >= MAX_ATTEMPTS else SpeechStatus.PENDING,
                speech_next_at=self._clock.now() + timedelta(seconds=5 * attempts),
            )
            return
        shown, result = check_transcript(transcript, office.rules if office else RuleSet())
        await Conversation.filter(id=conversation.id).update(
            speech_status=SpeechStatus.DONE, **transcript_fields(transcript, shown, result)
        )

    async def _failed(self, case: NegativeCase, error: str) -> None:
        attempts = case.speech_attempts + 1
        now = self._clock.now()
        log.warning("speech for negative #%s failed (attempt %d): %s", case.id, attempts, error)
        async with in_transaction():
            if attempts >= MAX_ATTEMPTS:
                await NegativeCase.filter(id=case.id).update(
                    speech_status=SpeechStatus.FAILED, speech_attempts=attempts, speech_error=error[:2000]
                )
                text = self._texts.t(self._locale(case), "Could not prepare the audio or transcript: {error}", error=escape(error[:300]))
                await self._text(case, text)
                case.speech_status = SpeechStatus.FAILED
            else:
                await NegativeCase.filter(id=case.id).update(
                    speech_attempts=attempts, speech_error=error[:2000], speech_next_at=now + timedelta(seconds=5 * attempts)
                )
                case.speech_status = None  # retried on a later pass
        self._on_outbox()

    async def _text(self, case: NegativeCase, text: str) -> None:
        now = self._clock.now()
        await OutboxMessage.create(
            chat_id=case.chat_id, kind=OutboxKind.TEXT, text=text, reply_to_message_id=case.message_id,
            next_attempt_at=now, created_at=now,
        )

    def _locale(self, case: NegativeCase) -> str:
        office = self._directory().offices.get(case.office_id)  # type: ignore[attr-defined]
        return office.language if office else self._settings.default_language


def check_transcript(transcript: Transcript, rules: RuleSet) -> tuple[str, RuleResult]:
    """The transcript as shown (one timestamped line per segment) and the rule hits in it.

    Rules run on the shown text so that highlights land exactly; timestamps are digits and
    brackets, which no rule word matches.
    """
    shown = transcript.with_timestamps()
    return shown, rules.check(shown)


def rule_hits_record(shown: str, result: RuleResult, transcript: Transcript) -> dict[str, object]:
    """What [4 of 6]'s automatic criteria read: each hit with the second it was said at."""
    line_starts = [0]
    for line in shown.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    spoken = [s for s in transcript.segments if s.text]

    def second(offset: int) -> float | None:
        line = next((i for i in range(len(line_starts) - 1) if line_starts[i] <= offset < line_starts[i + 1]), None)
        return round(spoken[line].start, 1) if line is not None and line < len(spoken) else None

    def hits(items: list) -> list[dict[str, object]]:
        return [{"rule": h.rule, "word": h.word, "at": second(h.start)} for h in items]

    return {
        "forbidden": hits(result.forbidden_hits),
        "required": {name: hits(found) for name, found in result.required_hits.items()},
        "missing": list(result.required_missing),
    }


def transcript_fields(transcript: Transcript, shown: str, result: RuleResult) -> dict[str, object]:
    """The columns a transcript fills, alike on a negative's case and on a conversation."""
    return {
        "transcript": transcript.text,
        "transcript_segments": [[s.start, s.end, s.text] for s in transcript.segments],
        "rule_hits": rule_hits_record(shown, result, transcript),
    }


async def _refresh_card(case_id: int, chat_id: int, now: datetime) -> None:
    """Re-render a negative's card in the group (a transcript arrived for it)."""
    await OutboxMessage.create(chat_id=chat_id, kind=OutboxKind.CASE_REFRESH, case_id=case_id, next_attempt_at=now, created_at=now)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _make_snippet(
    paths: list[tuple[str, int]], start_ms: int, end_ms: int
) -> tuple[bytes, float, list[list[int]], np.ndarray]:
    """Decode the segments, cut the window sample-exactly, encode Ogg/Opus (runs in an executor)."""
    segments = []
    for path, segment_start in paths:
        try:
            segments.append(Segment(segment_start, decode_pcm(read_file(path))))
        except AudioError as error:
            log.warning("segment %s skipped: %s", path, error)
    result = cut(segments, start_ms, end_ms)
    if not result.has_audio:
        raise AudioError("corrupt", "no segment in the window could be decoded")
    return encode_ogg_opus(result.pcm), result.duration_s, [list(g) for g in result.gaps], result.pcm


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(ms / 1000, UTC)


__all__ = ["SpeechService", "encode_wav", "split_message"]
