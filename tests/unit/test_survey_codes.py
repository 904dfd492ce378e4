"""Survey codes: every target round-trips, and nothing but a genuine code parses — not a
one-character change, not random text, not a code signed with another secret."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.survey_codes import KINDS, MAX_CODE_LENGTH, SurveyCodes, SurveyTarget

SECRET = b"0123456789abcdef-test-secret"
OTHER = "another secret of enough length"
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

kinds = st.sampled_from(sorted(KINDS))
ids = st.integers(min_value=0, max_value=2**64 - 1)
small_ids = st.integers(min_value=0, max_value=2**32 - 1)


def raw(code: str) -> bytes:
    return base64.b32decode(code.upper() + "=" * (-len(code) % 8))


@pytest.fixture(scope="module")
def codes() -> SurveyCodes:
    return SurveyCodes(SECRET)


@given(kind=kinds, target_id=ids)
def test_a_code_parses_back_to_its_target(kind: str, target_id: int) -> None:
    codes = SurveyCodes(SECRET)
    assert codes.parse(codes.make(kind, target_id)) == SurveyTarget(kind, target_id)


@given(kind=kinds, target_id=small_ids)
def test_codes_of_32_bit_ids_fit_a_printed_qr(kind: str, target_id: int) -> None:
    code = SurveyCodes(SECRET).make(kind, target_id)
    assert len(code) <= 24 and set(code) <= set(ALPHABET)


def test_code_length_grows_with_the_id_only() -> None:
    codes = SurveyCodes(SECRET)
    assert [len(codes.make("point", n)) for n in (0, 1, 255, 256, 65_535, 65_536, 2**24, 2**32 - 1)] == \
        [18, 20, 20, 21, 21, 23, 24, 24]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(kind=kinds, target_id=small_ids, data=st.data())
def test_any_single_character_change_is_rejected(codes: SurveyCodes, kind: str, target_id: int,
                                                 data: st.DataObject) -> None:
    code = codes.make(kind, target_id)
    position = data.draw(st.integers(0, len(code) - 1))
    replacement = data.draw(st.sampled_from([c for c in ALPHABET + "01890-_=. " if c != code[position]]))
    assert codes.parse(code[:position] + replacement + code[position + 1:]) is None


def test_every_single_character_change_of_one_code_is_rejected(codes: SurveyCodes) -> None:
    code = codes.make("staff", 4242)
    changed = [code[:i] + c + code[i + 1:] for i in range(len(code)) for c in ALPHABET if c != code[i]]
    assert [c for c in changed if codes.parse(c) is not None] == []


def test_dropping_or_adding_a_character_is_rejected(codes: SurveyCodes) -> None:
    code = codes.make("point", 17)
    variants = [code[:i] + code[i + 1:] for i in range(len(code))] + [code + c for c in ALPHABET]
    assert [v for v in variants if codes.parse(v) is not None] == []


def test_uppercase_code_is_the_same_code(codes: SurveyCodes) -> None:
    assert codes.parse(codes.make("point", 17).upper()) == SurveyTarget("point", 17)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(text=st.text(max_size=64) | st.text(alphabet=ALPHABET, min_size=16, max_size=31))
def test_random_strings_are_rejected(codes: SurveyCodes, text: str) -> None:
    assert codes.parse(text) is None


@pytest.mark.parametrize("garbage", [None, 17, b"abc", ["x"], "", " ", "=" * 8, "a" * (MAX_CODE_LENGTH + 1),
                                     "\x00" * 20, "ё" * 20, "а" * 20])
def test_garbage_is_rejected_without_raising(codes: SurveyCodes, garbage: object) -> None:
    assert codes.parse(garbage) is None


def test_a_valid_tag_over_an_unknown_kind_is_rejected() -> None:
    codes = SurveyCodes(SECRET)
    genuine = raw(codes.make("point", 5))
    payload = bytes([genuine[0] & 0xF0 | 0x0F]) + genuine[1:2]
    forged = base64.b32encode(payload + codes._tag(codes._current, payload)).decode().rstrip("=").lower()
    assert codes.parse(forged) is None


def test_non_canonical_base32_is_rejected(codes: SurveyCodes) -> None:
    code = codes.make("point", 1)  # 12 bytes in 20 characters: the last 4 of their 100 bits are unused
    last = ALPHABET.index(code[-1])  # so this character's low 4 bits are 0, and base32 decoders ignore them
    assert codes.parse(code[:-1] + ALPHABET[last | 0b0001]) is None


@given(target_id=st.integers(0, 2**31))
def test_neighbouring_ids_have_unrelated_tags(target_id: int) -> None:
    codes = SurveyCodes(SECRET)
    a = raw(codes.make("point", target_id))[-10:]
    b = raw(codes.make("point", target_id + 1))[-10:]
    differing_bits = bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1")
    assert 10 <= differing_bits <= 70  # 80 bits that look independent: about 40 differ


def test_tags_of_consecutive_ids_share_no_prefix() -> None:
    codes = SurveyCodes(SECRET)
    tags = [codes.make("point", n)[-16:] for n in range(1, 200)]
    assert len({t[:3] for t in tags}) > 190  # 32³ prefixes: consecutive ids do not cluster


def test_point_and_staff_with_the_same_id_have_different_codes(codes: SurveyCodes) -> None:
    assert codes.make("point", 7) != codes.make("staff", 7)
    assert codes.parse(codes.make("staff", 7)) == SurveyTarget("staff", 7)


@given(kind=kinds, target_id=small_ids)
def test_a_code_signed_with_another_secret_is_rejected(kind: str, target_id: int) -> None:
    assert SurveyCodes(SECRET).parse(SurveyCodes(OTHER).make(kind, target_id)) is None


def test_a_code_of_the_previous_secret_parses_as_stale_after_rotation() -> None:
    old_code = SurveyCodes(OTHER).make("staff", 31)
    rotated = SurveyCodes(SECRET, previous=[OTHER])
    assert rotated.parse(old_code) == SurveyTarget("staff", 31, stale=True)


def test_after_rotation_new_codes_use_the_new_secret_only() -> None:
    rotated = SurveyCodes(SECRET, previous=[OTHER])
    code = rotated.make("point", 31)
    assert (rotated.parse(code), SurveyCodes(SECRET).parse(code), SurveyCodes(OTHER).parse(code)) == \
        (SurveyTarget("point", 31), SurveyTarget("point", 31), None)


def test_a_secret_dropped_from_previous_no_longer_parses() -> None:
    old_code = SurveyCodes(OTHER).make("point", 3)
    assert SurveyCodes(SECRET, previous=[]).parse(old_code) is None


def test_secrets_as_str_and_bytes_are_the_same_key() -> None:
    assert SurveyCodes(SECRET.decode()).make("point", 9) == SurveyCodes(SECRET).make("point", 9)


@pytest.mark.parametrize(("kind", "target_id"), [("desk", 1), ("point", -1), ("point", 2**64), ("point", True),
                                                 ("point", 1.0)])
def test_make_refuses_what_no_code_can_name(codes: SurveyCodes, kind: str, target_id: object) -> None:
    with pytest.raises(ValueError):
        codes.make(kind, target_id)  # type: ignore[arg-type]


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        SurveyCodes("short")
