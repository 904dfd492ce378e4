"""Complaints on a real database (SQLite and PostgreSQL): posting, buttons, chasing, contact retention."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.clock import FakeClock
from bot.complaints import ComplaintService, complaint_deadlines, complaint_ref, load_complaint_view, render_complaint
from bot.directory import Directory
from bot.errors import AccessDenied, NotFound
from bot.exports import export_rows, to_csv, to_xlsx
from bot.models import (
    Channel,
    Complaint,
    ComplaintStatus,
    Office,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Point,
    Rating,
    RatingValue,
    Staff,
)
from bot.org import import_org, load_org_file
from bot.outbox import OutboxSender
from bot.settings import Settings, load_settings
from bot.texts import Texts, make_i18n
from bot.working_hours import WorkingHours
from tests.telegram_emulator import BotApiEmulator

ORG = Path(__file__).parent.parent / "fixtures" / "org.yaml"
MSK = ZoneInfo("Europe/Moscow")
TUE_1200 = datetime(2026, 11, 24, 12, 0, tzinfo=MSK).astimezone(UTC)
COMPLAINT_CHAT = -1001000000003
STAFF_CHAT = -1001000000001
MANAGER_CHAT = -1001000000002
NAME, CONTACT = "Иван Клиентов", "+7 999 123-45-67"


@dataclass
class World:
    settings: Settings
    clock: FakeClock
    texts: Texts
    holder: dict[str, Directory]
    service: ComplaintService
    msk: Office

    @property
    def directory(self) -> Directory:
        return self.holder["d"]

    async def complaint(self, uid: str = "k-1", at: datetime = TUE_1200, **extra: object) -> Complaint:
        point = await Point.get(office=self.msk, code="W1")
        values: dict[str, object] = dict(
            event_uid=uid, office=self.msk, point=point, channel=Channel.KIOSK, device_id="kiosk-1",
            text="Нагрубили на кассе, хочу ответа", customer_name=NAME, contact=CONTACT, consent=True,
            ts=at, local_date=at.astimezone(MSK).date(), received_at=at,
        )
        values.update(extra)
        return await Complaint.create(**values)

    async def staff(self, code: str) -> Staff:
        return await Staff.get(code=code).select_related("office")

    async def reload(self) -> None:
        self.holder["d"] = await Directory.load()


@pytest.fixture
async def world(database: str) -> World:
    await import_org(load_org_file(ORG))
    await Office.filter(code="MSK-1").update(complaint_chat_id=COMPLAINT_CHAT)  # until the org file has complaint_chat
    settings = load_settings()
    clock = FakeClock(TUE_1200)
    texts = Texts(make_i18n())
    holder: dict[str, Directory] = {"d": await Directory.load()}
    service = ComplaintService(settings, clock, texts, lambda: holder["d"])
    return World(settings, clock, texts, holder, service, await Office.get(code="MSK-1"))


def card_text(world: World, view) -> str:  # noqa: ANN001
    return render_complaint(world.texts, "ru", view)[0]


async def test_a_new_complaint_is_queued_for_the_complaint_chat_and_rendered_with_the_contact(world: World) -> None:
    complaint = await world.complaint()
    assert await world.service.post_new() == 1
    rows = await OutboxMessage.all()
    assert [(r.kind, r.chat_id, r.text) for r in rows] == [(OutboxKind.COMPLAINT_POST, COMPLAINT_CHAT, complaint_ref(complaint.id))]
    assert NAME not in (rows[0].text or "") and CONTACT not in (rows[0].text or "")  # rendered when sent, never stored
    complaint = await Complaint.get(id=complaint.id)
    assert complaint.chat_id == COMPLAINT_CHAT and complaint.message_id is None
    # the ingest left due_at null: two working days, the reminder at half-time
    assert complaint.due_at.astimezone(MSK) == datetime(2026, 11, 26, 12, 0, tzinfo=MSK)
    assert complaint.remind_at.astimezone(MSK) == datetime(2026, 11, 25, 12, 0, tzinfo=MSK)
    assert complaint.contact_expires_at == TUE_1200 + timedelta(days=world.settings.complaint_contact_days)
    text = card_text(world, await load_complaint_view(complaint.id, COMPLAINT_CHAT))
    assert f"Клиент: {NAME}" in text and f"Контакт: {CONTACT}" in text
    assert "Ответить до: 26.11.2026 12:00" in text and "Нагрубили на кассе" in text
    assert await world.service.post_new() == 0  # claimed once


async def test_the_outbox_delivers_the_card_with_its_buttons_and_records_the_message(world: World) -> None:
    complaint = await world.complaint()
    await world.service.post_new()
    async with BotApiEmulator() as emu:
        emu.add_chat(COMPLAINT_CHAT, "supergroup", "Жалобы")
        bot = emu.make_bot()
        try:
            sender = OutboxSender(bot, world.settings, world.clock, world.texts, lambda: world.directory)
            await sender.drain_once()
            post = await emu.wait_for_bot_message(COMPLAINT_CHAT, contains="Жалоба")
        finally:
            await bot.session.close()
    assert CONTACT in post["text"] and NAME in post["text"]
    buttons = [b["text"] for row in post["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == ["🙋 Взял в работу", "✅ Решено"]
    assert emu.bot_messages(STAFF_CHAT) == []
    complaint = await Complaint.get(id=complaint.id)
    assert complaint.message_id == post["message_id"]
    assert await OutboxMessage.filter(status=OutboxStatus.SENT).count() == 1


async def test_without_a_complaint_chat_the_manager_chat_gets_it_and_the_log_says_so(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await Office.filter(code="MSK-1").update(complaint_chat_id=None)
    await world.reload()
    await world.complaint()
    with caplog.at_level(logging.WARNING, logger="bot.complaints"):
        assert await world.service.post_new() == 1
    row = await OutboxMessage.get(kind=OutboxKind.COMPLAINT_POST)
    assert row.chat_id == MANAGER_CHAT
    assert "no complaint chat" in caplog.text and "manager chat" in caplog.text
    assert CONTACT not in caplog.text and NAME not in caplog.text


async def test_a_card_bound_for_the_staff_group_never_shows_the_contact(world: World) -> None:
    await Office.filter(code="MSK-1").update(complaint_chat_id=STAFF_CHAT)  # a misconfiguration
    complaint = await world.complaint()
    text = card_text(world, await load_complaint_view(complaint.id, STAFF_CHAT))
    assert CONTACT not in text and NAME not in text
    assert "видны только в чате жалоб" in text


async def test_take_then_resolve_with_text(world: World) -> None:
    complaint = await world.complaint()
    await world.service.post_new()
    petrov = await world.staff("petrov")  # MSK-1 manager
    taken = await world.service.take(petrov, complaint.id, COMPLAINT_CHAT)
    assert taken.status == ComplaintStatus.TAKEN and taken.taken_by_id == petrov.id  # type: ignore[attr-defined]
    text = card_text(world, await load_complaint_view(complaint.id, COMPLAINT_CHAT))
    assert "Взял в работу: Олег Петров" in text
    with pytest.raises(NotFound):
        await world.service.resolve(petrov, complaint.id, COMPLAINT_CHAT, "   ")
    world.clock.advance(timedelta(hours=2))
    resolved = await world.service.resolve(petrov, complaint.id, COMPLAINT_CHAT, "Позвонили, извинились, вернули деньги")
    assert resolved.status == ComplaintStatus.RESOLVED
    fresh = await Complaint.get(id=complaint.id)
    assert (fresh.resolution, fresh.resolved_by_id, fresh.resolved_at) == (  # type: ignore[attr-defined]
        "Позвонили, извинились, вернули деньги", petrov.id, TUE_1200 + timedelta(hours=2)
    )
    view = await load_complaint_view(complaint.id, COMPLAINT_CHAT)
    text, keyboard = render_complaint(world.texts, "ru", view)
    assert "Решено: Олег Петров, 24.11.2026 14:00" in text and "Решение: Позвонили, извинились" in text
    assert keyboard is None
    edits = await OutboxMessage.filter(kind=OutboxKind.COMPLAINT_EDIT).values_list("chat_id", "text")
    assert edits == [(COMPLAINT_CHAT, complaint_ref(complaint.id))] * 2
    with pytest.raises(NotFound):  # resolved once
        await world.service.resolve(petrov, complaint.id, COMPLAINT_CHAT, "ещё раз")


async def test_a_member_of_the_complaint_chat_may_take_it_but_someone_elsewhere_may_not(world: World) -> None:
    complaint = await world.complaint()
    await world.service.post_new()
    ekb_manager = await world.staff("kuznetsov")  # EKB-1 manager, in his own office's chat
    with pytest.raises(AccessDenied):
        await world.service.take(ekb_manager, complaint.id, -1001000000011)
    with pytest.raises(AccessDenied):
        await world.service.check_resolvable(ekb_manager, complaint.id, None)
    anna = await world.staff("ivanova")  # MSK-1 staff, not a manager
    with pytest.raises(AccessDenied):
        await world.service.take(anna, complaint.id, STAFF_CHAT)
    taken = await world.service.take(anna, complaint.id, COMPLAINT_CHAT)  # in the complaint chat she may
    assert taken.taken_by_id == anna.id  # type: ignore[attr-defined]
    petrov = await world.staff("petrov")
    with pytest.raises(NotFound, match="already taken"):
        await world.service.take(petrov, complaint.id, COMPLAINT_CHAT)
    assert (await Complaint.get(id=complaint.id)).taken_by_id == anna.id  # type: ignore[attr-defined]


async def test_one_reminder_at_half_time_to_whoever_took_it_then_one_escalation_after_due(world: World) -> None:
    complaint = await world.complaint()
    await world.service.post_new()
    await Complaint.filter(id=complaint.id).update(message_id=77)  # as the outbox records it once sent
    petrov = await world.staff("petrov")
    await world.service.take(petrov, complaint.id, COMPLAINT_CHAT)

    world.clock.set(datetime(2026, 11, 25, 11, 59, tzinfo=MSK))
    result = await world.service.run_once()
    assert (result.reminders, result.escalations) == (0, 0)
    world.clock.set(datetime(2026, 11, 25, 12, 1, tzinfo=MSK))
    assert (await world.service.run_once()).reminders == 1
    assert (await world.service.run_once()).reminders == 0
    reminder = await OutboxMessage.get(kind=OutboxKind.TEXT)
    assert reminder.chat_id == COMPLAINT_CHAT and reminder.reply_to_message_id == 77
    assert 'tg://user?id=5002">Олег Петров</a>, решите, пожалуйста, жалобу №%d до 26.11.2026 12:00' % complaint.id in reminder.text
    assert CONTACT not in reminder.text and NAME not in reminder.text

    world.clock.set(datetime(2026, 11, 26, 12, 1, tzinfo=MSK))
    assert (await world.service.run_once()).escalations == 1
    assert (await world.service.run_once()).escalations == 0
    escalation = await OutboxMessage.get(kind=OutboxKind.TEXT, chat_id=MANAGER_CHAT)
    assert f"Жалоба №{complaint.id}, MSK-1 / Окно 1" in escalation.text and "В работе у: Олег Петров" in escalation.text
    for secret in (CONTACT, NAME, "Нагрубили"):
        assert secret not in escalation.text
    fresh = await Complaint.get(id=complaint.id)
    assert fresh.overdue and fresh.escalated_at is not None
    text = card_text(world, await load_complaint_view(complaint.id, COMPLAINT_CHAT))
    assert "Просрочено" in text


async def test_an_untaken_complaint_reminds_the_chat_and_a_resolved_one_is_not_chased(world: World) -> None:
    open_one = await world.complaint("k-open")
    done = await world.complaint("k-done")
    await world.service.post_new()
    await Complaint.filter(id__in=[open_one.id, done.id]).update(message_id=5)
    petrov = await world.staff("petrov")
    await world.service.resolve(petrov, done.id, COMPLAINT_CHAT, "Решили на месте")
    world.clock.set(datetime(2026, 11, 27, 12, 0, tzinfo=MSK))  # past both times
    result = await world.service.run_once()
    assert (result.reminders, result.escalations) == (1, 1)
    reminder = await OutboxMessage.get(kind=OutboxKind.TEXT, chat_id=COMPLAINT_CHAT)
    assert reminder.text.startswith(f"⏳ Коллеги, жалобу №{open_one.id} ещё никто не взял в работу")
    assert not (await Complaint.get(id=done.id)).overdue


async def test_contacts_are_erased_after_the_retention_period_and_not_before(world: World) -> None:
    kept_days = world.settings.complaint_contact_days
    posted = await world.complaint("k-posted")
    legacy = await world.complaint("k-legacy", at=TUE_1200 + timedelta(days=1))  # never posted: no expiry set
    await world.service.post_new()
    await Complaint.filter(id=legacy.id).update(chat_id=None, contact_expires_at=None)
    await Complaint.filter(id=posted.id).update(message_id=9)

    world.clock.set(TUE_1200 + timedelta(days=kept_days) - timedelta(minutes=1))
    assert await world.service.erase_expired_contacts() == 0
    assert (await Complaint.get(id=posted.id)).contact == CONTACT

    world.clock.set(TUE_1200 + timedelta(days=kept_days))
    assert await world.service.erase_expired_contacts() == 1
    erased = await Complaint.get(id=posted.id)
    assert (erased.customer_name, erased.contact, erased.contact_erased_at) == (None, None, world.clock.now())
    assert erased.text and erased.status == ComplaintStatus.OPEN  # the complaint itself stays
    assert (await Complaint.get(id=legacy.id)).contact == CONTACT
    edit = await OutboxMessage.filter(kind=OutboxKind.COMPLAINT_EDIT).values_list("chat_id", "text")
    assert edit == [(COMPLAINT_CHAT, complaint_ref(posted.id))]  # the card is re-rendered without it
    text = card_text(world, await load_complaint_view(posted.id, COMPLAINT_CHAT))
    assert "контакт удалён по сроку хранения" in text and CONTACT not in text and NAME not in text

    world.clock.set(TUE_1200 + timedelta(days=kept_days + 1))  # the legacy row: receipt + the keep
    assert await world.service.erase_expired_contacts() == 1
    assert (await Complaint.get(id=legacy.id)).contact is None
    assert await world.service.erase_expired_contacts() == 0


async def test_the_scheduled_pass_erases_contacts_with_the_injected_clock(world: World) -> None:
    await world.complaint()
    world.clock.set(TUE_1200 + timedelta(days=world.settings.complaint_contact_days, seconds=1))
    result = await world.service.run_once()
    assert result.erased == 1
    assert await Complaint.filter(contact__isnull=False).count() == 0


async def test_exports_never_contain_complaint_contacts(world: World) -> None:
    point = await Point.get(office=world.msk, code="W1")
    local = TUE_1200.astimezone(MSK)
    await Rating.create(
        event_uid="kiosk-r1", device_id="kiosk-1", office=world.msk, point=point, value=RatingValue.BAD, ts=TUE_1200,
        received_at=TUE_1200, local_date=local.date(), local_hour=local.hour, channel=Channel.KIOSK,
        customer_text="Долго ждал",
    )
    await world.complaint()

    @dataclass
    class Scope:
        office_ids: tuple[int, ...] | None = None
        point_id: int | None = None
        staff_id: int | None = None

    rows = [r async for r in export_rows(Scope(), date(2026, 11, 1), date(2026, 11, 30))]
    assert len(rows) == 1  # the rating is exported, the complaint's person is not
    data = to_csv(rows).decode("utf-8-sig")
    book = load_workbook(io.BytesIO(to_xlsx(rows, "ratings")))
    cells = " ".join(str(c.value) for sheet in book.worksheets for row in sheet.iter_rows() for c in row)
    for blob in (data, cells, repr(rows)):
        assert CONTACT not in blob and NAME not in blob
    assert list(csv.reader(io.StringIO(data), delimiter=";"))[1][1] == "MSK-1"


def test_two_working_days_skip_the_closed_weekend() -> None:
    hours = WorkingHours.parse({"mon-fri": "09:00-18:00"}, "Europe/Moscow")
    friday = datetime(2026, 11, 27, 15, 0, tzinfo=MSK)
    remind, due = complaint_deadlines(hours, friday, 2)
    assert due.astimezone(MSK) == datetime(2026, 12, 1, 15, 0, tzinfo=MSK)  # Tuesday
    assert remind.astimezone(MSK) == datetime(2026, 11, 30, 15, 0, tzinfo=MSK)  # Monday: half the open time
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=MSK)
    assert complaint_deadlines(hours, sunday, 2)[1].astimezone(MSK) == datetime(2026, 12, 2, 9, 0, tzinfo=MSK)
    late = datetime(2026, 11, 24, 17, 30, tzinfo=MSK)
    saturday_hours = WorkingHours.parse({"mon-fri": "09:00-18:00", "sat": "10:00-16:00"}, "Europe/Moscow")
    assert complaint_deadlines(saturday_hours, datetime(2026, 11, 26, 17, 30, tzinfo=MSK), 2)[1].astimezone(MSK) == datetime(
        2026, 11, 28, 16, 0, tzinfo=MSK  # Saturday closes at 16:00: due at closing
    )
    assert complaint_deadlines(hours, late, 2)[1].astimezone(MSK) == datetime(2026, 11, 26, 17, 30, tzinfo=MSK)
