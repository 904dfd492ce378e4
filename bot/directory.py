"""A read-mostly snapshot of the organisation that the hot paths consult without queries.

Ingest looks up a point, its office's time zone and working hours, and the roster for every
event; reading them from the database per event would cost more than storing the event.
The snapshot is rebuilt after an org import or a /bind, and periodically by the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.models import Device, Office, Point, Reason, RosterEntry, Staff
from bot.working_hours import WorkingHours, parse_days, parse_hours
from devices.contract import DeviceConfig
from speech.rules import RuleSet


@dataclass(frozen=True, slots=True)
class OfficeInfo:
    id: int
    code: str
    name: str
    tz: ZoneInfo
    hours: WorkingHours
    language: str
    deadline_minutes: int
    staff_chat_id: int | None
    manager_chat_id: int | None
    post_positive: bool
    hourly_digest: bool
    rules: RuleSet = field(default_factory=RuleSet)
    complaint_chat_id: int | None = None
    complaint_due_days: int = 2
    review_url: str | None = None
    review_title: str | None = None
    reason_codes: tuple[str, ...] | None = None  # the reasons it offers; None: every active one


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    id: int
    code: str
    label: str
    label_en: str | None
    staff_related: bool
    active: bool

    def text(self, locale: str) -> str:
        return self.label_en if locale == "en" and self.label_en else self.label


@dataclass(frozen=True, slots=True)
class PointInfo:
    id: int
    code: str
    name: str
    office: OfficeInfo


@dataclass(frozen=True, slots=True)
class RosterSlot:
    staff_id: int
    days: frozenset[int]
    hours: tuple[tuple[int, int], ...]  # minutes since local midnight, [start, end)

    def covers(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.hours)


@dataclass
class Directory:
    offices: dict[int, OfficeInfo] = field(default_factory=dict)
    offices_by_code: dict[str, OfficeInfo] = field(default_factory=dict)
    points: dict[tuple[str, str], PointInfo] = field(default_factory=dict)
    points_by_id: dict[int, PointInfo] = field(default_factory=dict)
    devices: list[DeviceConfig] = field(default_factory=list)
    device_sites: dict[str, str] = field(default_factory=dict)  # device id → its office code
    roster: dict[int, list[RosterSlot]] = field(default_factory=dict)
    staff_names: dict[int, str] = field(default_factory=dict)
    staff_by_code: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, ReasonInfo] = field(default_factory=dict)

    @classmethod
    async def load(cls) -> Directory:
        directory = cls()
        for office in await Office.all():
            info = OfficeInfo(
                id=office.id,
                code=office.code,
                name=office.name,
                tz=ZoneInfo(office.timezone),
                hours=WorkingHours.parse(office.working_hours or None, office.timezone),
                language=office.language,
                deadline_minutes=office.comment_deadline_minutes,
                staff_chat_id=office.staff_chat_id,
                manager_chat_id=office.manager_chat_id,
                post_positive=office.post_positive,
                hourly_digest=office.hourly_digest,
                rules=RuleSet.from_config(office.speech_rules),
                complaint_chat_id=office.complaint_chat_id,
                complaint_due_days=office.complaint_due_days,
                review_url=office.review_url,
                review_title=office.review_title,
                reason_codes=tuple(office.reason_codes) if office.reason_codes is not None else None,
            )
            directory.offices[office.id] = info
            directory.offices_by_code[office.code] = info
        for point in await Point.all():
            office_info = directory.offices[point.office_id]  # type: ignore[attr-defined]
            point_info = PointInfo(point.id, point.code, point.name, office_info)
            directory.points[(office_info.code, point.code)] = point_info
            directory.points_by_id[point.id] = point_info
        for device in await Device.all():
            point_info = directory.points_by_id.get(device.point_id)  # type: ignore[attr-defined]
            if point_info is None:
                continue
            directory.devices.append(
                DeviceConfig(
                    id=device.id,
                    kind="native" if device.kind == "recorder" else device.kind,  # recorders speak the native contract
                    site=point_info.office.code,
                    point=point_info.code,
                    topic=device.topic,
                    actions=dict(device.actions or {}),
                )
            )
            directory.device_sites[device.id] = point_info.office.code
        for entry in await RosterEntry.all():
            hours = tuple(
                (start.hour * 60 + start.minute, 1440 if end.hour == 23 and end.minute == 59 and end.second == 59 else end.hour * 60 + end.minute)
                for start, end in parse_hours(entry.hours)
            )
            slot = RosterSlot(entry.staff_id, frozenset(parse_days(entry.days)), hours)  # type: ignore[attr-defined]
            directory.roster.setdefault(entry.point_id, []).append(slot)  # type: ignore[attr-defined]
        for staff_id, code, name in await Staff.all().values_list("id", "code", "name"):
            directory.staff_names[staff_id] = name
            directory.staff_by_code[code] = staff_id
        for reason in await Reason.all().order_by("id"):
            directory.reasons[reason.code] = ReasonInfo(
                reason.id, reason.code, reason.label, reason.label_en, reason.staff_related, reason.active
            )
        return directory

    def office_reasons(self, office_id: int) -> list[ReasonInfo]:
        """The active reasons an office's kiosks and QR pages offer, in the org file's order."""
        office = self.offices.get(office_id)
        if office is None:
            return []
        if office.reason_codes is None:
            return [r for r in self.reasons.values() if r.active]
        return [self.reasons[c] for c in office.reason_codes if c in self.reasons and self.reasons[c].active]

    def rostered_staff(self, point_id: int, at: datetime) -> int | None:
        point = self.points_by_id.get(point_id)
        if point is None:
            return None
        local = at.astimezone(point.office.tz)
        for slot in self.roster.get(point_id, ()):
            if slot.covers(local):
                return slot.staff_id
        return None
