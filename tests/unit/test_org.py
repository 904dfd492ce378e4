"""The org file: validation names the YAML path, import is idempotent and never destroys bindings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tortoise import Tortoise, connections

from bot.db import tortoise_config
from bot.models import Device, Office, Point, Role, RosterEntry, Staff
from bot.org import OrgFile, OrgFileError, import_org, load_org_file, parse_org_yaml

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "org.yaml"


@pytest.fixture
def org_text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


@pytest.fixture
def org() -> OrgFile:
    return load_org_file(FIXTURE)


@pytest_asyncio.fixture
async def db() -> AsyncIterator[None]:
    await Tortoise.init(config=tortoise_config("sqlite://:memory:"))
    await Tortoise.generate_schemas()
    yield
    await Tortoise.close_connections()


def reload(text: str, old: str, new: str) -> OrgFile:
    """The fixture with one edit, so each test states only what differs."""
    assert old in text, old
    return parse_org_yaml(text.replace(old, new, 1))


def problems_of(text: str) -> list[str]:
    with pytest.raises(OrgFileError) as exc:
        parse_org_yaml(text, source="org.yaml")
    return exc.value.problems


async def total_changes() -> int:
    rows = await connections.get("sqlite").execute_query_dict("SELECT total_changes() AS n")
    return int(rows[0]["n"])


# --------------------------------------------------------------------------- loading


def test_fixture_resolves_every_device_point(org: OrgFile) -> None:
    assert {d.point for d in org.devices} <= org.point_refs()
    assert {o.timezone for o in org.offices} == {"Europe/Moscow", "Asia/Yekaterinburg"}
    assert {s.role for s in org.staff} == set(Role)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("point: MSK-1/W4", "point: MSK-1/W9", "devices[3].point: unknown point MSK-1/W9"),
        ("{code: W2, name: Окно 2}", "{code: W2, nmae: Окно 2}", "offices[0].points[1].nmae: unknown field"),
        ("Asia/Yekaterinburg", "Asia/Ekaterinburgg", "offices[1].timezone: unknown time zone"),
        ('sat: "10:00-18:00"}', 'sat: "10:00-1800"}', "offices[0].working_hours: 'sat'"),
        ("mon-fri: \"09:00-20:00\"", "mon-fry: \"09:00-20:00\"", "offices[0].working_hours: 'mon-fry'"),
        ("role: quality", "role: qa", "staff[4].role: Input should be"),
        ("office: EKB-1, telegram_id: 5012", "office: EKB-2, telegram_id: 5012", "staff[3].office: unknown office EKB-2"),
        ("{code: admin,", "{code: petrov,", "staff[5].code: duplicate petrov"),
        ("telegram_id: 5012", "telegram_id: 5011", "staff[3].telegram_id: duplicate 5011"),
        ("{staff: ivanova, point", "{staff: ivanov, point", "roster[0].staff: unknown staff ivanov"),
        ("point: EKB-1/W2", "point: EKB-1/W7", "roster[2].point: unknown point EKB-1/W7"),
        ("days: mon-sat", "days: mon-sut", "roster[0].days: unknown day 'sut'"),
        ("point: MSK-1/W1, days", "point: MSK-1-W1, days", "roster[0].point: point 'MSK-1-W1' must be OFFICE/POINT"),
        ("{id: ekb-btn-1,", "{id: btn-17,", "devices[4].id: duplicate btn-17"),
        (
            "kind: tasmota\n    topic: desk3 ",
            "kind: zigbee2mqtt\n    topic: zigbee2mqtt/desk2 ",
            "devices[2].topic: duplicate zigbee2mqtt zigbee2mqtt/desk2, already at devices[1].topic",
        ),
        ("kind: tasmota", "kind: tasmot", "devices[2].kind: Input should be"),
        ("    topic: desk3                   # Tasmota's %topic%\n", "", "devices[2].topic: required for kind tasmota"),
        ("Button3.SINGLE: bad", "Button3.SINGLE: awful", "devices[2].actions['Button3.SINGLE']: Input should be"),
        ("{id: btn-17, kind: native,", "{id: btn-17, kind: native, topic: x,", "devices[0].topic: native devices"),
        ("code: EKB-1\n", "code: MSK-1\n", "offices[1].code: duplicate MSK-1"),
        ("{code: W2, name: Окно 2}\nstaff", "{code: W1, name: Окно 2}\nstaff", "offices[1].points[1].code: duplicate W1"),
        ("staff_chat: -1001000000011", "staff_chat: 1001000000011", "offices[1].staff_chat: 1001000000011 is not"),
        ("comment_deadline_minutes: 60", "comment_deadline_minutes: 0", "offices[1].comment_deadline_minutes:"),
        ("company: Demo Retail\n", "", "company: required field is missing"),
        (
            "working minutes\n",
            "working minutes\n  speech_rules: {forbidden: [\"ду*\"]}\n",
            "defaults.speech_rules: rule 'ду*': the stem 'ду*' is shorter than 3 letters",
        ),
        (
            "    review_url: https://yandex.ru/maps/org/1234567890/reviews/\n",
            "    speech_rules: {required: {greeting: [1]}}\n",
            "offices[0].speech_rules: a rule must be a non-empty string, got 1",
        ),
        ("{id: rec-msk-w1, kind: recorder,", "{id: rec-msk-w1, kind: recorder, topic: x,", "devices[5].topic: recorder devices"),
        ("staff:\n", "stuff:\n", "stuff: unknown field; did you mean staff?"),
    ],
)
def test_validation_error_names_yaml_path_and_line(org_text: str, old: str, new: str, expected: str) -> None:
    assert old in org_text, old
    problems = problems_of(org_text.replace(old, new, 1))
    assert any(p.startswith(expected) for p in problems), problems
    assert all("(line " in p for p in problems), problems


def test_every_problem_is_on_its_own_line(org_text: str) -> None:
    text = org_text.replace("point: MSK-1/W4", "point: MSK-1/W9").replace("point: MSK-1/W3", "point: MSK-1/W8")
    with pytest.raises(OrgFileError) as exc:
        parse_org_yaml(text, source="org.yaml")
    assert str(exc.value).splitlines() == [
        "org.yaml: 2 problems",
        "devices[2].point: unknown point MSK-1/W8; did you mean MSK-1/W4? (line 58)",
        "devices[3].point: unknown point MSK-1/W9; did you mean MSK-1/W4? (line 63)",
    ]


def test_yaml_syntax_error_reports_its_line(org_text: str) -> None:
    problems = problems_of(org_text.replace("- {code: W3, name: Окно 3}", "- {code: W3, name: Окно 3"))
    assert len(problems) == 1
    assert problems[0].startswith("YAML syntax error at line 19, column")


def test_duplicate_yaml_key_is_an_error_not_an_overwrite(org_text: str) -> None:
    problems = problems_of(org_text.replace("    timezone: Europe/Moscow\n", "    timezone: Europe/Moscow\n" * 2))
    assert problems == [
        "YAML error at line 11, column 5: duplicate key 'timezone' (while constructing a mapping at line 8)"
    ]


def test_missing_file_is_an_org_file_error(tmp_path: Path) -> None:
    with pytest.raises(OrgFileError, match="file not found"):
        load_org_file(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- import


@pytest.mark.asyncio
async def test_first_import_adds_everything(db: None, org: OrgFile) -> None:
    report = await import_org(org)
    assert report.lines()[:5] == [
        "offices: 2 added, 0 changed, 0 unchanged",
        "points: 7 added, 0 changed, 0 unchanged",
        "staff: 6 added, 0 changed, 0 unchanged",
        "roster: 2 added, 0 changed, 0 unchanged",
        "devices: 7 added, 0 changed, 0 unchanged",
    ]
    device = await Device.get(id="desk4-shelly").prefetch_related("point__office")
    assert (device.point.office.code, device.point.code) == ("MSK-1", "W4")
    assert device.actions == {"input:0.single_push": "good", "input:1.single_push": "neutral", "input:2.single_push": "bad"}
    assert await RosterEntry.filter(staff__code="smirnova").count() == 2


@pytest.mark.asyncio
async def test_reimport_reports_everything_unchanged_and_writes_nothing(db: None, org: OrgFile) -> None:
    await import_org(org)
    before = await total_changes()
    report = await import_org(load_org_file(FIXTURE))
    assert await total_changes() == before
    assert not report.wrote_anything
    assert report.lines() == [
        "offices: 0 added, 0 changed, 2 unchanged",
        "points: 0 added, 0 changed, 7 unchanged",
        "staff: 0 added, 0 changed, 6 unchanged",
        "roster: 0 added, 0 changed, 2 unchanged",
        "devices: 0 added, 0 changed, 7 unchanged",
        "reasons: 0 added, 0 changed, 5 unchanged",
    ]


@pytest.mark.asyncio
async def test_changed_field_is_reported_by_name(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    edited = reload(org_text, "name: Москва, Тверская 1", "name: Москва, Тверская 3")
    report = await import_org(edited)
    assert [(c.key, c.fields) for c in report.offices.changed] == [("MSK-1", ["name"])]
    assert report.offices.unchanged == ["EKB-1"]
    assert "  changed MSK-1: name" in report.lines()
    assert (await Office.get(code="MSK-1")).name == "Москва, Тверская 3"


@pytest.mark.asyncio
async def test_moved_device_reports_point_and_kind(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    edited = reload(org_text, "{id: btn-17, kind: native, point: MSK-1/W1}", "{id: btn-17, kind: native, point: EKB-1/W2}")
    report = await import_org(edited)
    assert [(c.key, c.fields) for c in report.devices.changed] == [("btn-17", ["point"])]
    assert (await Device.get(id="btn-17").prefetch_related("point")).point.code == "W2"


@pytest.mark.asyncio
async def test_omitted_telegram_id_is_not_cleared(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    await Staff.filter(code="smirnova").update(telegram_id=7777)  # bound later with /invite
    edited = reload(org_text, "office: EKB-1, telegram_id: 5011}", "office: EKB-1}")
    report = await import_org(edited)
    assert (await Staff.get(code="smirnova")).telegram_id == 7777
    assert "smirnova" in report.staff.unchanged


@pytest.mark.asyncio
async def test_explicit_null_telegram_id_clears_it(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    report = await import_org(reload(org_text, "telegram_id: 5011}", "telegram_id: null}"))
    assert (await Staff.get(code="smirnova")).telegram_id is None
    assert [(c.key, c.fields) for c in report.staff.changed] == [("smirnova", ["telegram_id"])]


@pytest.mark.asyncio
async def test_omitted_chat_ids_are_kept(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    edited = reload(org_text, "    staff_chat: -1001000000011\n    manager_chat: 5012\n", "")
    report = await import_org(edited)
    office = await Office.get(code="EKB-1")
    assert (office.staff_chat_id, office.manager_chat_id) == (-1001000000011, 5012)
    assert "EKB-1" in report.offices.unchanged


@pytest.mark.asyncio
async def test_defaults_fill_office_language_and_deadline(db: None, org: OrgFile) -> None:
    await import_org(org)
    msk, ekb = await Office.get(code="MSK-1"), await Office.get(code="EKB-1")
    assert (msk.language, msk.comment_deadline_minutes) == ("ru", 30)
    assert (ekb.language, ekb.comment_deadline_minutes) == ("ru", 60)
    assert msk.working_hours == {"mon-fri": "09:00-20:00", "sat": "10:00-18:00"}


@pytest.mark.asyncio
async def test_rows_not_in_file_are_kept_and_counted(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    edited = reload(org_text, "  - {id: ekb-btn-1, kind: native, point: EKB-1/W1}\n", "")
    edited = edited.model_copy(update={"staff": [s for s in edited.staff if s.code != "admin"]})
    report = await import_org(edited)
    assert await Device.filter(id="ekb-btn-1").exists()
    assert await Staff.filter(code="admin").exists()
    assert report.devices.not_in_file == 1
    assert "devices: 0 added, 0 changed, 6 unchanged, 1 not in file (kept)" in report.lines()


@pytest.mark.asyncio
async def test_roster_is_replaced_for_listed_staff(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    edited = reload(org_text, "{staff: ivanova, point: MSK-1/W1,", "{staff: ivanova, point: MSK-1/W2,")
    report = await import_org(edited)
    assert [(c.key, c.fields) for c in report.roster.changed] == [
        ("ivanova", ["-MSK-1/W1 mon-sat 09:00-20:00", "+MSK-1/W2 mon-sat 09:00-20:00"])
    ]
    entries = await RosterEntry.filter(staff__code="ivanova").prefetch_related("point")
    assert [e.point.code for e in entries] == ["W2"]


@pytest.mark.asyncio
async def test_telegram_ids_can_be_swapped_in_one_import(db: None, org: OrgFile, org_text: str) -> None:
    await import_org(org)
    text = org_text.replace("telegram_id: 5001}", "telegram_id: X}").replace("telegram_id: 5002}", "telegram_id: 5001}")
    await import_org(parse_org_yaml(text.replace("telegram_id: X}", "telegram_id: 5002}")))
    assert (await Staff.get(code="ivanova")).telegram_id == 5002
    assert (await Staff.get(code="petrov")).telegram_id == 5001


@pytest.mark.asyncio
async def test_taking_a_telegram_id_from_staff_outside_the_file_rolls_back(
    db: None, org: OrgFile, org_text: str
) -> None:
    await import_org(org)
    await Staff.create(code="outsider", name="Not In File", telegram_id=9999)
    text = org_text.replace("telegram_id: 5201", "telegram_id: 9999")
    edited = reload(text, "name: Москва, Тверская 1", "name: Москва, Тверская 3")
    with pytest.raises(OrgFileError, match=r"staff\[5\]\.telegram_id: 9999 already belongs to staff outsider"):
        await import_org(edited)
    assert (await Office.get(code="MSK-1")).name == "Москва, Тверская 1"  # written first, rolled back
    assert (await Staff.get(code="admin")).telegram_id == 5201


@pytest.mark.asyncio
async def test_points_are_keyed_by_office(db: None, org: OrgFile) -> None:
    await import_org(org)
    assert await Point.filter(code="W1").count() == 2


# --------------------------------------------------------------------------- reasons, kiosks, complaints


REASONS_V1 = "  version: 1 "


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("{code: price, label: Цены,", "{code: rude, label: Цены,", "reasons.items[3].code: duplicate rude"),
        ("reasons: [wait, rude, incompetent]", "reasons: [wait, rud]", "offices[1].reasons[1]: unknown reason rud; did you mean rude?"),
        ("employee: false}   #", "employee: maybe}   #", "reasons.items[0].employee: Input should be a valid boolean"),
        ("  version: 1 ", "  version: 0 ", "reasons.version: Input should be greater than or equal to 1"),
        ("{code: stock, label:", "{code: 'out of stock', label:", "reasons.items[4].code: bad reason code 'out of stock'"),
        (
            "{id: kiosk-msk-1, kind: kiosk, point: MSK-1/EXIT}",
            "{id: kiosk-msk-1, kind: kiosk, point: MSK-1/EXIT, topic: kiosk1}",
            "devices[6].topic: kiosk devices publish under the loyalty topic root",
        ),
        ("complaint_due_days: 2 ", "complaint_due_days: 0 ", "offices[0].complaint_due_days: Input should be greater than 0"),
    ],
)
def test_reason_and_kiosk_mistakes_name_yaml_path_and_line(org_text: str, old: str, new: str, expected: str) -> None:
    assert old in org_text, old
    problems = problems_of(org_text.replace(old, new, 1))
    assert any(p.startswith(expected) for p in problems), problems
    assert all("(line " in p for p in problems), problems


@pytest.mark.asyncio
async def test_reasons_office_complaint_fields_and_kiosk_are_imported(db: None, org: OrgFile) -> None:
    from bot.models import Reason

    report = await import_org(org)
    assert report.reasons.added == ["wait", "rude", "incompetent", "price", "stock"]
    rows = {r.code: r for r in await Reason.all()}
    assert (rows["wait"].label, rows["wait"].label_en, rows["wait"].staff_related) == ("Долгое ожидание", "Long wait", False)
    assert rows["rude"].staff_related is True and rows["rude"].list_version == 1 and rows["rude"].active
    msk, ekb = await Office.get(code="MSK-1"), await Office.get(code="EKB-1")
    assert (msk.complaint_chat_id, msk.complaint_due_days, msk.review_title) == (-1001000000003, 2, "Яндекс Карты")
    assert (msk.reason_codes, ekb.reason_codes) == (None, ["wait", "rude", "incompetent"])
    kiosk = await Device.get(id="kiosk-msk-1").prefetch_related("point")
    assert (kiosk.kind, kiosk.point.code, kiosk.topic) == ("kiosk", "EXIT", None)


@pytest.mark.asyncio
async def test_changed_reason_with_a_version_bump_is_updated_and_tagged(db: None, org: OrgFile, org_text: str) -> None:
    from bot.models import Reason

    await import_org(org)
    text = org_text.replace(REASONS_V1, "  version: 2 ").replace("label: Цены, label_en: Prices, employee: false", "label: Высокие цены, label_en: Prices, employee: false")
    report = await import_org(parse_org_yaml(text))
    assert [(c.key, c.fields) for c in report.reasons.changed] == [("price", ["label"])]
    price, wait = await Reason.get(code="price"), await Reason.get(code="wait")
    assert (price.label, price.list_version) == ("Высокие цены", 2)
    assert wait.list_version == 1  # untouched rows keep the version that last changed them


@pytest.mark.asyncio
async def test_reason_left_out_is_retired_not_deleted(db: None, org: OrgFile, org_text: str) -> None:
    from bot.models import Reason

    await import_org(org)
    text = org_text.replace(REASONS_V1, "  version: 2 ").replace(
        "    - {code: stock, label: Нет нужного товара, label_en: Item out of stock, employee: false}\n", ""
    )
    report = await import_org(parse_org_yaml(text))
    stock = await Reason.get(code="stock")
    assert (stock.active, stock.list_version) == (False, 2)
    assert [(c.key, c.fields) for c in report.reasons.changed] == [("stock", ["retired"])]
    assert await Reason.filter(active=True).count() == 4
    # listed again later: back in service
    await import_org(parse_org_yaml(org_text.replace(REASONS_V1, "  version: 3 ")))
    assert (await Reason.get(code="stock")).active is True


@pytest.mark.asyncio
async def test_reason_version_going_back_is_an_error_with_its_line(db: None, org: OrgFile, org_text: str) -> None:
    from bot.models import Reason

    await import_org(parse_org_yaml(org_text.replace(REASONS_V1, "  version: 3 ").replace("label: Цены,", "label: Цена,")))
    with pytest.raises(OrgFileError) as exc:
        await import_org(org)  # version 1 < 3
    line = org_text.splitlines().index("  version: 1                       # raise it whenever the list changes; codes no longer listed are retired") + 1
    assert exc.value.problems == [
        "reasons.version: 1 is lower than version 3 already imported; versions only go up: "
        f"start from the current list and raise it to 4 (line {line})"
    ]
    assert (await Reason.get(code="price")).label == "Цена"


@pytest.mark.asyncio
async def test_changed_reason_list_under_the_same_version_is_refused_and_rolled_back(
    db: None, org: OrgFile, org_text: str
) -> None:
    from bot.models import Reason

    await import_org(org)
    edited = parse_org_yaml(org_text.replace("name: Москва, Тверская 1", "name: Москва, Тверская 3").replace("label: Цены,", "label: Цена,"))
    with pytest.raises(OrgFileError, match=r"reasons\.version: the list changed \(price\) but its version is still 1; raise reasons\.version to 2 \(line \d+\)"):
        await import_org(edited)
    assert (await Reason.get(code="price")).label == "Цены"
    assert (await Office.get(code="MSK-1")).name == "Москва, Тверская 1"


@pytest.mark.asyncio
async def test_file_without_reasons_leaves_the_list_alone(db: None, org: OrgFile, org_text: str) -> None:
    from bot.models import Reason

    await import_org(org)
    cut = org_text[: org_text.index("reasons:                           #")]
    cut = cut.replace("    reasons: [wait, rude, incompetent]   # the subset its kiosks offer (absent: all)\n", "")
    report = await import_org(parse_org_yaml(cut))
    assert await Reason.filter(active=True).count() == 5
    assert "reasons: 0 added, 0 changed, 0 unchanged" in report.lines()
