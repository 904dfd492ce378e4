"""Checklist templates: the score formula on hand-computed values, automatic criteria from rule
hits, and validation that names the YAML path and line of every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.checklists import (
    Answer,
    Auto,
    Checklist,
    ChecklistFileError,
    Criterion,
    Section,
    auto_answers,
    load_checklists_file,
    parse_checklists_yaml,
    score,
)
from bot.speech_service import check_transcript, rule_hits_record
from speech.rules import RuleSet
from speech.transcriber import Segment, Transcript

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "checklists.yaml"

# The README's speech rules, which the fixture's automatic criteria read.
README_RULES = RuleSet.from_config(
    {
        "forbidden": ["не знаю", "не моя проблема", "дурак*"],
        "required": {
            "greeting": ["здравствуйте", "добрый день|добрый вечер|доброе утро"],
            "loyalty_card": ["бонусн* карт*", "карт* лояльности"],
            "promotion": ["акци*", "скидк*"],
        },
    }
)


@pytest.fixture(scope="module")
def fixture_text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def desk() -> Checklist:
    """desk-sales: greeting 20 (hello, introduced, client_name/na) · needs 30 (open_questions 2,
    summarised, loyalty_card/na) · offer 30 (benefits 2, promotion/na, objections 2/na) ·
    closing 20 (correct_terms 2 critical, polite auto-forbidden, goodbye)."""
    return load_checklists_file(FIXTURE).parsed()[0]


def all_yes(checklist: Checklist, **answers: Answer) -> dict[str, Answer]:
    return {c.id: "yes" for c in checklist.criteria} | answers


def crit(id: str, points: int = 1, **kw: object) -> Criterion:
    return Criterion(id, f"criterion {id}", points, **kw)  # type: ignore[arg-type]


def make(*sections: tuple[str, int, tuple[Criterion, ...]]) -> Checklist:
    return Checklist("t", 1, "test", tuple(Section(sid, sid, w, cs) for sid, w, cs in sections))


def problems_of(text: str) -> list[str]:
    with pytest.raises(ChecklistFileError) as exc:
        parse_checklists_yaml(text, source="checklists.yaml")
    return exc.value.problems


def edited(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# --------------------------------------------------------------------------- the fixture


def test_fixture_has_four_sections_twelve_criteria_and_the_readme_rule_names(desk: Checklist) -> None:
    assert [s.id for s in desk.sections] == ["greeting", "needs", "offer", "closing"]
    assert [s.weight for s in desk.sections] == [20, 30, 30, 20]
    assert len(desk.criteria) == 12
    assert [c.id for c in desk.criteria if c.critical] == ["correct_terms"]
    assert {c.id: c.auto for c in desk.criteria if c.auto} == {
        "hello": Auto(required="greeting"),
        "polite": Auto(forbidden=True),
    }
    assert {c.id for c in desk.criteria if c.na} == {"client_name", "loyalty_card", "promotion", "objections"}


def test_defaults_are_one_point_yesno_not_critical_no_na_manual(desk: Checklist) -> None:
    assert desk.criterion("introduced") == Criterion("introduced", "Представился, назвал своё имя", 1)
    assert desk.criterion("introduced").type == "yesno"


# --------------------------------------------------------------------------- the formula


def test_all_yes_is_100(desk: Checklist) -> None:
    result = score(desk, all_yes(desk))
    assert result.percent == 100.0
    assert not result.critical_failed and result.complete


def test_weights_and_points_hand_computed(desk: Checklist) -> None:
    answers: dict[str, Answer] = {
        # greeting: 1 of 2 applicable (client_name N/A) → 50 % × 20 = 10
        "hello": "yes", "introduced": "no", "client_name": "na",
        # needs: 2 + 1 of 2 + 1 + 1 → 3/4 = 75 % × 30 = 22.5
        "open_questions": "yes", "summarised": "no", "loyalty_card": "yes",
        # offer: 2 of 2 + 2 (promotion N/A) → 50 % × 30 = 15
        "benefits": "no", "promotion": "na", "objections": "yes",
        # closing: 2 + 1 of 2 + 1 + 1 → 3/4 = 75 % × 20 = 15
        "correct_terms": "yes", "polite": "no", "goodbye": "yes",
    }
    result = score(desk, answers)
    assert result.percent == 62.5
    assert [(s.id, s.earned, s.applicable, s.percent) for s in result.sections] == [
        ("greeting", 1, 2, 50.0),
        ("needs", 3, 4, 75.0),
        ("offer", 2, 4, 50.0),
        ("closing", 3, 4, 75.0),
    ]


def test_a_third_is_exact_until_the_final_float(desk: Checklist) -> None:
    # greeting 2/3 × 20 + 30 + 30 + 20 = 280/3
    result = score(desk, all_yes(desk, introduced="no"))
    assert result.percent == 280 / 3
    assert result.sections[0].percent == 200 / 3


def test_na_leaves_the_denominator(desk: Checklist) -> None:
    # offer: benefits 2 of 2, promotion and objections N/A → 100 %, not 2/5
    result = score(desk, all_yes(desk, promotion="na", objections="na"))
    assert result.sections[2].applicable == 2 and result.sections[2].percent == 100.0
    assert result.percent == 100.0


def test_an_all_na_section_drops_out_and_the_other_weights_are_renormalised() -> None:
    checklist = make(
        ("a", 20, (crit("a1", na=True), crit("a2", na=True))),
        ("b", 30, (crit("b1"), crit("b2"))),
        ("c", 50, (crit("c1", 2),)),
    )
    result = score(checklist, {"a1": "na", "a2": "na", "b1": "yes", "b2": "no", "c1": "yes"})
    # (1/2 × 30 + 1 × 50) / (30 + 50) = 65/80 = 81.25 %, not 65 % with a capped 20
    assert result.percent == 81.25
    assert result.sections[0].applicable == 0 and result.sections[0].percent is None


def test_a_critical_no_makes_the_score_zero(desk: Checklist) -> None:
    result = score(desk, all_yes(desk, correct_terms="no"))
    assert result.percent == 0.0
    assert result.critical_failed
    # the sections still show what was earned, for the specialist's feedback
    assert (result.sections[3].earned, result.sections[3].applicable) == (2, 4)


def test_a_critical_yes_counts_like_any_criterion(desk: Checklist) -> None:
    # closing: correct_terms 2 of 2, polite no, goodbye yes → 3/4 × 20 = 15; the rest 80
    result = score(desk, all_yes(desk, polite="no"))
    assert result.percent == 95.0 and not result.critical_failed


def test_critical_na_does_not_fail() -> None:
    checklist = make(("a", 100, (crit("a1", critical=True, na=True), crit("a2"))))
    result = score(checklist, {"a1": "na", "a2": "yes"})
    assert result.percent == 100.0 and not result.critical_failed


def test_everything_na_has_no_percent() -> None:
    checklist = make(("a", 60, (crit("a1", na=True),)), ("b", 40, (crit("b1", na=True),)))
    result = score(checklist, {"a1": "na", "b1": "na"})
    assert result.percent is None and not result.critical_failed


def test_unanswered_are_listed_in_form_order_and_left_out_of_the_score_so_far(desk: Checklist) -> None:
    answers = all_yes(desk)
    for cid in ("goodbye", "hello", "benefits"):
        del answers[cid]
    result = score(desk, answers)
    assert result.unanswered == ("hello", "benefits", "goodbye")
    assert not result.complete
    assert result.percent == 100.0


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"introduced": "na"}, "criterion introduced does not allow N/A"),
        ({"hello": "maybe"}, "answer 'maybe' is not one of yes, no, na"),
        ({"nope": "yes"}, "has no criterion nope"),
    ],
)
def test_invalid_answers_are_refused(desk: Checklist, answers: dict[str, Answer], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score(desk, all_yes(desk) | answers)


# --------------------------------------------------------------------------- automatic criteria


def hits(missing: list[str], forbidden: int = 0, unknown: tuple[str, ...] = ()) -> dict[str, object]:
    required = {name: [] if name in missing else [{"rule": name, "word": name, "at": 1.0}] for name in ("greeting", "loyalty_card", "promotion")}
    for name in unknown:
        required.pop(name)
    return {
        "forbidden": [{"rule": "не знаю", "word": "не знаю", "at": 3.5}] * forbidden,
        "required": required,
        "missing": [m for m in missing if m not in unknown],
    }


def test_required_phrase_heard_is_yes_and_no_forbidden_word_is_yes(desk: Checklist) -> None:
    assert auto_answers(desk, hits(missing=["promotion"])) == {"hello": "yes", "polite": "yes"}


def test_required_phrase_missing_is_no_and_a_forbidden_word_is_no(desk: Checklist) -> None:
    assert auto_answers(desk, hits(missing=["greeting"], forbidden=2)) == {"hello": "no", "polite": "no"}


def test_a_required_name_the_office_rules_lack_gets_no_answer(desk: Checklist) -> None:
    assert auto_answers(desk, hits(missing=[], unknown=("greeting",))) == {"polite": "yes"}


def test_no_transcript_no_automatic_answers(desk: Checklist) -> None:
    assert auto_answers(desk, None) == {}


def test_auto_answers_read_what_the_speech_service_stores(desk: Checklist) -> None:
    transcript = Transcript(
        "ru", 9.0,
        [Segment(0.0, 3.0, "Добрый день! Чем помочь?"), Segment(3.0, 9.0, "Ну я не знаю, спросите в другом окне.")],
        "Добрый день! Чем помочь? Ну я не знаю, спросите в другом окне.",
    )
    record = rule_hits_record(*check_transcript(transcript, README_RULES), transcript)
    assert auto_answers(desk, record) == {"hello": "yes", "polite": "no"}


def test_override_of_an_automatic_answer_changes_the_score_hand_computed(desk: Checklist) -> None:
    auto = auto_answers(desk, hits(missing=["greeting"], forbidden=1))
    assert auto == {"hello": "no", "polite": "no"}
    manual = {c.id: "yes" for c in desk.criteria if c.auto is None}
    # greeting 2/3 × 20 + 30 + 30 + closing 3/4 × 20 = 40/3 + 60 + 15 = 265/3
    assert score(desk, manual | auto).percent == 265 / 3
    # the specialist hears the client say «не знаю», not the employee: polite → yes
    overridden = manual | auto | {"polite": "yes"}
    # greeting 2/3 × 20 + 30 + 30 + 20 = 280/3
    assert score(desk, overridden).percent == 280 / 3


# --------------------------------------------------------------------------- definition


def test_definition_round_trips(desk: Checklist) -> None:
    again = Checklist.from_definition("desk-sales", 3, desk.name, desk.definition())
    assert again.sections == desk.sections
    assert (again.code, again.version, again.name) == ("desk-sales", 3, desk.name)
    assert again.digest() == desk.digest()


def test_definition_is_plain_json(desk: Checklist) -> None:
    import json

    definition = desk.definition()
    assert json.loads(json.dumps(definition)) == definition
    assert definition["sections"][0]["criteria"][0] == {
        "id": "hello", "text": "Поздоровался первым", "points": 1, "type": "yesno",
        "critical": False, "na": False, "auto": {"required": "greeting"},
    }


def test_digest_changes_with_any_edit_and_not_with_formatting(fixture_text: str, desk: Checklist) -> None:
    reformatted = edited(fixture_text, "weight: 20", "weight: 20.0").replace("# имя клиента могло быть неизвестно", "")
    assert parse_checklists_yaml(reformatted).parsed()[0].digest() == desk.digest()
    for old, new in [
        ("text: Поздоровался первым", "text: Поздоровался первым и улыбнулся"),
        ("name: Стандарт продаж у стойки", "name: Стандарт продаж"),
        ("points: 2\n            critical", "points: 3\n            critical"),
    ]:
        assert parse_checklists_yaml(edited(fixture_text, old, new)).parsed()[0].digest() != desk.digest(), old


def test_a_bad_stored_definition_is_a_value_error(desk: Checklist) -> None:
    definition = desk.definition()
    definition["sections"][0]["weight"] = 10
    with pytest.raises(ValueError, match="section weights add up to 90"):
        Checklist.from_definition("desk-sales", 1, desk.name, definition)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "weight: 30\n        criteria:\n          - id: benefits",
            "weight: 25\n        criteria:\n          - id: benefits",
            "checklists[0].sections: section weights add up to 95 (20 + 30 + 25 + 20); they must add up to 100 (line 7)",
        ),
        (
            "points: 2\n            critical",
            "points: 2\n            type: scale\n            critical",
            "checklists[0].sections[3].criteria[0].type: unknown criterion type 'scale'; the only type is yesno (line 52)",
        ),
        (
            "- id: summarised",
            "- id: hello",
            "checklists[0].sections[1].criteria[1].id: duplicate criterion id hello, "
            "already used by sections[0].criteria[0] (line 26)",
        ),
        (
            "- id: closing",
            "- id: needs",
            "checklists[0].sections[3].id: duplicate section id needs, already used by sections[1] (line 45)",
        ),
        (
            "auto: {forbidden: true}",
            "auto: {forbidden: false}",
            "checklists[0].sections[3].criteria[1].auto.forbidden: only forbidden: true is meaningful (line 55)",
        ),
        (
            "auto: {required: greeting}",
            "auto: {required: greeting, forbidden: true}",
            "checklists[0].sections[0].criteria[0].auto: give either required: NAME or forbidden: true, not both (line 13)",
        ),
        (
            "auto: {required: greeting}",
            "auto: {phrase: greeting}",
            "checklists[0].sections[0].criteria[0].auto.phrase: unknown field (line 13)",
        ),
        (
            "auto: {required: greeting}",
            "auto: greeting",
            "checklists[0].sections[0].criteria[0].auto: must be a mapping, got 'greeting' (line 13)",
        ),
        (
            "weight: 20\n        criteria:\n          - id: hello",
            "weight: true\n        criteria:\n          - id: hello",
            "checklists[0].sections[0].weight: must be a number, got True (line 9)",
        ),
        (
            "points: 2\n          - id: summarised",
            "points: 0\n          - id: summarised",
            "checklists[0].sections[1].criteria[0].points: Input should be greater than 0, got 0 (line 25)",
        ),
        (
            "na: true                    # акций нет",
            "n_a: true",
            "checklists[0].sections[2].criteria[1].n_a: unknown field; did you mean na? (line 40)",
        ),
        ("code: desk-sales", "code: desk sales", "checklists[0].code: bad checklist code 'desk sales'"),
        ("code: desk-sales", f"code: {'x' * 65}", "checklists[0].code: checklist code 'xxxx"),
        ("- id: hello", "- id: hello.world", "checklists[0].sections[0].criteria[0].id: bad id 'hello.world' (line 11)"),
        ("    name: Стандарт продаж у стойки\n", "", "checklists[0].name: required field is missing (line 4)"),
    ],
)
def test_a_bad_file_names_path_line_and_reason(fixture_text: str, old: str, new: str, expected: str) -> None:
    problems = problems_of(edited(fixture_text, old, new))
    if expected.endswith(")") and "(line" in expected:
        head, line = expected.rsplit(" (line ", 1)
        assert any(p.startswith(head) and p.endswith(f"(line {line}") for p in problems), problems
    else:
        assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_in_one_pass(fixture_text: str) -> None:
    text = edited(fixture_text, "weight: 20\n        criteria:\n          - id: hello", "weight: 10\n        criteria:\n          - id: hello")
    text = edited(text, "- id: summarised", "- id: hello")
    text = edited(text, "points: 2\n            critical", "type: scale\n            critical")
    problems = problems_of(text)
    assert len(problems) == 3, problems
    assert [p.split(":", 1)[0] for p in problems] == [
        "checklists[0].sections[3].criteria[0].type",
        "checklists[0].sections",
        "checklists[0].sections[1].criteria[1].id",
    ]


def test_duplicate_checklist_code(fixture_text: str) -> None:
    body = fixture_text.split("checklists:\n", 1)[1]
    problems = problems_of(fixture_text + body)
    assert problems == ["checklists[1].code: duplicate checklist code desk-sales, already used by checklists[0] (line 58)"]


def test_duplicate_yaml_key_is_a_yaml_error(fixture_text: str) -> None:
    problems = problems_of(edited(fixture_text, "weight: 20\n", "weight: 20\n        weight: 30\n"))
    assert problems[0].startswith("YAML error at line 10") and "duplicate key 'weight'" in problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "the file must be a YAML mapping with a checklists: list"),
        ("checklists: []\n", "checklists: List should have at least 1 item"),
        ("checklist: []\n", "checklist: unknown field; did you mean checklists?"),
        ("checklists:\n  - code: a\n    name: A\n    sections: []\n", "checklists[0].sections: List should have at least 1 item"),
    ],
)
def test_shape_errors(text: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems_of(text)), problems_of(text)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ChecklistFileError, match="file not found"):
        load_checklists_file(tmp_path / "nope.yaml")
