"""Checklist templates: the quality service's YAML, its versions in the database, and the score.

A checklist file lists checklists; each has sections with weights (adding up to 100) and
criteria with points::

    checklists:
      - code: desk-sales            # [A-Za-z0-9_-], at most 64
        name: Стандарт продаж у стойки
        sections:
          - id: greeting            # unique within the checklist
            name: Приветствие
            weight: 20              # the section weights of a checklist add up to 100
            criteria:
              - id: hello           # unique within the whole checklist
                text: Поздоровался первым
                points: 1           # > 0, default 1
                type: yesno         # the only type for now (the default); anything else is rejected
                critical: false     # a "no" makes the whole score 0 (auto-fail)
                na: false           # N/A allowed: the criterion leaves the denominator
                auto: {required: greeting}   # or {forbidden: true}, or absent

``load_checklists_file`` validates it and raises ``ChecklistFileError`` listing every problem
with its YAML path and line, the way ``bot.org`` reports the org file (its loader and line
mapping are reused). ``import_checklists`` stores each checklist as a ``ChecklistTemplate``
version: an unchanged checklist writes nothing, an edited one adds version N+1, and nothing
is ever deleted — a score keeps the template version it was made with.

``score`` is the formula, pure: per section, earned / applicable points × the section's
weight, summed to 0-100 %. ``auto_answers`` fills the automatic criteria from a
conversation's stored rule hits (``bot.speech_service.rule_hits_record``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from tortoise.transactions import in_transaction

from bot.clock import Clock, SystemClock
from bot.models import ChecklistTemplate
from bot.org import OrgFileError, _problem, load_yaml_mapping, read_config_text

__all__ = [
    "ANSWERS",
    "Answer",
    "Auto",
    "Checklist",
    "ChecklistFile",
    "ChecklistFileError",
    "ChecklistModel",
    "Criterion",
    "CriterionModel",
    "ImportReport",
    "ImportedChecklist",
    "ScoreResult",
    "Section",
    "SectionModel",
    "SectionScore",
    "auto_answers",
    "by_template_id",
    "consistency_problems",
    "import_checklists",
    "latest",
    "load_checklists_file",
    "parse_checklists_yaml",
    "score",
]

Answer = Literal["yes", "no", "na"]
ANSWERS: tuple[Answer, ...] = ("yes", "no", "na")
CRITERION_TYPES = ("yesno",)
TOTAL_WEIGHT = 100

_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class ChecklistFileError(OrgFileError):
    """A checklist file that cannot be imported; ``problems`` holds one line per problem."""


# --------------------------------------------------------------------------- the file


def _id_checker(what: str, max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError(f"bad {what} {value!r}: use letters, digits, '-' or '_'")
        if len(value) > max_length:
            raise ValueError(f"{what} {value!r} is longer than {max_length} characters")
        return value

    return AfterValidator(check)


def _number(value: Any) -> Any:
    # YAML reads ``true`` as a bool and pydantic would take it for 1; ``"20"`` is a typo'd quote.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, got {value!r}")
    return value


def _whole_if_integral(value: int | float) -> int | float:
    # ``weight: 20.0`` and ``weight: 20`` are the same checklist, and digest the same.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Code = Annotated[str, _id_checker("checklist code", 64)]
ItemId = Annotated[str, _id_checker("id", 32)]  # keys of Score.answers, kept short for callback data
Name = Annotated[str, Field(min_length=1, max_length=200)]
Weight = Annotated[int | float, BeforeValidator(_number), Field(gt=0, le=TOTAL_WEIGHT), AfterValidator(_whole_if_integral)]
Points = Annotated[int, BeforeValidator(_number), Field(gt=0, le=1000)]


def _field_error(field_name: str, message: str) -> PydanticCustomError:
    """An error raised by a model validator but about one field, so its path names that field."""
    return PydanticCustomError("checklist_field", "{message}", {"message": message, "field": field_name})


class _FileModel(BaseModel):
    # extra="forbid": a typo (``wieght:``) is an error, not a silently ignored key; numbers are
    # accepted where ids are expected because YAML reads ``id: 1`` as an int.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, str_strip_whitespace=True)


class AutoModel(_FileModel):
    """``{required: NAME}`` (the office's required phrase NAME heard → yes) or ``{forbidden: true}``."""

    required: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    forbidden: bool | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AutoModel:
        if self.required is not None and self.forbidden is not None:
            raise ValueError("give either required: NAME or forbidden: true, not both")
        if self.forbidden is False:
            raise _field_error("forbidden", "only forbidden: true is meaningful; remove auto for a manual criterion")
        if self.required is None and not self.forbidden:
            raise ValueError("give required: NAME (a required phrase of the speech rules) or forbidden: true")
        return self


class CriterionModel(_FileModel):
    id: ItemId
    text: Annotated[str, Field(min_length=1, max_length=300)]
    points: Points = 1
    type: str = "yesno"
    critical: bool = False
    na: bool = False
    auto: AutoModel | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in CRITERION_TYPES:
            raise ValueError(f"unknown criterion type {value!r}; the only type is {', '.join(CRITERION_TYPES)}")
        return value


class SectionModel(_FileModel):
    id: ItemId
    name: Name
    weight: Weight
    criteria: list[CriterionModel] = Field(min_length=1)


class ChecklistModel(_FileModel):
    code: Code
    name: Name
    sections: list[SectionModel] = Field(min_length=1)


class ChecklistFile(_FileModel):
    checklists: list[ChecklistModel] = Field(min_length=1)

    def parsed(self) -> list[Checklist]:
        """The checklists as runtime types, version 0 (the import assigns real versions)."""
        return [Checklist.from_model(c, version=0) for c in self.checklists]


Problem = tuple[tuple[str | int, ...], str]


def consistency_problems(data: Any) -> list[Problem]:
    """Weights that do not add up and duplicated codes and ids, each with its YAML path.

    Checked on the raw file rather than in a model validator so that they are reported
    together with field errors in the same checklist (pydantic skips a model's validator
    when one of its fields failed). Values that are not what their field wants are skipped
    here: their field error says so.
    """
    problems: list[Problem] = []
    checklists = data.get("checklists") if isinstance(data, dict) else None
    if not isinstance(checklists, list):
        return problems
    codes: dict[str, int] = {}
    for i, checklist in enumerate(checklists):
        if not isinstance(checklist, dict):
            continue
        code = _raw_id(checklist.get("code"))
        if code is not None:
            if code in codes:
                problems.append((("checklists", i, "code"), f"duplicate checklist code {code}, already used by checklists[{codes[code]}]"))
            codes.setdefault(code, i)
        problems += [(("checklists", i, *loc), msg) for loc, msg in _checklist_problems(checklist.get("sections"))]
    return problems


def _checklist_problems(sections: Any) -> list[Problem]:
    if not isinstance(sections, list) or not sections:
        return []
    problems: list[Problem] = []
    weights = [s.get("weight") if isinstance(s, dict) else None for s in sections]
    if all(isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in weights):
        total = sum(Fraction(w) for w in weights)
        if total != TOTAL_WEIGHT:
            terms = " + ".join(f"{_whole_if_integral(w):g}" for w in weights)
            problems.append(
                (("sections",), f"section weights add up to {float(total):g} ({terms}); they must add up to {TOTAL_WEIGHT}")
            )
    section_ids: dict[str, int] = {}
    criterion_ids: dict[str, tuple[int, int]] = {}
    for i, section in enumerate(sections):
        if not isinstance(section, dict):
            continue
        sid = _raw_id(section.get("id"))
        if sid is not None:
            if sid in section_ids:
                problems.append((("sections", i, "id"), f"duplicate section id {sid}, already used by sections[{section_ids[sid]}]"))
            section_ids.setdefault(sid, i)
        criteria = section.get("criteria")
        for j, criterion in enumerate(criteria if isinstance(criteria, list) else []):
            cid = _raw_id(criterion.get("id")) if isinstance(criterion, dict) else None
            if cid is None:
                continue
            if cid in criterion_ids:
                fi, fj = criterion_ids[cid]
                problems.append(
                    (("sections", i, "criteria", j, "id"), f"duplicate criterion id {cid}, already used by sections[{fi}].criteria[{fj}]")
                )
            criterion_ids.setdefault(cid, (i, j))
    return problems


def _raw_id(value: Any) -> str | None:
    # as the models read it: numbers become strings, whitespace is stripped
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value).strip() or None


_ALL_FIELDS = sorted({name for m in (ChecklistFile, ChecklistModel, SectionModel, CriterionModel, AutoModel) for name in m.model_fields})


def load_checklists_file(path: str | Path) -> ChecklistFile:
    """Read and validate a checklist file; every problem is reported, not just the first."""
    path = Path(path)
    return parse_checklists_yaml(read_config_text(path, ChecklistFileError), source=str(path))


def parse_checklists_yaml(text: str, source: str = "<checklist file>") -> ChecklistFile:
    """``load_checklists_file`` for text already in memory (tests, Telegram uploads)."""
    data, node = load_yaml_mapping(text, source, "a checklists: list", ChecklistFileError)
    problems = [_problem(loc, msg, node) for loc, msg in consistency_problems(data)]
    try:
        checklists = ChecklistFile.model_validate(data)
    except ValidationError as e:
        problems = _validation_problems(e, node) + problems
    if problems:
        raise ChecklistFileError(source, problems)
    return checklists


def _validation_problems(error: ValidationError, root: yaml.Node | None) -> list[str]:
    problems: list[str] = []
    for err in error.errors():
        loc = tuple(err["loc"])
        if err["type"] == "checklist_field":
            loc, msg = (*loc, err["ctx"]["field"]), err["ctx"]["message"]
        elif err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _ALL_FIELDS, n=1)
            msg = "unknown field" + (f"; did you mean {close[0]}?" if close else "")
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "value_error":
            msg = err["msg"].removeprefix("Value error, ")
        elif err["type"] == "model_type":
            msg = f"must be a mapping, got {err.get('input')!r}"
        else:
            msg = err["msg"]
            if not isinstance(err.get("input"), dict | list):
                msg += f", got {err.get('input')!r}"
        problems.append(_problem(loc, msg, root))
    return problems


# --------------------------------------------------------------------------- runtime types


@dataclass(frozen=True)
class Auto:
    """Where an automatic criterion's answer comes from: a required phrase, or the forbidden words."""

    required: str | None = None
    forbidden: bool = False

    def definition(self) -> dict[str, Any]:
        return {"forbidden": True} if self.forbidden else {"required": self.required}


@dataclass(frozen=True)
class Criterion:
    id: str
    text: str
    points: int
    critical: bool = False
    na: bool = False
    auto: Auto | None = None
    type: str = "yesno"

    def definition(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "points": self.points,
            "type": self.type,
            "critical": self.critical,
            "na": self.na,
            "auto": self.auto.definition() if self.auto else None,
        }


@dataclass(frozen=True)
class Section:
    id: str
    name: str
    weight: int | float
    criteria: tuple[Criterion, ...]

    def definition(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "weight": self.weight, "criteria": [c.definition() for c in self.criteria]}


@dataclass(frozen=True)
class Checklist:
    """One version of a checklist; ``template_id`` is its ``ChecklistTemplate`` row once stored."""

    code: str
    version: int
    name: str
    sections: tuple[Section, ...]
    template_id: int | None = field(default=None, compare=False)

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """Every criterion in form order (sections in order, criteria in order)."""
        return tuple(c for s in self.sections for c in s.criteria)

    def criterion(self, criterion_id: str) -> Criterion:
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)

    def definition(self) -> dict[str, Any]:
        """The JSON stored in ``ChecklistTemplate.definition`` (code, version and name are columns)."""
        return {"sections": [s.definition() for s in self.sections]}

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the name and definition: equal digests, same checklist."""
        canonical = json.dumps(
            {"name": self.name, "definition": self.definition()},
            sort_keys=True, ensure_ascii=False, separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def from_model(cls, model: ChecklistModel, version: int, template_id: int | None = None) -> Checklist:
        sections = tuple(
            Section(
                s.id,
                s.name,
                s.weight,
                tuple(
                    Criterion(
                        c.id, c.text, c.points, c.critical, c.na,
                        Auto(c.auto.required, bool(c.auto.forbidden)) if c.auto else None,
                        c.type,
                    )
                    for c in s.criteria
                ),
            )
            for s in model.sections
        )
        return cls(model.code, version, model.name, sections, template_id)

    @classmethod
    def from_definition(
        cls, code: str, version: int, name: str, definition_json: Mapping[str, Any], template_id: int | None = None
    ) -> Checklist:
        """The checklist a stored definition describes, checked by the same rules as the file."""
        sections = definition_json.get("sections") if isinstance(definition_json, Mapping) else None
        data = {"checklists": [{"code": code, "name": name, "sections": sections}]}
        problems = [_problem(loc, msg, None) for loc, msg in consistency_problems(data)]
        try:
            model = ChecklistFile.model_validate(data).checklists[0]
        except ValidationError as e:
            problems = _validation_problems(e, None) + problems
        if problems:
            raise ValueError(f"checklist {code} version {version}: bad stored definition: " + "; ".join(problems))
        return cls.from_model(model, version, template_id)

    @classmethod
    def from_template(cls, row: ChecklistTemplate) -> Checklist:
        return cls.from_definition(row.code, row.version, row.name, row.definition, template_id=row.id)


# --------------------------------------------------------------------------- the score


@dataclass(frozen=True)
class SectionScore:
    id: str
    earned: int  # points of the criteria answered "yes"
    applicable: int  # points of the criteria answered "yes" or "no" (N/A and unanswered left out)
    weight: int | float  # as configured
    percent: float | None  # earned / applicable × 100; None when nothing in the section applies


@dataclass(frozen=True)
class ScoreResult:
    percent: float | None  # 0-100; 0 on a critical fail; None when nothing applies at all
    critical_failed: bool
    sections: tuple[SectionScore, ...]
    unanswered: tuple[str, ...]  # criterion ids in form order; the form refuses to submit while any

    @property
    def complete(self) -> bool:
        return not self.unanswered


def score(checklist: Checklist, answers: Mapping[str, Answer]) -> ScoreResult:
    """The checklist score, 0-100 %.

    Per section, earned = points of "yes", applicable = points of "yes" and "no": an N/A
    answer takes its points out of the denominator. The total is Σ (earned / applicable) ×
    weight over the sections, divided by the weights of the sections that apply: a section
    whose criteria are all N/A drops out and the other weights are scaled up to 100, so N/A
    never caps the score (weights 20/30/50 with the 20 section all N/A count as 37.5/62.5).

    Any critical criterion answered "no" makes the score 0 (``critical_failed``); if nothing
    applies at all the score is None. Unanswered criteria are listed and left out like N/A,
    so the percent of an unfinished form is the score so far. Raises ``ValueError`` for an
    unknown criterion id, an answer other than yes/no/na, or "na" where N/A is not allowed.
    The arithmetic is exact (fractions) and rounded once, to a float, at the end.
    """
    known = {c.id for c in checklist.criteria}
    unknown = sorted(set(answers) - known)
    if unknown:
        raise ValueError(f"checklist {checklist.code} v{checklist.version} has no criterion {', '.join(unknown)}")
    sections: list[SectionScore] = []
    unanswered: list[str] = []
    critical_failed = False
    weighted = Fraction(0)
    applied_weight = Fraction(0)
    for section in checklist.sections:
        earned = applicable = 0
        for c in section.criteria:
            answer = answers.get(c.id)
            if answer is None:
                unanswered.append(c.id)
                continue
            if answer not in ANSWERS:
                raise ValueError(f"criterion {c.id}: answer {answer!r} is not one of {', '.join(ANSWERS)}")
            if answer == "na":
                if not c.na:
                    raise ValueError(f"criterion {c.id} does not allow N/A")
                continue
            applicable += c.points
            if answer == "yes":
                earned += c.points
            elif c.critical:
                critical_failed = True
        share = Fraction(earned, applicable) if applicable else None
        if share is not None:
            weighted += share * Fraction(section.weight)
            applied_weight += Fraction(section.weight)
        sections.append(
            SectionScore(section.id, earned, applicable, section.weight, float(share * 100) if share is not None else None)
        )
    if critical_failed:
        percent: float | None = 0.0
    elif applied_weight:
        percent = float(weighted / applied_weight * 100)
    else:
        percent = None
    return ScoreResult(percent, critical_failed, tuple(sections), tuple(unanswered))


def auto_answers(checklist: Checklist, rule_hits: Mapping[str, Any] | None) -> dict[str, Answer]:
    """The answers of the automatic criteria, from a conversation's stored rule hits.

    ``{required: NAME}``: NAME among the missing → "no"; heard (hits listed) → "yes"; a name
    the office's rules do not have → no answer (the specialist answers). ``{forbidden: true}``:
    any forbidden hit → "no", none → "yes". No rule hits (no transcript) → no answers at all.
    The specialist may override any of them; the form records the override next to this value.
    """
    if rule_hits is None:
        return {}
    missing = set(rule_hits.get("missing") or ())
    required = rule_hits.get("required") or {}
    forbidden = rule_hits.get("forbidden") or ()
    out: dict[str, Answer] = {}
    for c in checklist.criteria:
        if c.auto is None:
            continue
        if c.auto.forbidden:
            out[c.id] = "no" if forbidden else "yes"
        elif c.auto.required in missing:
            out[c.id] = "no"
        elif required.get(c.auto.required):
            out[c.id] = "yes"
    return out


# --------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class ImportedChecklist:
    code: str
    version: int  # the version now latest: the new one if added, else the existing one
    added: bool


@dataclass
class ImportReport:
    """What ``import_checklists`` did, for the CLI and a Telegram reply."""

    checklists: list[ImportedChecklist] = field(default_factory=list)
    not_in_file: list[str] = field(default_factory=list)  # codes in the database the file does not list (kept)

    @property
    def wrote_anything(self) -> bool:
        return any(c.added for c in self.checklists)

    def lines(self) -> list[str]:
        out = [
            f"{c.code}: version {c.version} added" if c.added else f"{c.code}: unchanged (version {c.version})"
            for c in self.checklists
        ]
        if self.not_in_file:
            out.append(f"not in file (kept): {', '.join(self.not_in_file)}")
        return out


async def import_checklists(
    file: ChecklistFile, connection_name: str | None = None, clock: Clock | None = None
) -> ImportReport:
    """Store the file's checklists in one transaction, as new versions where they changed.

    Each checklist's digest is compared with its latest stored version: equal → unchanged,
    different → version + 1, a new code → version 1. Nothing is updated or deleted, so the
    scores made on an older version keep it.
    """
    now = (clock or SystemClock()).now()
    report = ImportReport()
    async with in_transaction(connection_name) as conn:
        latest_rows: dict[str, tuple[int, str]] = {}
        for code, version, digest in await ChecklistTemplate.all().using_db(conn).values_list("code", "version", "digest"):
            if code not in latest_rows or version > latest_rows[code][0]:
                latest_rows[code] = (version, digest)
        for checklist in file.parsed():
            digest = checklist.digest()
            current = latest_rows.get(checklist.code)
            if current is not None and current[1] == digest:
                report.checklists.append(ImportedChecklist(checklist.code, current[0], added=False))
                continue
            version = current[0] + 1 if current else 1
            await ChecklistTemplate.create(
                using_db=conn, code=checklist.code, version=version, name=checklist.name,
                definition=checklist.definition(), digest=digest, created_at=now,
            )
            report.checklists.append(ImportedChecklist(checklist.code, version, added=True))
        report.not_in_file = sorted(latest_rows.keys() - {c.code for c in file.checklists})
    return report


async def latest(code: str) -> Checklist | None:
    """The newest version of a checklist, or None if no such code was imported."""
    row = await ChecklistTemplate.filter(code=code).order_by("-version").first()
    return Checklist.from_template(row) if row else None


async def by_template_id(template_id: int) -> Checklist:
    """The version a score was made with; raises ``DoesNotExist`` for an unknown id."""
    return Checklist.from_template(await ChecklistTemplate.get(id=template_id))
