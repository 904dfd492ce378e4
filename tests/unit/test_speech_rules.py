"""Transcript rules: whole words, ё/е, case, punctuation, stems, forms, phrases, HTML."""

from __future__ import annotations

import pytest

from speech.rules import Hit, RuleSet, highlight_html

OFFICE = {
    "forbidden": ["не знаю", "дурак*", "блин"],
    "required": {
        "greeting": ["здравствуйте", "добрый день|добрый вечер"],
        "loyalty_card": ["бонусн* карт*", "карта|карту|картой"],
        "promotion": ["акци*", "скидк*"],
    },
}


@pytest.fixture
def rules() -> RuleSet:
    return RuleSet.from_config(OFFICE)


def test_exact_word_does_not_match_inside_a_longer_word() -> None:
    assert RuleSet(["карта"]).check("Какой картавый кассир").forbidden_hits == []


def test_exact_word_matches_the_word_itself() -> None:
    assert [h.word for h in RuleSet(["карта"]).check("Ваша карта готова").forbidden_hits] == ["карта"]


def test_stem_matches_inflected_forms() -> None:
    text = "Карта, карту, картой, картами"
    assert [h.word for h in RuleSet(["карт*"]).check(text).forbidden_hits] == ["Карта", "карту", "картой", "картами"]


def test_stem_matches_only_at_the_start_of_a_word() -> None:
    assert RuleSet(["карт*"]).check("Купите открытку").forbidden_hits == []


def test_explicit_forms_match_each_form_and_nothing_else() -> None:
    result = RuleSet(["карта|карту|картой"]).check("Картой или картавый? Карту!")
    assert [(h.rule, h.word) for h in result.forbidden_hits] == [
        ("карта|карту|картой", "Картой"),
        ("карта|карту|картой", "Карту"),
    ]


def test_yo_and_ye_are_the_same_letter_both_ways() -> None:
    assert [h.word for h in RuleSet(["еще", "ёлк*"]).check("Ещё ёлка и елки").forbidden_hits] == ["Ещё", "ёлка", "елки"]


def test_case_is_ignored() -> None:
    assert [h.word for h in RuleSet(["блин"]).check("БЛИН, Блин").forbidden_hits] == ["БЛИН", "Блин"]


def test_punctuation_around_a_word_does_not_hide_it() -> None:
    hits = RuleSet(["блин"]).check("«Блин!» — (блин), блин...").forbidden_hits
    assert len(hits) == 3


def test_hit_offsets_point_into_the_original_text() -> None:
    text = "Ну, ДУРАКИ же!"
    (hit,) = RuleSet(["дурак*"]).check(text).forbidden_hits
    assert (hit, text[hit.start : hit.end]) == (Hit("дурак*", 4, 10, "ДУРАКИ"), "ДУРАКИ")


def test_phrase_matches_a_word_sequence_across_punctuation() -> None:
    (hit,) = RuleSet(["добрый день"]).check("— Добрый, день! Проходите.").forbidden_hits
    assert hit.word == "Добрый, день"


def test_phrase_does_not_match_its_words_apart() -> None:
    assert RuleSet(["добрый день"]).check("Добрый человек, хороший день").forbidden_hits == []


def test_phrase_with_stems_matches_inflected_phrase() -> None:
    rules = RuleSet.from_config({"required": {"card": ["бонусн* карт*"]}})
    assert rules.check("Есть бонусную карту?").required_found == {"card": True}


def test_hyphenated_entry_matches_hyphenated_text() -> None:
    assert [h.word for h in RuleSet(["по-моему"]).check("По-моему, да").forbidden_hits] == ["По-моему"]


def test_required_names_found_and_missing(rules: RuleSet) -> None:
    result = rules.check("Добрый вечер! У вас есть бонусная карта?")
    assert (result.required_found, result.required_missing) == (
        {"greeting": True, "loyalty_card": True, "promotion": False},
        ["promotion"],
    )


def test_required_alternative_forms_count(rules: RuleSet) -> None:
    assert rules.check("Здравствуйте, оплата картой? Сегодня акция").required_missing == []


def test_required_exact_forms_ignore_lookalike_words(rules: RuleSet) -> None:
    assert rules.check("Здравствуйте, картавый кассир, скидки").required_found["loyalty_card"] is False


def test_forbidden_phrase_found_in_a_transcript(rules: RuleSet) -> None:
    result = rules.check("Я не знаю, блин, спросите дураков")
    assert [(h.rule, h.word) for h in result.forbidden_hits] == [("не знаю", "не знаю"), ("блин", "блин"), ("дурак*", "дураков")]


def test_clean_transcript_is_clean(rules: RuleSet) -> None:
    assert rules.check("Здравствуйте! Бонусная карта есть? Сегодня скидка 10%.").clean


def test_empty_rules_find_nothing() -> None:
    result = RuleSet.from_config(None).check("что угодно")
    assert (result.forbidden_hits, result.required_found, result.required_missing) == ([], {}, [])


@pytest.mark.parametrize(
    "config",
    [
        {"forbidden": ["к*"]},  # a stem this short matches half the dictionary
        {"forbidden": ["ка*рта"]},
        {"forbidden": ["!!!"]},
        {"forbidden": [""]},
        {"required": {"greeting": "здравствуйте"}},  # one string, not a list of alternatives
        {"required": {"greeting": []}},
        {"forbiden": ["опечатка"]},
    ],
)
def test_bad_rules_are_rejected_at_load(config: dict) -> None:
    with pytest.raises(ValueError):
        RuleSet.from_config(config)


def test_highlight_marks_forbidden_bold_and_required_underlined(rules: RuleSet) -> None:
    text = "Здравствуйте! Не знаю."
    assert highlight_html(text, rules.check(text)) == "<u>Здравствуйте</u>! <b>❗Не знаю</b>."


def test_highlight_escapes_html() -> None:
    text = "<script> & блин"
    rs = RuleSet(["блин"])
    assert highlight_html(text, rs.check(text)) == "&lt;script&gt; &amp; <b>❗блин</b>"


def test_highlight_forbidden_wins_where_hits_overlap() -> None:
    rs = RuleSet.from_config({"forbidden": ["карт*"], "required": {"card": ["бонусная карта"]}})
    text = "Бонусная карта"
    assert highlight_html(text, rs.check(text)) == "<u>Бонусная </u><b>❗карта</b>"


def test_highlight_without_hits_is_only_escaped() -> None:
    assert highlight_html("a < b", RuleSet().check("a < b")) == "a &lt; b"


def test_rule_hits_record_says_which_second_each_hit_was_said_at() -> None:
    from bot.speech_service import check_transcript, rule_hits_record
    from speech.transcriber import Segment, Transcript

    transcript = Transcript(
        "ru", 30.0,
        [Segment(0.0, 2.5, "Здравствуйте!"), Segment(3.0, 4.0, ""), Segment(12.4, 15.0, "Я не знаю, где ваша карта.")],
        "Здравствуйте! Я не знаю, где ваша карта.",
    )
    rules = RuleSet.from_config({"forbidden": ["не знаю"], "required": {"greeting": ["здравствуйте"], "card": ["карт* лояльности"]}})
    shown, result = check_transcript(transcript, rules)
    assert shown == "[00:00] Здравствуйте!\n[00:12] Я не знаю, где ваша карта."
    record = rule_hits_record(shown, result, transcript)
    assert record == {
        "forbidden": [{"rule": "не знаю", "word": "не знаю", "at": 12.4}],
        "required": {"greeting": [{"rule": "здравствуйте", "word": "Здравствуйте", "at": 0.0}], "card": []},
        "missing": ["card"],
    }
    assert highlight_html(shown, result) == (
        "[00:00] <u>Здравствуйте</u>!\n[00:12] Я <b>❗не знаю</b>, где ваша карта."
    )
