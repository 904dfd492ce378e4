"""Storing what exit kiosks say besides ratings: NPS answers and complaints.

Called by :class:`bot.ratings.RatingService` inside the ingest batch's transaction, so an NPS
answer or a complaint is stored exactly when its MQTT message is acknowledged. Both are
idempotent on ``event_uid`` (a QoS 1 redelivery or a kiosk's retry stores nothing twice).

A complaint is stored *open* with no chat message (``chat_id``/``message_id`` null): the
complaint service posts every such complaint to the office's complaint chat, so posting is
retried there and never holds up ingest.

**Due date.** ``complaint_due_days`` open days of the office, the same wall time (see
:func:`bot.complaints.complaint_deadlines`, the one rule for complaints whichever way they came).

**Contacts (152-FZ).** Name and contact exist only with the customer's consent — the adapter
drops them otherwise — and are kept ``complaint_contact_days`` from the complaint
(``contact_expires_at``), after which the retention job erases them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from datetime import datetime, timedelta

from bot.directory import Directory, OfficeInfo, PointInfo
from bot.models import Channel, Complaint, ComplaintStatus, DeadLetter, NpsAnswer
from bot.settings import Settings
from bot.complaints import complaint_deadlines
from devices.contract import ComplaintEvent, NpsEvent

__all__ = ["FeedbackCounts", "FeedbackService"]

E = TypeVar("E", NpsEvent, ComplaintEvent)


@dataclass(slots=True)
class FeedbackCounts:
    nps: int = 0
    complaints: int = 0
    duplicates: int = 0
    dead_letters: int = 0


class FeedbackService:
    """NpsEvent → ``nps_answer`` rows, ComplaintEvent → ``complaint`` rows (in the caller's transaction)."""

    def __init__(self, settings: Settings) -> None:
        self._contact_keep = timedelta(days=settings.complaint_contact_days)

    async def store(
        self,
        nps: Mapping[str, NpsEvent],
        complaints: Mapping[str, ComplaintEvent],
        directory: Directory,
        now: datetime,
    ) -> FeedbackCounts:
        counts = FeedbackCounts()
        if nps:
            await self._store_nps(nps, directory, now, counts)
        if complaints:
            await self._store_complaints(complaints, directory, now, counts)
        return counts

    async def _fresh(
        self, model: type[NpsAnswer] | type[Complaint], events: Mapping[str, E], directory: Directory, now: datetime,
        counts: FeedbackCounts,
    ) -> list[tuple[str, E, PointInfo]]:
        """The events not stored yet (a redelivery stores nothing twice) whose point still exists."""
        existing = set(await model.filter(event_uid__in=list(events)).values_list("event_uid", flat=True))
        counts.duplicates += len(existing)
        fresh = []
        for uid, event in events.items():
            if uid not in existing and (point := await self._point(event, directory, now, counts)) is not None:
                fresh.append((uid, event, point))
        return fresh

    async def _point(
        self, event: NpsEvent | ComplaintEvent, directory: Directory, now: datetime, counts: FeedbackCounts
    ) -> PointInfo | None:
        point = directory.points.get((event.site, event.point))
        if point is None:  # the org changed under the router: keep the evidence, as ratings do
            await DeadLetter.create(
                topic=f"{event.site}/{event.channel}/{event.device_id}"[:500], payload=event.event_uid.encode(),
                reason="unknown_point", detail=f"point {event.site}/{event.point} is no longer configured",
                received_at=now,
            )
            counts.dead_letters += 1
        return point

    async def _store_nps(
        self, events: Mapping[str, NpsEvent], directory: Directory, now: datetime, counts: FeedbackCounts
    ) -> None:
        rows = []
        for uid, event, point in await self._fresh(NpsAnswer, events, directory, now, counts):
            rows.append(
                NpsAnswer(
                    event_uid=uid, office_id=point.office.id, point_id=point.id,
                    staff_id=directory.staff_by_code.get(event.staff) if event.staff else None,
                    channel=Channel(event.channel), device_id=event.device_id, score=event.score,
                    reason_text=event.reason, ts=event.ts, local_date=event.ts.astimezone(point.office.tz).date(),
                    received_at=now,
                )
            )
        if rows:
            await NpsAnswer.bulk_create(rows)
        counts.nps = len(rows)

    async def _store_complaints(
        self, events: Mapping[str, ComplaintEvent], directory: Directory, now: datetime, counts: FeedbackCounts
    ) -> None:
        rows = []
        for uid, event, point in await self._fresh(Complaint, events, directory, now, counts):
            office = point.office
            keep_contact = event.consent and event.contact is not None
            remind_at, due_at = complaint_deadlines(office.hours, max(event.ts, now), office.complaint_due_days)
            rows.append(
                Complaint(
                    event_uid=uid, office_id=office.id, point_id=point.id,
                    staff_id=directory.staff_by_code.get(event.staff) if event.staff else None,
                    channel=Channel(event.channel), device_id=event.device_id, text=event.text,
                    customer_name=event.name if keep_contact else None,
                    contact=event.contact if keep_contact else None,
                    consent=event.consent, ts=event.ts, local_date=event.ts.astimezone(office.tz).date(),
                    received_at=now, status=ComplaintStatus.OPEN, due_at=due_at, remind_at=remind_at,
                    contact_expires_at=event.ts + self._contact_keep if keep_contact else None,
                )
            )
        if rows:
            await Complaint.bulk_create(rows)
        counts.complaints = len(rows)
