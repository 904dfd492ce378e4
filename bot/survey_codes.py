"""Signed survey codes: the ``{code}`` in ``/r/{code}`` names a point or an employee.

A code is ``header · id · tag`` in lowercase base32 (RFC 4648 alphabet, no padding):

- ``header``: one byte, the target's kind in the low four bits and the signing key's id (four
  bits of a fingerprint of the secret) in the high four, so ``parse`` picks the right key out
  of the current and the previous secrets without trying them all;
- ``id``: the target's id, big-endian in as few bytes as it needs (none for 0);
- ``tag``: the first 10 bytes (80 bits) of HMAC-SHA256 over the header and the id.

Why 80 bits are enough: the tag cannot be checked offline without the secret, so the only
attack is to submit guesses to the server, and each guess is right with probability 2⁻⁸⁰
(about 10⁻²⁴). A billion guesses — far beyond what the rate limiter lets through — succeed
with a probability below 10⁻¹⁵. Longer tags would only make the printed QR code denser.

Why codes cannot be enumerated: the tag is a pseudorandom function of the payload under the
secret, so the code of point 17 says nothing about the code of point 18; knowing any number
of valid codes does not help to make another one.

Lengths: at most 20 characters for ids below 256, 21 below 65 536, 23 below 2²⁴, 24 below 2³².
Parsing is case-insensitive (people retype printed URLs, phones capitalise), and strict
otherwise: each (kind, id) has exactly one code, anything else — wrong tag, unknown key or
kind, non-canonical base32, over-long or non-string input — is ``None``, never an exception.

Key rotation: construct with the new secret and the old ones in ``previous``; codes signed
by a previous secret still parse (with ``stale=True``, a hint that the table tent should be
reprinted), new codes are signed by the current secret only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["KINDS", "MAX_CODE_LENGTH", "SurveyCodes", "SurveyTarget", "TargetKind"]

TargetKind = Literal["point", "staff"]
KINDS: dict[TargetKind, int] = {"point": 1, "staff": 2}
_KIND_BY_CODE: dict[int, TargetKind] = {v: k for k, v in KINDS.items()}

TAG_BYTES = 10
MAX_ID_BYTES = 8  # ids up to 2⁶⁴ − 1: any database's integer key
MAX_CODE_LENGTH = 32  # ceil((1 + 8 + 10) × 8 / 5) = 31; anything longer is rejected unread
_DOMAIN = b"loyalty-desk/survey-code/v1\x00"  # these MACs cannot be confused with other uses of the secret
_B32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


@dataclass(frozen=True, slots=True)
class SurveyTarget:
    """What a valid code names; ``stale`` when it was signed with a previous secret."""

    kind: TargetKind
    target_id: int
    stale: bool = False


@dataclass(frozen=True, slots=True)
class _Key:
    secret: bytes
    key_id: int  # 0…15, what the header carries


def _as_bytes(secret: bytes | str) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(raw) < 16:
        raise ValueError("a survey-code secret must be at least 16 bytes; generate one with `openssl rand -hex 32`")
    return raw


def _key(secret: bytes | str) -> _Key:
    raw = _as_bytes(secret)
    fingerprint = hmac.new(raw, _DOMAIN + b"key-id", hashlib.sha256).digest()
    return _Key(raw, fingerprint[0] & 0x0F)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes | None:
    """Bytes of canonical unpadded lowercase-or-uppercase base32; ``None`` for anything else
    (including encodings whose unused trailing bits are set, so no two codes are equivalent)."""
    lowered = text.lower()
    if not lowered or not _B32_ALPHABET.issuperset(lowered):
        return None
    try:
        data = base64.b32decode(lowered.upper() + "=" * (-len(lowered) % 8))
    except (binascii.Error, ValueError):
        return None
    return data if _b32(data) == lowered else None


class SurveyCodes:
    """Makes and checks the codes of survey URLs; holds secrets, no other state."""

    def __init__(self, secret: bytes | str, *, previous: Iterable[bytes | str] = ()) -> None:
        self._current = _key(secret)
        self._keys: tuple[_Key, ...] = (self._current, *(_key(s) for s in previous))

    def make(self, kind: TargetKind, target_id: int) -> str:
        """The code for ``kind`` ``target_id``, signed with the current secret."""
        if kind not in KINDS:
            raise ValueError(f"unknown survey target kind {kind!r}; expected one of {sorted(KINDS)}")
        if isinstance(target_id, bool) or not isinstance(target_id, int) or target_id < 0:
            raise ValueError(f"a survey target id must be a non-negative int, got {target_id!r}")
        body = target_id.to_bytes((target_id.bit_length() + 7) // 8, "big")
        if len(body) > MAX_ID_BYTES:
            raise ValueError(f"survey target id {target_id} does not fit in {MAX_ID_BYTES} bytes")
        payload = bytes([self._current.key_id << 4 | KINDS[kind]]) + body
        return _b32(payload + self._tag(self._current, payload))

    def parse(self, code: object) -> SurveyTarget | None:
        """The target a genuine code names, or ``None`` for anything else; never raises."""
        if not isinstance(code, str) or not code or len(code) > MAX_CODE_LENGTH or not code.isascii():
            return None
        data = _unb32(code)
        if data is None or len(data) < 1 + TAG_BYTES or len(data) > 1 + MAX_ID_BYTES + TAG_BYTES:
            return None
        payload, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
        header, body = payload[0], payload[1:]
        kind = _KIND_BY_CODE.get(header & 0x0F)
        if kind is None or body[:1] == b"\x00":  # a leading zero byte is not the canonical id
            return None
        key_id = header >> 4
        for key in self._keys:
            if key.key_id == key_id and hmac.compare_digest(tag, self._tag(key, payload)):
                return SurveyTarget(kind, int.from_bytes(body, "big"), stale=key is not self._current)
        return None

    @staticmethod
    def _tag(key: _Key, payload: bytes) -> bytes:
        return hmac.new(key.secret, _DOMAIN + payload, hashlib.sha256).digest()[:TAG_BYTES]
