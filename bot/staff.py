"""Who people are: Telegram accounts bound to staff records, groups bound to offices, shifts."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from tortoise.transactions import in_transaction

from bot.clock import Clock
from bot.errors import AccessDenied, NotFound
from bot.models import Invite, Office, Point, Role, Shift, Staff
from bot.texts import _

INVITE_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class InviteLink:
    token: str
    staff: Staff
    url: str


class StaffService:
    def __init__(self, clock: Clock, on_org_change: Callable[[], None] = lambda: None) -> None:
        self._clock = clock
        self._on_org_change = on_org_change

    async def by_telegram(self, telegram_id: int) -> Staff | None:
        return await Staff.get_or_none(telegram_id=telegram_id, active=True).select_related("office")

    async def bind_group(self, staff: Staff, chat_id: int, office_code: str) -> Office:
        if staff.role != Role.ADMIN:
            raise AccessDenied(_("Only an admin can bind a group to an office."))
        if chat_id > 0:
            raise AccessDenied(_("Run /bind in the office's group, not in a private chat."))
        office = await Office.get_or_none(code=office_code.strip())
        if office is None:
            raise NotFound(_("No office with code {code}."), code=office_code)
        async with in_transaction():
            await Office.filter(staff_chat_id=chat_id).exclude(id=office.id).update(staff_chat_id=None)
            office.staff_chat_id = chat_id
            await office.save(update_fields=["staff_chat_id"])
        self._on_org_change()
        return office

    async def create_invite(self, creator: Staff, staff_code: str, bot_username: str) -> InviteLink:
        if creator.role not in (Role.ADMIN, Role.MANAGER):
            raise AccessDenied(_("Only an admin or a manager can invite staff."))
        target = await Staff.get_or_none(code=staff_code.strip())
        if target is None or (creator.role == Role.MANAGER and target.office_id != creator.office_id):  # type: ignore[attr-defined]
            raise NotFound(_("No staff member with code {code} in your offices."), code=staff_code)
        if creator.role == Role.MANAGER and target.role in (Role.ADMIN, Role.QUALITY):
            raise AccessDenied(_("Only an admin can invite that role."))
        now = self._clock.now()
        token = secrets.token_urlsafe(18)
        await Invite.create(token=token, staff=target, created_by=creator, created_at=now, expires_at=now + INVITE_TTL)
        return InviteLink(token, target, f"https://t.me/{bot_username}?start=inv_{token}")

    async def accept_invite(self, token: str, telegram_id: int, language: str | None) -> Staff:
        now = self._clock.now()
        async with in_transaction():
            invite = await Invite.get_or_none(token=token).select_related("staff")
            if invite is None or invite.used_at is not None or invite.expires_at < now:
                raise NotFound(_("This invitation link is invalid, used or expired. Ask your manager for a new one."))
            existing = await Staff.get_or_none(telegram_id=telegram_id)
            if existing is not None and existing.id != invite.staff.id:
                raise AccessDenied(_("Your Telegram account is already bound to another staff record."))
            updated = await Invite.filter(id=invite.id, used_at__isnull=True).update(used_at=now)
            if updated != 1:
                raise NotFound(_("This invitation link is invalid, used or expired. Ask your manager for a new one."))
            staff = invite.staff
            staff.telegram_id = telegram_id
            if staff.language is None and language in ("ru", "en"):
                staff.language = language
            await staff.save(update_fields=["telegram_id", "language"])
        return staff

    async def shift_points(self, staff: Staff) -> list[Point]:
        if staff.office_id is None:  # type: ignore[attr-defined]
            raise AccessDenied(_("You are not assigned to an office; ask your admin."))
        return await Point.filter(office_id=staff.office_id).order_by("code")  # type: ignore[attr-defined]

    async def current_shift(self, staff: Staff) -> Shift | None:
        return await Shift.get_or_none(staff=staff, ended_at__isnull=True).select_related("point")

    async def start_shift(self, staff: Staff, point_id: int) -> Point:
        point = await Point.get_or_none(id=point_id)
        if point is None or point.office_id != staff.office_id:  # type: ignore[attr-defined]
            raise AccessDenied(_("That point is not in your office."))
        now = self._clock.now()
        async with in_transaction():
            await Shift.filter(staff=staff, ended_at__isnull=True).update(ended_at=now)
            await Shift.filter(point=point, ended_at__isnull=True).update(ended_at=now)
            await Shift.create(staff=staff, point=point, started_at=now)
        return point

    async def end_shift(self, staff: Staff) -> Point | None:
        shift = await self.current_shift(staff)
        if shift is None:
            return None
        shift.ended_at = self._clock.now()
        await shift.save(update_fields=["ended_at"])
        return shift.point
