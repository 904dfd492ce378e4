"""Storing what devices said and deciding what it means: one transaction per ingest batch.

Everything a batch implies — the ratings, who was responsible, which are unreliable, the
negative cases with their deadlines, the outbox rows that will post them, anomaly alerts —
is written in the same transaction, so a crash leaves either all of it or none of it, and
the MQTT acknowledgement that follows the commit can never acknowledge a half-stored event.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tortoise.functions import Count, Max
from tortoise.transactions import in_transaction

from bot.audio import AudioOutcome, AudioService
from bot.clock import Clock
from bot.db import insert_many
from bot.directory import Directory, PointInfo
from bot.feedback import FeedbackService
from bot.models import (
    AnomalyAlert,
    DeadLetter,
    Device,
    ExclusionReason,
    NegativeCase,
    OutboxKind,
    OutboxMessage,
    PresenceEvent as PresenceRow,
    Rating,
    RatingReason,
    Shift,
    SpeechStatus,
)
from bot.settings import Settings
from bot.tallies import TallyKey, add_tally_counts
from bot.texts import Texts
from devices.contract import (
    AudioEvent,
    ComplaintEvent,
    Event,
    InboundMessage,
    NpsEvent,
    PayloadError,
    PresenceEvent,
    RatingEvent,
    StatusEvent,
)

log = logging.getLogger(__name__)

PRESENCE_LOOKBACK = timedelta(hours=12)


@dataclass(slots=True)
class Received:
    """One MQTT message after parsing: its events, or why it could not be parsed."""

    message: InboundMessage
    events: list[Event] = field(default_factory=list)
    error: PayloadError | None = None


@dataclass(slots=True)
class BatchResult:
    ratings: int = 0
    duplicates: int = 0
    presence: int = 0
    statuses: int = 0
    dead_letters: int = 0
    negatives: int = 0
    excluded: int = 0
    alerts: int = 0
    outbox_rows: int = 0
    audio: int = 0
    nps: int = 0
    complaints: int = 0
    kiosk_good: list[tuple[RatingEvent, PointInfo]] = field(default_factory=list)  # new good kiosk ratings


@dataclass(slots=True)
class _DeviceStatus:
    """One device's statuses in a batch, folded in time order."""

    online: bool | None = None
    offline_at: datetime | None = None  # the first ``offline`` since it was last online
    came_back: bool = False  # an ``online`` in this batch: a later ``offline`` is a new outage
    battery: int | None = None
    seen: datetime | None = None  # the latest live (not retained) message


@dataclass(slots=True)
class _NewRating:
    event: RatingEvent
    point: PointInfo
    staff_id: int | None = None
    excluded: ExclusionReason | None = None


_RATING_COLUMNS = (
    "event_uid", "device_id", "office_id", "point_id", "staff_id", "value", "ts", "received_at", "excluded_reason",
    "local_date", "local_hour", "channel", "customer_text", "customer_voice_path", "customer_speech_status",
)


class RatingService:
    """Turns parsed device events into rows; called by the ingest loop with a whole batch."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        texts: Texts,
        directory: Callable[[], Directory],
        on_outbox: Callable[[], None] = lambda: None,
        audio: AudioService | None = None,
        feedback: FeedbackService | None = None,
        on_kiosk_good: Callable[[list[tuple[RatingEvent, PointInfo]]], None] | None = None,
        on_complaints: Callable[[], None] = lambda: None,
    ) -> None:
        self._audio = audio
        self._feedback = feedback or FeedbackService(settings)
        self._on_kiosk_good = on_kiosk_good  # after the commit: the kiosk shows the review page
        self._on_complaints = on_complaints  # after the commit: new complaints are posted at once
        self._settings = settings
        self._clock = clock
        self._texts = texts
        self._directory = directory
        self._on_outbox = on_outbox
        self._repeat_window = timedelta(seconds=settings.repeat_press_seconds)
        self._grace = timedelta(seconds=settings.presence_grace_seconds)

    async def store_batch(self, batch: Sequence[Received]) -> BatchResult:
        result = BatchResult()
        directory = self._directory()
        now = self._clock.now()
        ratings: dict[str, RatingEvent] = {}
        presences: dict[str, PresenceEvent] = {}
        statuses: list[StatusEvent] = []
        audio: list[tuple[InboundMessage, AudioEvent]] = []
        nps: dict[str, NpsEvent] = {}
        complaints: dict[str, ComplaintEvent] = {}
        dead: list[DeadLetter] = []
        spoken: list[tuple[InboundMessage, RatingEvent]] = []  # ratings with the customer's voice
        for item in batch:
            if item.error is not None:
                dead.append(
                    DeadLetter(
                        topic=item.message.topic[:500],
                        payload=item.message.payload,
                        reason=item.error.reason,
                        detail=item.error.detail[:2000],
                        received_at=item.message.received_at,
                    )
                )
                continue
            for event in item.events:
                if isinstance(event, RatingEvent):
                    if event.voice is not None and event.event_uid not in ratings:
                        spoken.append((item.message, event))
                    ratings.setdefault(event.event_uid, event)
                elif isinstance(event, PresenceEvent):
                    presences.setdefault(event.event_uid, event)
                elif isinstance(event, AudioEvent):
                    audio.append((item.message, event))
                elif isinstance(event, NpsEvent):
                    nps.setdefault(event.event_uid, event)
                elif isinstance(event, ComplaintEvent):
                    complaints.setdefault(event.event_uid, event)
                else:
                    statuses.append(event)
        for message, event in audio:  # files first: a crash leaves an unindexed file, never a dangling row
            outcome = await self._audio.save(event) if self._audio else None
            if outcome is None or outcome.reason not in (None, "duplicate"):
                reason, detail = (outcome.reason, outcome.detail) if outcome else ("bad_topic", "audio is not enabled")
                dead.append(
                    DeadLetter(topic=message.topic[:500], payload=message.payload[:65536], reason=reason,
                               detail=(detail or "")[:2000], received_at=message.received_at)
                )
            elif outcome.stored:
                result.audio += 1
        voices = await self._save_voices(spoken, dead)

        async with in_transaction():
            if dead:
                await DeadLetter.bulk_create(dead)
                result.dead_letters = len(dead)
            if presences:
                result.presence = await self._store_presence(presences, directory)
            if statuses or ratings:  # a press is a sighting too: Device.last_seen
                result.statuses = await self._store_statuses(statuses, ratings.values())
            if ratings:
                await self._store_ratings(ratings, directory, now, result, voices)
            if nps or complaints:
                counts = await self._feedback.store(nps, complaints, directory, now)
                result.nps, result.complaints = counts.nps, counts.complaints
                result.duplicates += counts.duplicates
                result.dead_letters += counts.dead_letters
        if result.outbox_rows:
            self._on_outbox()
        if result.complaints:
            self._on_complaints()
        if result.kiosk_good and self._on_kiosk_good is not None:
            try:
                self._on_kiosk_good(result.kiosk_good)
            except Exception:  # the display is a courtesy: never let it fail a stored batch
                log.exception("queueing the kiosk display failed")
        return result

    async def _store_presence(self, events: dict[str, PresenceEvent], directory: Directory) -> int:
        existing = set(
            await PresenceRow.filter(event_uid__in=list(events)).values_list("event_uid", flat=True)
        )
        rows = []
        for uid, event in events.items():
            point = directory.points.get((event.site, event.point))
            if uid in existing or point is None:
                continue
            rows.append(
                PresenceRow(
                    event_uid=uid, point_id=point.id, state=event.state, ticket=event.ticket,
                    staff_code=event.staff, ts=event.ts, local_date=event.ts.astimezone(point.office.tz).date(),
                )
            )
        if rows:
            await PresenceRow.bulk_create(rows)
        return len(rows)

    async def _store_statuses(self, events: list[StatusEvent], presses: Iterable[RatingEvent] = ()) -> int:
        """Device health as the devices tell it; :class:`bot.device_health.DeviceHealthService`
        decides later what the admins hear, so nothing here sends anything.

        A batch folds per device into its last word on availability and battery (a battery
        heartbeat after an ``offline`` must not hide the ``offline``). Going offline stamps
        ``offline_since`` once: the retained ``offline`` that Mosquitto replays on subscribe for
        a device already known offline changes nothing, so a restart raises no second alert; a
        device seen offline for the first time (unknown or online before) starts its offline
        time at receipt. Coming back clears ``offline_since``; ``offline_alerted`` is left for
        the health service, which owes a "back online" message when it is set. A retained
        message is state, not a sighting: it leaves ``last_seen`` alone, while a press of a
        registered device moves it forward (never back: a queued press may be old). A status
        that names another site than the device's own is ignored (device ids are global).
        Returns how many devices reported a status (presses are not counted).
        """
        sites = self._directory().device_sites  # built once per org load, not per batch
        folded: dict[str, _DeviceStatus] = {}
        now = self._clock.now()
        for press in presses:
            if sites.get(press.device_id) == press.site:
                state = folded.setdefault(press.device_id, _DeviceStatus())
                seen = min(press.ts, now)  # a device clock running ahead does not reach the future
                state.seen = max(state.seen or seen, seen)
        reported: set[str] = set()
        for event in sorted(events, key=lambda e: e.ts):
            known_site = sites.get(event.device_id)
            if event.site is not None and known_site is not None and known_site != event.site:
                continue
            reported.add(event.device_id)
            state = folded.setdefault(event.device_id, _DeviceStatus())
            if not event.retained:
                state.seen = max(state.seen or event.ts, event.ts)
            if event.battery is not None:
                state.battery = event.battery
            if event.online is True:
                state.online, state.came_back, state.offline_at = True, True, None
            elif event.online is False and state.online is not False:
                state.online, state.offline_at = False, event.ts
        if not folded:
            return 0
        # Devices that only pressed (the common case: a batch of ratings) move last_seen forward
        # in one executemany; the guard in SQL keeps it from going back and skips unknown ids.
        sightings = [(state.seen, device_id) for device_id, state in folded.items() if device_id not in reported and state.seen]
        if sightings:
            await _advance_last_seen(sightings)
        folded = {device_id: state for device_id, state in folded.items() if device_id in reported}
        if not folded:
            return 0
        current = {
            device_id: (online, last_seen)
            for device_id, online, last_seen in await Device.filter(id__in=list(folded)).values_list("id", "online", "last_seen")
        }
        for device_id, state in folded.items():
            if device_id not in current:
                continue  # a native device that is not registered: nothing to keep
            online, last_seen = current[device_id]
            changes: dict[str, object] = {}
            if state.seen is not None and (last_seen is None or state.seen > last_seen):
                changes["last_seen"] = state.seen
            if state.battery is not None:
                changes["battery"] = state.battery
            if state.online is True:
                changes.update(online=True, offline_since=None)
            elif state.online is False and (state.came_back or online is not False):
                changes.update(online=False, offline_since=state.offline_at)
            if changes:
                await Device.filter(id=device_id).update(**changes)
        return sum(1 for device_id in reported if device_id in current)

    async def _save_voices(self, spoken: list[tuple[InboundMessage, RatingEvent]], dead: list[DeadLetter]) -> dict[str, str]:
        """Kiosk customers' voice comments into the audio store, before any row refers to them
        (a crash leaves a file nobody points to, never a row pointing at nothing). Audio that
        does not decode is dropped with a dead letter; its rating is kept."""
        voices: dict[str, str] = {}
        for message, event in spoken:
            assert event.voice is not None
            if self._audio is None:
                outcome = AudioOutcome(False, "bad_audio", "voice comment: audio is not enabled")
            else:
                outcome = await self._audio.save_voice(event.site, event.point, event.ts, event.voice)
            if outcome.path is not None:
                voices[event.event_uid] = outcome.path
                continue
            dead.append(
                DeadLetter(
                    topic=message.topic[:500], payload=event.voice[:65536], reason=outcome.reason or "bad_audio",
                    detail=f"{event.event_uid}: {outcome.detail or ''}; the rating was kept without it"[:2000],
                    received_at=message.received_at,
                )
            )
        return voices

    async def _store_ratings(
        self, events: dict[str, RatingEvent], directory: Directory, now: datetime, result: BatchResult,
        voices: dict[str, str] | None = None,
    ) -> None:
        existing = set(await Rating.filter(event_uid__in=list(events)).values_list("event_uid", flat=True))
        result.duplicates = len(existing)
        fresh: list[_NewRating] = []
        for uid, event in events.items():
            if uid in existing:
                continue
            point = directory.points.get((event.site, event.point))
            if point is None:  # the org changed under the router: keep the evidence
                await DeadLetter.create(
                    topic=f"{event.site}/{event.point}", payload=uid.encode(), reason="unknown_point",
                    detail=f"point {event.site}/{event.point} is no longer configured", received_at=now,
                )
                result.dead_letters += 1
                continue
            fresh.append(_NewRating(event, point))
        if not fresh:
            return
        fresh.sort(key=lambda r: r.event.ts)
        await self._mark_repeats(fresh)
        await self._resolve_presence_and_staff(fresh, directory)
        for r in fresh:  # a kiosk or QR customer who chose the employee they rate: that one
            if r.event.staff and r.event.staff in directory.staff_by_code:
                r.staff_id = directory.staff_by_code[r.event.staff]
        voices = voices or {}
        rows, tallies = [], Counter[TallyKey]()
        for r in fresh:
            local = r.event.ts.astimezone(r.point.office.tz)
            day, reason = local.date(), r.excluded.value if r.excluded is not None else None
            voice = voices.get(r.event.event_uid)
            rows.append((
                r.event.event_uid, r.event.device_id, r.point.office.id, r.point.id, r.staff_id, r.event.value,
                r.event.ts, now, reason, day, local.hour, r.event.channel, r.event.text,
                voice, SpeechStatus.PENDING.value if voice else None,
            ))
            tallies[(day, r.point.office.id, r.point.id, r.staff_id or 0, r.event.value, reason or "")] += 1
        await insert_many(Rating, _RATING_COLUMNS, rows)
        await add_tally_counts(tallies)
        await self._store_reasons([r for r in fresh if r.event.reasons], directory, now, result)
        result.ratings = len(rows)
        result.excluded = sum(1 for r in fresh if r.excluded)
        result.kiosk_good = [
            (r.event, r.point) for r in fresh if r.event.channel == "kiosk" and r.event.value == "good" and not r.excluded
        ]
        await self._open_cases(fresh, directory, now, result)
        await self._check_anomalies(fresh, directory, now, result)

    async def _store_reasons(self, chosen: list[_NewRating], directory: Directory, now: datetime, result: BatchResult) -> None:
        """Link the reasons customers picked; codes the office does not offer are kept as a dead
        letter (the kiosk's list is out of date) and the rating keeps the ones it does offer."""
        if not chosen:
            return
        ids = dict(await Rating.filter(event_uid__in=[r.event.event_uid for r in chosen]).values_list("event_uid", "id"))
        links, unknown = [], []
        for r in chosen:
            offered = {reason.code: reason.id for reason in directory.office_reasons(r.point.office.id)}
            for code in dict.fromkeys(r.event.reasons):
                if code in offered:
                    links.append(RatingReason(rating_id=ids[r.event.event_uid], reason_id=offered[code]))
                else:
                    unknown.append((r, code))
        if links:
            await RatingReason.bulk_create(links)
        for r, code in unknown:
            await DeadLetter.create(
                topic=f"{r.event.site}/{r.event.channel}/{r.event.device_id}"[:500], payload=r.event.event_uid.encode(),
                reason="unknown_reason",
                detail=f"reason {code!r} is not in office {r.point.office.code}'s list; the rating was kept without it",
                received_at=now,
            )
            result.dead_letters += 1

    async def _mark_repeats(self, fresh: list[_NewRating]) -> None:
        """A device pressed again inside the window: the first press counts, the rest do not."""
        if not self._repeat_window:
            for rating in fresh:
                if rating.event.repeat:
                    rating.excluded = ExclusionReason.REPEAT
            return
        devices = {r.event.device_id for r in fresh}
        since = fresh[0].event.ts - self._repeat_window
        last_press: dict[str, datetime] = dict(
            await Rating.filter(device_id__in=list(devices), ts__gte=since)
            .annotate(last=Max("ts"))
            .group_by("device_id")
            .values_list("device_id", "last")
        )
        for rating in fresh:
            if rating.event.repeat:  # the channel saw the same phone again inside its own window
                rating.excluded = ExclusionReason.REPEAT
            previous = last_press.get(rating.event.device_id)
            if previous is not None and timedelta(0) <= rating.event.ts - previous < self._repeat_window:
                rating.excluded = ExclusionReason.REPEAT
            last_press[rating.event.device_id] = rating.event.ts

    async def _resolve_presence_and_staff(self, fresh: list[_NewRating], directory: Directory) -> None:
        point_ids = list({r.point.id for r in fresh})
        first, last = fresh[0].event.ts, fresh[-1].event.ts
        presence: dict[int, list[tuple[datetime, str, str | None]]] = defaultdict(list)
        for point_id, ts, state, staff_code in await PresenceRow.filter(
            point_id__in=point_ids, ts__gte=first - PRESENCE_LOOKBACK, ts__lte=last
        ).order_by("ts").values_list("point_id", "ts", "state", "staff_code"):
            presence[point_id].append((ts, state, staff_code))
        shifts: dict[int, list[tuple[datetime, datetime | None, int]]] = defaultdict(list)
        for point_id, started, ended, staff_id in await Shift.filter(
            point_id__in=point_ids, started_at__lte=last
        ).filter(ended_at__isnull=True).values_list("point_id", "started_at", "ended_at", "staff_id"):
            shifts[point_id].append((started, ended, staff_id))
        for point_id, started, ended, staff_id in await Shift.filter(
            point_id__in=point_ids, started_at__lte=last, ended_at__gt=first
        ).values_list("point_id", "started_at", "ended_at", "staff_id"):
            shifts[point_id].append((started, ended, staff_id))
        staff_by_code = {}
        codes = {code for events in presence.values() for _, _, code in events if code}
        if codes:
            from bot.models import Staff

            staff_by_code = dict(await Staff.filter(code__in=list(codes)).values_list("code", "id"))

        for rating in fresh:
            ts = rating.event.ts
            last_event = None
            for event in presence.get(rating.point.id, ()):
                if event[0] <= ts:
                    last_event = event
                else:
                    break
            # the desk's presence says nothing about a kiosk at the exit or a phone after the visit
            if rating.excluded is None and last_event is not None and rating.event.channel == "button":
                if last_event[1] == "end" and ts - last_event[0] > self._grace:
                    rating.excluded = ExclusionReason.NO_CLIENT
            rating.staff_id = self._on_shift(shifts.get(rating.point.id, ()), ts)
            if rating.staff_id is None and last_event is not None and last_event[2]:
                rating.staff_id = staff_by_code.get(last_event[2])
            if rating.staff_id is None:
                rating.staff_id = directory.rostered_staff(rating.point.id, ts)

    @staticmethod
    def _on_shift(shifts: Sequence[tuple[datetime, datetime | None, int]], ts: datetime) -> int | None:
        best: tuple[datetime, int] | None = None
        for started, ended, staff_id in shifts:
            if started <= ts and (ended is None or ended > ts) and (best is None or started > best[0]):
                best = (started, staff_id)
        return best[1] if best else None

    async def _open_cases(self, fresh: list[_NewRating], directory: Directory, now: datetime, result: BatchResult) -> None:
        """Every negative gets a case and a post; positives only where the office asks."""
        negatives = [r for r in fresh if r.event.value == "bad"]
        positives = [r for r in fresh if r.event.value != "bad" and r.point.office.post_positive and not r.excluded]
        result.negatives = len(negatives)
        if positives:
            await OutboxMessage.bulk_create(
                [
                    OutboxMessage(
                        chat_id=r.point.office.staff_chat_id, kind=OutboxKind.TEXT,
                        text=self._texts.positive(
                            r.point.office.language, r.point.name, r.event.value, r.event.ts, r.point.office.tz,
                            directory.staff_names.get(r.staff_id or 0),
                        ),
                        next_attempt_at=now, created_at=now,
                    )
                    for r in positives
                    if r.point.office.staff_chat_id
                ]
            )
        if not negatives:
            return
        ids = dict(
            await Rating.filter(event_uid__in=[r.event.event_uid for r in negatives]).values_list("event_uid", "id")
        )
        cases = []
        for r in negatives:
            office = r.point.office
            start = max(r.event.ts, now)
            due = office.hours.add_working_minutes(start, office.deadline_minutes)
            remind = office.hours.add_working_minutes(start, office.deadline_minutes / 2)
            cases.append(
                NegativeCase(
                    rating_id=ids[r.event.event_uid], office_id=office.id, chat_id=office.staff_chat_id,
                    remind_at=remind, due_at=due,
                    speech_status=SpeechStatus.WAITING if self._audio else None, speech_next_at=now,
                )
            )
        await NegativeCase.bulk_create(cases)
        case_rows = await NegativeCase.filter(rating_id__in=list(ids.values())).values_list("id", "chat_id")
        posts = [
            OutboxMessage(chat_id=chat_id, kind=OutboxKind.CASE_POST, case_id=case_id, next_attempt_at=now, created_at=now)
            for case_id, chat_id in case_rows
            if chat_id is not None
        ]
        if posts:
            await OutboxMessage.bulk_create(posts)
            result.outbox_rows += len(posts)
        unbound = len(case_rows) - len(posts)
        if unbound:
            log.warning("%d negative(s) for offices with no staff group bound: stored, not posted", unbound)

    async def _check_anomalies(self, fresh: list[_NewRating], directory: Directory, now: datetime, result: BatchResult) -> None:
        """One alert per point per window, when negatives pile up (as HappyOrNot's alerts).

        One grouped query for every point that got a negative in this batch: a batch spans
        well under a second, so the window ending at the batch's latest press serves them all.
        """
        settings = self._settings
        window = timedelta(minutes=settings.anomaly_window_minutes)
        latest: dict[int, _NewRating] = {}
        for r in fresh:
            if r.event.value == "bad" and not r.excluded:
                latest[r.point.id] = r
        if not latest:
            return
        end = max(r.event.ts for r in latest.values())
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        for point_id, value, n in (
            await Rating.filter(point_id__in=list(latest), ts__gt=end - window, ts__lte=end, excluded_reason__isnull=True)
            .annotate(n=Count("id"))
            .group_by("point_id", "value")
            .values_list("point_id", "value", "n")
        ):
            counts[point_id][str(value)] = n
        candidates = []
        for point_id, by_value in counts.items():
            total, bad = sum(by_value.values()), by_value.get("bad", 0)
            if total >= settings.anomaly_min_ratings and bad / total >= settings.anomaly_negative_share:
                candidates.append((point_id, bad, total))
        if not candidates:
            return
        recent = set(
            await AnomalyAlert.filter(point_id__in=[c[0] for c in candidates], fired_at__gt=end - window).values_list(
                "point_id", flat=True
            )
        )
        for point_id, bad, total in candidates:
            if point_id in recent:
                continue
            r = latest[point_id]
            await AnomalyAlert.create(point_id=point_id, fired_at=end, negatives=bad, total=total)
            result.alerts += 1
            office = r.point.office
            if office.manager_chat_id:
                await OutboxMessage.create(
                    chat_id=office.manager_chat_id, kind=OutboxKind.TEXT,
                    text=self._texts.anomaly(office.language, office.code, r.point.name, bad, total, settings.anomaly_window_minutes),
                    next_attempt_at=now, created_at=now,
                )
                result.outbox_rows += 1


async def _advance_last_seen(sightings: list[tuple[datetime, str]]) -> None:
    """``Device.last_seen = max(last_seen, seen)`` for many devices in one round trip."""
    client = Device._meta.db
    if client.capabilities.dialect == "postgres":
        sql = "UPDATE device SET last_seen = $1 WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)"
        values = [[seen, device_id] for seen, device_id in sightings]
    else:  # Tortoise stores SQLite datetimes as ISO text, which compares in time order
        sql = "UPDATE device SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen < ?)"
        values = [[_sqlite_ts(seen), device_id, _sqlite_ts(seen)] for seen, device_id in sightings]
    await client.execute_many(sql, values)


def _sqlite_ts(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(" ")
