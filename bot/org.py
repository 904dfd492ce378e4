"""The org file: the admin's YAML description of offices, points, staff, roster and devices.

``load_org_file`` turns the YAML into a validated ``OrgFile`` or raises ``OrgFileError`` that
lists every problem with its YAML path and line, so an admin fixes a file in one pass.
``import_org`` writes it idempotently in one transaction: a re-import of the same file
writes nothing, and rows the file does not mention are never deleted.

Optional fields follow one rule on import: *omitted* keeps what the database has (chat ids
bound with ``/bind``, telegram ids bound with ``/invite``), an explicit ``null`` clears it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bot.models import Device, Office, Point, RatingValue, Reason, Role, RosterEntry, Staff
from bot.working_hours import WorkingHours, parse_days, parse_hours
from speech.rules import RuleSet

__all__ = [
    "Change",
    "EntityReport",
    "ImportReport",
    "OrgDefaults",
    "OrgDevice",
    "OrgFile",
    "OrgFileError",
    "OrgOffice",
    "OrgPoint",
    "OrgReason",
    "OrgReasons",
    "OrgRosterEntry",
    "OrgStaff",
    "import_org",
    "load_org_file",
    "parse_org_yaml",
]

Language = Literal["ru", "en"]
DeviceKind = Literal["native", "zigbee2mqtt", "tasmota", "shelly", "recorder", "kiosk"]
_TOPIC_ROOT_KINDS = ("native", "recorder", "kiosk")  # publish under the loyalty topic root: no topic, no actions

# Codes become MQTT topic levels ({site}, {point}, {device}), so no '/', '+', '#' or spaces.
_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_POINT_REF_RE = re.compile(r"^([^/\s]+)/([^/\s]+)$")
_URL_RE = re.compile(r"^https?://\S+$")


def _code_checker(what: str, max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        if not _CODE_RE.match(value):
            raise ValueError(
                f"bad {what} {value!r}: use letters, digits, '-', '_' or '.' (it is used in MQTT topics)"
            )
        if len(value) > max_length:
            raise ValueError(f"{what} {value!r} is longer than {max_length} characters")
        return value

    return AfterValidator(check)


OfficeCode = Annotated[str, _code_checker("office code", 32)]
PointCode = Annotated[str, _code_checker("point code", 32)]
StaffCode = Annotated[str, _code_checker("staff code", 64)]
DeviceId = Annotated[str, _code_checker("device id", 100)]
ReasonCode = Annotated[str, _code_checker("reason code", 64)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


def _point_ref(value: str) -> str:
    if not _POINT_REF_RE.match(value):
        raise ValueError(f"point {value!r} must be OFFICE/POINT, e.g. MSK-1/W1")
    return value


PointRef = Annotated[str, AfterValidator(_point_ref)]


def _field_error(field_name: str, message: str) -> PydanticCustomError:
    """An error raised by a model validator but about one field, so its path names that field."""
    return PydanticCustomError("org_field", "{message}", {"message": message, "field": field_name})


class _OrgModel(BaseModel):
    # extra="forbid" turns a typo (``nmae:``) into an error instead of a silently ignored key;
    # numbers are accepted where codes are expected because YAML reads ``code: 1`` as an int.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, str_strip_whitespace=True)


def _checked_rules(value: dict[str, Any]) -> dict[str, Any]:
    # Parsed by the code that matches transcripts, so a rule that loads is a rule that runs.
    RuleSet.from_config(value)
    return value


SpeechRules = Annotated[dict[str, Any], AfterValidator(_checked_rules)]
"""Forbidden words and required phrases heard in transcripts (``speech.rules`` has the syntax)."""


class OrgDefaults(_OrgModel):
    language: Language = "ru"
    comment_deadline_minutes: int = Field(default=30, gt=0, le=7 * 24 * 60)
    post_positive: bool = False
    hourly_digest: bool = False
    speech_rules: SpeechRules | None = None
    complaint_due_days: int = Field(default=2, gt=0, le=60)


class OrgReason(_OrgModel):
    """One reason for dissatisfaction; ``employee: false`` = outside the employee's control."""

    code: ReasonCode
    label: Name
    label_en: Name | None = None
    employee: bool = True


class OrgReasons(_OrgModel):
    """The versioned list of reasons: a changed list needs a higher ``version``."""

    version: int = Field(ge=1)
    items: list[OrgReason] = Field(min_length=1)


class OrgPoint(_OrgModel):
    code: PointCode
    name: Name


class OrgOffice(_OrgModel):
    code: OfficeCode
    name: Name
    timezone: str = "Europe/Moscow"
    working_hours: dict[str, str] = Field(default_factory=dict)
    staff_chat: int | None = None
    manager_chat: int | None = None
    review_url: str | None = Field(default=None, max_length=500)
    language: Language | None = None
    comment_deadline_minutes: int | None = Field(default=None, gt=0, le=7 * 24 * 60)
    post_positive: bool | None = None
    hourly_digest: bool | None = None
    speech_rules: SpeechRules | None = None
    complaint_chat: int | None = None  # complaint handlers: the only chat that sees customers' contacts
    complaint_due_days: int | None = Field(default=None, gt=0, le=60)  # working days
    reasons: list[ReasonCode] | None = None  # codes from the top-level list it offers; absent: all
    review_title: str | None = Field(default=None, min_length=1, max_length=200)  # e.g. Яндекс Карты
    points: list[OrgPoint] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like Europe/Moscow") from None
        return value

    @field_validator("working_hours")
    @classmethod
    def _parsable_hours(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # Parsed with the same code that computes deadlines, so what loads is what runs.
        try:
            WorkingHours.parse(value, info.data.get("timezone") or "UTC")
        except ValueError as e:
            raise ValueError(str(e).removeprefix("working_hours").lstrip(": ")) from None
        return value

    @field_validator("staff_chat")
    @classmethod
    def _group_id(cls, value: int | None) -> int | None:
        if value is not None and value >= 0:
            raise ValueError(f"{value} is not a group chat id; group ids are negative, e.g. -1001234567890")
        return value

    @field_validator("review_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _URL_RE.match(value):
            raise ValueError(f"review_url {value!r} must start with http:// or https://")
        return value


class OrgStaff(_OrgModel):
    code: StaffCode
    name: Name
    role: Role = Role.STAFF
    office: OfficeCode | None = None
    telegram_id: int | None = Field(default=None, gt=0)
    language: Language | None = None


class OrgRosterEntry(_OrgModel):
    staff: StaffCode
    point: PointRef
    days: str = Field(max_length=64)
    hours: str = Field(max_length=64)

    @field_validator("days")
    @classmethod
    def _days(cls, value: str) -> str:
        parse_days(value)
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        if not parse_hours(value):
            raise ValueError(f"hours {value!r} has no interval; write e.g. '09:00-20:00'")
        return value


class OrgDevice(_OrgModel):
    id: DeviceId
    kind: DeviceKind
    point: PointRef
    topic: str | None = Field(default=None, min_length=1, max_length=200)
    actions: dict[str, RatingValue] = Field(default_factory=dict)

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, value: str | None) -> str | None:
        if value is not None and ("+" in value or "#" in value):
            raise ValueError(f"topic {value!r} must not contain MQTT wildcards '+' or '#'")
        return value

    @model_validator(mode="after")
    def _mapping_fits_kind(self) -> OrgDevice:
        if self.kind in _TOPIC_ROOT_KINDS:
            if self.topic is not None:
                raise _field_error("topic", f"{self.kind} devices publish under the loyalty topic root; remove topic")
            if self.actions:
                raise _field_error("actions", f"{self.kind} devices send no button actions; remove actions")
        else:
            if not self.topic:
                raise _field_error("topic", f"required for kind {self.kind}")
            if not self.actions:
                raise _field_error("actions", f"required for kind {self.kind}: map its actions to good/neutral/bad")
        return self


Problem = tuple[tuple[str | int, ...], str]


class OrgFile(_OrgModel):
    company: Name
    defaults: OrgDefaults = Field(default_factory=OrgDefaults)
    offices: list[OrgOffice] = Field(default_factory=list)
    staff: list[OrgStaff] = Field(default_factory=list)
    roster: list[OrgRosterEntry] = Field(default_factory=list)
    devices: list[OrgDevice] = Field(default_factory=list)
    reasons: OrgReasons | None = None
    _reasons_version_line: int | None = PrivateAttr(default=None)  # for errors found at import

    @model_validator(mode="after")
    def _references(self) -> OrgFile:
        problems = self.reference_problems()
        if problems:
            summary = "\n".join(f"{_format_loc(loc)}: {msg}" for loc, msg in problems)
            raise PydanticCustomError("org_references", "{summary}", {"summary": summary, "problems": problems})
        return self

    def point_refs(self) -> set[str]:
        return {f"{o.code}/{p.code}" for o in self.offices for p in o.points}

    def reference_problems(self) -> list[Problem]:
        """Duplicates and dangling references, each with the path of the entry at fault."""
        problems: list[Problem] = []
        problems += _duplicates((("offices", i, "code"), o.code) for i, o in enumerate(self.offices))
        for i, office in enumerate(self.offices):
            problems += _duplicates(
                (("offices", i, "points", j, "code"), p.code) for j, p in enumerate(office.points)
            )
        problems += _duplicates((("staff", i, "code"), s.code) for i, s in enumerate(self.staff))
        problems += _duplicates(
            (("staff", i, "telegram_id"), s.telegram_id) for i, s in enumerate(self.staff) if s.telegram_id
        )
        problems += _duplicates((("devices", i, "id"), d.id) for i, d in enumerate(self.devices))
        reason_items = self.reasons.items if self.reasons else []
        problems += _duplicates((("reasons", "items", i, "code"), r.code) for i, r in enumerate(reason_items))
        reason_codes = {r.code for r in reason_items}
        for i, o in enumerate(self.offices):
            problems += _duplicates((("offices", i, "reasons", j), c) for j, c in enumerate(o.reasons or []))
            for j, code in enumerate(o.reasons or []):
                if code not in reason_codes:
                    problems.append((("offices", i, "reasons", j), _unknown("reason", code, reason_codes)))
        problems += _duplicates(
            (("devices", i, "topic"), f"{d.kind} {d.topic}") for i, d in enumerate(self.devices) if d.topic
        )
        offices = {o.code for o in self.offices}
        staff = {s.code for s in self.staff}
        points = self.point_refs()
        for i, s in enumerate(self.staff):
            if s.office is not None and s.office not in offices:
                problems.append((("staff", i, "office"), _unknown("office", s.office, offices)))
        for i, r in enumerate(self.roster):
            if r.staff not in staff:
                problems.append((("roster", i, "staff"), _unknown("staff", r.staff, staff)))
            if r.point not in points:
                problems.append((("roster", i, "point"), _unknown("point", r.point, points)))
        for i, d in enumerate(self.devices):
            if d.point not in points:
                problems.append((("devices", i, "point"), _unknown("point", d.point, points)))
        return problems


def _duplicates(items: Iterable[tuple[tuple[str | int, ...], Any]]) -> list[Problem]:
    first: dict[Any, tuple[str | int, ...]] = {}
    problems: list[Problem] = []
    for loc, value in items:
        if value in first:
            problems.append((loc, f"duplicate {value}, already at {_format_loc(first[value])}"))
        else:
            first[value] = loc
    return problems


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    return f"unknown {what} {value}" + (f"; did you mean {close[0]}?" if close else "")


# --------------------------------------------------------------------------- loading


class OrgFileError(Exception):
    """A file that cannot be imported; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{source}: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([header, *self.problems]))


class _OrgLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable; SafeConstructor reports it itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_ALL_FIELDS = sorted(
    {
        name
        for m in (OrgFile, OrgDefaults, OrgOffice, OrgPoint, OrgStaff, OrgRosterEntry, OrgDevice, OrgReasons, OrgReason)
        for name in m.model_fields
    }
)


def read_config_text(path: Path, error: type[OrgFileError] = OrgFileError) -> str:
    """A config file's text; a missing or unreadable file is ``error`` with one problem."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(str(path), [f"cannot read the file: {e}"]) from None


def load_yaml_mapping(
    text: str, source: str, expected: str, error: type[OrgFileError] = OrgFileError
) -> tuple[dict[str, Any], yaml.Node]:
    """The YAML document as a mapping and its node (for line numbers); duplicate keys, syntax
    errors and a document that is not a mapping (``expected`` says what it should hold) are
    ``error``."""
    loader = _OrgLoader(text)  # rejects duplicate keys, which PyYAML would silently overwrite
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        raise error(source, [_yaml_problem(e)]) from None
    except yaml.YAMLError as e:
        raise error(source, [f"YAML error: {e}"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict) or node is None:
        raise error(source, [f"the file must be a YAML mapping with {expected}"])
    return data, node


def load_org_file(path: str | Path) -> OrgFile:
    """Read and validate an org file; every problem is reported, not just the first."""
    path = Path(path)
    return parse_org_yaml(read_config_text(path), source=str(path))


def parse_org_yaml(text: str, source: str = "<org file>") -> OrgFile:
    """``load_org_file`` for text already in memory (tests, Telegram uploads)."""
    data, node = load_yaml_mapping(text, source, "company, offices, staff, roster, devices")
    try:
        org = OrgFile.model_validate(data)
    except ValidationError as e:
        raise OrgFileError(source, _validation_problems(e, node)) from None
    if org.reasons is not None:
        org._reasons_version_line = _line_of(node, ("reasons", "version"))
    return org


def _yaml_problem(e: yaml.MarkedYAMLError) -> str:
    mark = e.problem_mark or e.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
    kind = "YAML error" if isinstance(e, yaml.constructor.ConstructorError) else "YAML syntax error"
    text = f"{kind} at {where}: {e.problem or e.context}"
    if e.context and e.problem and e.context_mark:
        text += f" ({e.context} at line {e.context_mark.line + 1})"
    return text


def _validation_problems(error: ValidationError, root: yaml.Node | None) -> list[str]:
    problems: list[str] = []
    for err in error.errors():
        loc = tuple(err["loc"])
        if err["type"] == "org_references":
            for ref_loc, msg in err["ctx"]["problems"]:
                problems.append(_problem(tuple(ref_loc), msg, root))
            continue
        if err["type"] == "org_field":
            loc, msg = (*loc, err["ctx"]["field"]), err["ctx"]["message"]
        elif err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _ALL_FIELDS, n=1)
            msg = "unknown field" + (f"; did you mean {close[0]}?" if close else "")
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "value_error":
            msg = err["msg"].removeprefix("Value error, ")
        else:
            msg = err["msg"]
            if not isinstance(err.get("input"), dict | list):
                msg += f", got {err.get('input')!r}"
        problems.append(_problem(loc, msg, root))
    return problems


def _problem(loc: tuple[str | int, ...], msg: str, root: yaml.Node | None) -> str:
    line = _line_of(root, loc)
    return f"{_format_loc(loc) or '(top level)'}: {msg}" + (f" (line {line})" if line else "")


def _format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _line_of(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the deepest YAML node on ``loc``: errors point into the file."""
    if node is None:
        return None
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        elif isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if str(kv[0].value) == str(part)), None)
            if match is None:
                break
            node = match[1]
        else:
            break
    return node.start_mark.line + 1


# --------------------------------------------------------------------------- import


@dataclass
class Change:
    """One row the import updated, and which org-file fields differed."""

    key: str
    fields: list[str]


@dataclass
class EntityReport:
    added: list[str] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_in_file: int = 0

    def summary(self, name: str) -> str:
        text = f"{name}: {len(self.added)} added, {len(self.changed)} changed, {len(self.unchanged)} unchanged"
        if self.not_in_file:
            text += f", {self.not_in_file} not in file (kept)"
        return text


@dataclass
class ImportReport:
    """What ``import_org`` did, per entity, for the CLI and the admin's Telegram reply."""

    offices: EntityReport = field(default_factory=EntityReport)
    points: EntityReport = field(default_factory=EntityReport)
    staff: EntityReport = field(default_factory=EntityReport)
    roster: EntityReport = field(default_factory=EntityReport)
    devices: EntityReport = field(default_factory=EntityReport)
    reasons: EntityReport = field(default_factory=EntityReport)  # not_in_file: retired (kept, inactive)

    def entities(self) -> dict[str, EntityReport]:
        return {
            "offices": self.offices,
            "points": self.points,
            "staff": self.staff,
            "roster": self.roster,
            "devices": self.devices,
            "reasons": self.reasons,
        }

    @property
    def wrote_anything(self) -> bool:
        return any(r.added or r.changed for r in self.entities().values())

    def lines(self) -> list[str]:
        out: list[str] = []
        for name, report in self.entities().items():
            out.append(report.summary(name))
            out.extend(f"  changed {c.key}: {', '.join(c.fields)}" for c in report.changed)
        return out


def _apply(obj: Model, desired: dict[str, tuple[str, Any]]) -> list[str]:
    """Set differing attributes; ``desired`` maps db attribute -> (org-file name, value)."""
    changed: list[str] = []
    for attr, (_, value) in desired.items():
        if getattr(obj, attr) != value:
            setattr(obj, attr, value)
            changed.append(attr)
    return changed


async def _upsert(
    model: type[Model],
    existing: Model | None,
    key: dict[str, Any],
    desired: dict[str, tuple[str, Any]],
    label: str,
    report: EntityReport,
    conn: BaseDBAsyncClient,
) -> Model:
    if existing is None:
        obj = await model.create(using_db=conn, **key, **{a: v for a, (_, v) in desired.items()})
        report.added.append(label)
        return obj
    changed = _apply(existing, desired)
    if changed:
        await existing.save(using_db=conn, update_fields=changed)
        report.changed.append(Change(label, [desired[a][0] for a in changed]))
    else:
        report.unchanged.append(label)
    return existing


def _kept_unless_set(m: BaseModel, name: str, attr: str, value: Any, into: dict[str, tuple[str, Any]]) -> None:
    """Omitted keeps the database value (bound from Telegram); an explicit null clears it."""
    if name in m.model_fields_set:
        into[attr] = (name, value)


async def import_org(org: OrgFile, connection_name: str | None = None) -> ImportReport:
    """Upsert the org file in one transaction; nothing absent from the file is deleted.

    Roster lines are replaced per staff member listed in the file (when the file has a
    ``roster`` section), and only when they differ, so an identical re-import writes nothing.
    Raises ``OrgFileError`` (and rolls back) when the file would take a telegram id from a
    staff member it does not re-assign.
    """
    report = ImportReport()
    d = org.defaults
    async with in_transaction(connection_name) as conn:
        if org.reasons is not None:
            await _import_reasons(org, report.reasons, conn)
        offices = {o.code: o for o in await Office.all().using_db(conn)}
        for o in org.offices:
            desired: dict[str, tuple[str, Any]] = {
                "name": ("name", o.name),
                "timezone": ("timezone", o.timezone),
                "working_hours": ("working_hours", dict(o.working_hours)),
                "language": ("language", o.language or d.language),
                "comment_deadline_minutes": (
                    "comment_deadline_minutes",
                    o.comment_deadline_minutes or d.comment_deadline_minutes,
                ),
                "post_positive": ("post_positive", d.post_positive if o.post_positive is None else o.post_positive),
                "hourly_digest": ("hourly_digest", d.hourly_digest if o.hourly_digest is None else o.hourly_digest),
                "speech_rules": ("speech_rules", o.speech_rules if o.speech_rules is not None else d.speech_rules),
                "complaint_due_days": ("complaint_due_days", o.complaint_due_days or d.complaint_due_days),
                "reason_codes": ("reasons", list(o.reasons) if o.reasons is not None else None),
            }
            _kept_unless_set(o, "staff_chat", "staff_chat_id", o.staff_chat, desired)
            _kept_unless_set(o, "manager_chat", "manager_chat_id", o.manager_chat, desired)
            _kept_unless_set(o, "complaint_chat", "complaint_chat_id", o.complaint_chat, desired)
            _kept_unless_set(o, "review_url", "review_url", o.review_url, desired)
            _kept_unless_set(o, "review_title", "review_title", o.review_title, desired)
            offices[o.code] = await _upsert(
                Office, offices.get(o.code), {"code": o.code}, desired, o.code, report.offices, conn
            )
        report.offices.not_in_file = len(offices.keys() - {o.code for o in org.offices})

        office_code = {o.id: code for code, o in offices.items()}
        points = {
            f"{office_code[p.office_id]}/{p.code}": p  # type: ignore[attr-defined]
            for p in await Point.all().using_db(conn)
        }
        for o in org.offices:
            for p in o.points:
                ref = f"{o.code}/{p.code}"
                points[ref] = await _upsert(
                    Point,
                    points.get(ref),
                    {"office_id": offices[o.code].id, "code": p.code},
                    {"name": ("name", p.name)},
                    ref,
                    report.points,
                    conn,
                )
        report.points.not_in_file = len(points.keys() - org.point_refs())

        staff = {s.code: s for s in await Staff.all().using_db(conn)}
        await _free_telegram_ids(org, staff, conn)
        for s in org.staff:
            desired = {"name": ("name", s.name), "role": ("role", s.role)}
            _kept_unless_set(s, "office", "office_id", offices[s.office].id if s.office else None, desired)
            _kept_unless_set(s, "telegram_id", "telegram_id", s.telegram_id, desired)
            _kept_unless_set(s, "language", "language", s.language, desired)
            staff[s.code] = await _upsert(
                Staff, staff.get(s.code), {"code": s.code}, desired, s.code, report.staff, conn
            )
        file_staff = {s.code for s in org.staff}
        report.staff.not_in_file = len(staff.keys() - file_staff)

        if "roster" in org.model_fields_set:
            await _import_roster(org, staff, points, report.roster, conn)

        devices = {dv.id: dv for dv in await Device.all().using_db(conn)}
        for dv in org.devices:
            desired = {
                "kind": ("kind", dv.kind),
                "point_id": ("point", points[dv.point].id),
                "topic": ("topic", dv.topic),
                "actions": ("actions", {k: str(v) for k, v in dv.actions.items()}),
            }
            await _upsert(Device, devices.get(dv.id), {"id": dv.id}, desired, dv.id, report.devices, conn)
        report.devices.not_in_file = len(devices.keys() - {dv.id for dv in org.devices})
    return report


async def _import_reasons(org: OrgFile, report: EntityReport, conn: BaseDBAsyncClient) -> None:
    """Add new codes, update changed ones, retire the ones no longer listed; delete nothing.

    Every row written takes ``list_version = reasons.version``. The highest version stored is
    the list's current version: a lower one in the file, or a changed list under the same
    one, is refused (two copies of the file edited apart must not overwrite each other).
    """
    assert org.reasons is not None
    version = org.reasons.version
    existing = {r.code: r for r in await Reason.all().using_db(conn)}
    current = max((r.list_version for r in existing.values()), default=0)
    line = f" (line {org._reasons_version_line})" if org._reasons_version_line else ""
    if version < current:
        raise OrgFileError(
            "import", [f"reasons.version: {version} is lower than version {current} already imported; "
                       f"versions only go up: start from the current list and raise it to {current + 1}{line}"]
        )
    writes: list[tuple[Reason | None, str, dict[str, tuple[str, Any]]]] = []
    for item in org.reasons.items:
        desired: dict[str, tuple[str, Any]] = {
            "label": ("label", item.label),
            "label_en": ("label_en", item.label_en),
            "staff_related": ("employee", item.employee),
            "active": ("active", True),
        }
        row = existing.get(item.code)
        if row is None or any(getattr(row, attr) != value for attr, (_, value) in desired.items()):
            writes.append((row, item.code, desired))
        else:
            report.unchanged.append(item.code)
    listed = {item.code for item in org.reasons.items}
    retired = [r for code, r in existing.items() if code not in listed and r.active]
    if (writes or retired) and version <= current:
        changed = sorted([code for _, code, _ in writes] + [r.code for r in retired])
        raise OrgFileError(
            "import", [f"reasons.version: the list changed ({', '.join(changed)}) but its version is still "
                       f"{version}; raise reasons.version to {current + 1}{line}"]
        )
    for row, code, desired in writes:
        desired["list_version"] = ("version", version)
        if row is None:
            await Reason.create(using_db=conn, code=code, **{a: v for a, (_, v) in desired.items()})
            report.added.append(code)
            continue
        changed = [name for attr, (name, value) in desired.items() if getattr(row, attr) != value and attr != "list_version"]
        _apply(row, desired)
        await row.save(using_db=conn, update_fields=list(desired))
        report.changed.append(Change(code, changed))
    for row in retired:
        row.active = False
        row.list_version = version
        await row.save(using_db=conn, update_fields=["active", "list_version"])
        report.changed.append(Change(row.code, ["retired"]))
    report.not_in_file = sum(1 for code in existing if code not in listed)


async def _free_telegram_ids(org: OrgFile, staff: dict[str, Staff], conn: BaseDBAsyncClient) -> None:
    """Let the file move a telegram id between staff, and refuse to steal one from outside it.

    ``telegram_id`` is unique, so a swap needs the old holders cleared first; a holder the
    file does not re-assign would be left without its account, which is an admin's mistake.
    """
    wanted = {s.telegram_id: (i, s.code) for i, s in enumerate(org.staff) if s.telegram_id}
    reassigned = {s.code for s in org.staff if "telegram_id" in s.model_fields_set}
    problems: list[str] = []
    to_clear: list[Staff] = []
    for holder in staff.values():
        if holder.telegram_id not in wanted:
            continue
        i, code = wanted[holder.telegram_id]
        if holder.code == code:
            continue
        if holder.code in reassigned:
            to_clear.append(holder)
        else:
            problems.append(
                f"staff[{i}].telegram_id: {holder.telegram_id} already belongs to staff {holder.code}; "
                f"give {holder.code} another telegram_id (or null) in the file"
            )
    if problems:
        raise OrgFileError("import", problems)
    for holder in to_clear:
        holder.telegram_id = None
        await holder.save(using_db=conn, update_fields=["telegram_id"])


async def _import_roster(
    org: OrgFile,
    staff: dict[str, Staff],
    points: dict[str, Point],
    report: EntityReport,
    conn: BaseDBAsyncClient,
) -> None:
    point_ref = {p.id: ref for ref, p in points.items()}
    current: dict[int, list[tuple[str, str, str]]] = {}
    for e in await RosterEntry.all().using_db(conn):
        current.setdefault(e.staff_id, []).append((point_ref[e.point_id], e.days, e.hours))  # type: ignore[attr-defined]
    wanted: dict[str, list[tuple[str, str, str]]] = {s.code: [] for s in org.staff}
    for r in org.roster:
        wanted[r.staff].append((r.point, r.days, r.hours))
    for code, lines in wanted.items():
        member = staff[code]
        old, new = sorted(current.pop(member.id, [])), sorted(lines)
        if old == new:
            if new:
                report.unchanged.append(code)
            continue
        await RosterEntry.filter(staff_id=member.id).using_db(conn).delete()
        for ref, days, hours in new:
            await RosterEntry.create(using_db=conn, staff_id=member.id, point_id=points[ref].id, days=days, hours=hours)
        if not old:
            report.added.append(code)
        else:
            diff = [f"-{' '.join(x)}" for x in old if x not in new] + [f"+{' '.join(x)}" for x in new if x not in old]
            report.changed.append(Change(code, diff))
    report.not_in_file = len(current)
