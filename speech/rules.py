"""Text rules on transcripts: forbidden words and required phrases, per office. Pure.

Matching is on whole words. Text and rules are normalised alike — case folded, ``ё`` read
as ``е``, punctuation and hyphens are word breaks — so ``«Добрый, день!»`` matches the
phrase ``добрый день`` and ``Ёлка`` matches ``елка``. A rule entry is one word or a phrase
(a sequence of words); in it:

* ``карта``       the word exactly: it never matches inside «картавый» or «карточка»;
* ``карт*``       a stem (at least 3 letters before ``*``): карта, карту, картой — and also
                  «картавый», so list forms where a stem is too greedy;
* ``карта|карту|картой``  alternatives in one entry: any of them counts as this rule.

Each word of a phrase may be a stem (``бонусн* карт*``). Config, per office::

    forbidden: ["не знаю", "дурак*"]
    required:
      greeting: ["здравствуйте", "добрый день|добрый вечер"]
      loyalty_card: ["бонусн* карт*", "карт* лояльности"]
      promotion: ["акци*", "скидк*"]

``check`` finds every forbidden hit (with its place in the original text) and which required
names were heard; ``highlight_html`` renders the text for Telegram's HTML parse mode.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Hit", "RuleResult", "RuleSet", "highlight_html", "normalise_word"]

MIN_STEM = 3
_WORD = re.compile(r"[^\W_]+")  # letters and digits; punctuation, spaces, hyphens and _ break words


def normalise_word(word: str) -> str:
    return word.casefold().replace("ё", "е")


@dataclass(frozen=True)
class _Term:
    text: str
    stem: bool

    def matches(self, word: str) -> bool:
        return word.startswith(self.text) if self.stem else word == self.text


@dataclass(frozen=True)
class _Pattern:
    rule: str  # the entry as configured, e.g. "карт*|кредитк*"
    terms: tuple[_Term, ...]


def _parse_entry(entry: str) -> list[_Pattern]:
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"a rule must be a non-empty string, got {entry!r}")
    patterns = []
    for alternative in entry.split("|"):
        terms = []
        for raw in alternative.split():
            stem = raw.endswith("*")
            words = [normalise_word(w) for w in _WORD.findall(raw[:-1] if stem else raw)]
            if not words or "*" in raw[:-1]:
                raise ValueError(f"rule {entry!r}: {raw!r} is not a word (a stem has one * at its end)")
            # "по-моему" is two words in text, so it is two terms here too; only the last can be a stem
            terms += [_Term(w, False) for w in words[:-1]] + [_Term(words[-1], stem)]
            if stem and len(words[-1]) < MIN_STEM:
                raise ValueError(f"rule {entry!r}: the stem {raw!r} is shorter than {MIN_STEM} letters")
        if not terms:
            raise ValueError(f"rule {entry!r} has an empty alternative")
        patterns.append(_Pattern(entry, tuple(terms)))
    return patterns


@dataclass(frozen=True)
class Hit:
    rule: str  # the entry that matched, as configured
    start: int  # character offsets into the checked text: text[start:end] == word
    end: int
    word: str  # the words as they stand in the text (a phrase includes what lies between)


@dataclass(frozen=True)
class RuleResult:
    forbidden_hits: list[Hit]
    required_found: dict[str, bool]
    required_missing: list[str]
    required_hits: dict[str, list[Hit]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """No forbidden word and every required phrase heard."""
        return not self.forbidden_hits and not self.required_missing


@dataclass(frozen=True)
class _Token:
    word: str  # normalised
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    return [_Token(normalise_word(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]


def _find(patterns: Iterable[_Pattern], text: str, tokens: list[_Token]) -> list[Hit]:
    hits = []
    for pattern in patterns:
        n = len(pattern.terms)
        for i in range(len(tokens) - n + 1):
            if all(term.matches(tokens[i + k].word) for k, term in enumerate(pattern.terms)):
                start, end = tokens[i].start, tokens[i + n - 1].end
                hits.append(Hit(pattern.rule, start, end, text[start:end]))
    hits.sort(key=lambda h: (h.start, -h.end, h.rule))
    return hits


@dataclass(frozen=True)
class RuleSet:
    forbidden: list[str] = field(default_factory=list)
    required: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # parse now: a bad rule is a config error at load time, not at the first transcript
        forbidden = [p for entry in self.forbidden for p in _parse_entry(entry)]
        required = {}
        for name, entries in self.required.items():
            if isinstance(entries, str):
                raise ValueError(f"required {name!r}: give a list of alternatives, not one string")
            if not entries:
                raise ValueError(f"required {name!r} lists no phrase")
            required[name] = [p for entry in entries for p in _parse_entry(entry)]
        object.__setattr__(self, "_forbidden", forbidden)
        object.__setattr__(self, "_required", required)

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | None) -> RuleSet:
        """``{"forbidden": [...], "required": {name: [...]}}``; missing keys mean no rules."""
        data = data or {}
        unknown = set(data) - {"forbidden", "required"}
        if unknown:
            raise ValueError(f"unknown speech rule keys: {', '.join(sorted(unknown))}")
        required: dict[str, list[str]] = {}
        for name, entries in dict(data.get("required") or {}).items():
            if isinstance(entries, str) or not isinstance(entries, Iterable):
                raise ValueError(f"required {name!r}: give a list of alternatives, not {entries!r}")
            required[str(name)] = list(entries)
        return cls(list(data.get("forbidden") or []), required)

    def check(self, text: str) -> RuleResult:
        tokens = _tokens(text)
        forbidden = _find(self._forbidden, text, tokens)  # type: ignore[attr-defined]
        required_hits = {name: _find(patterns, text, tokens) for name, patterns in self._required.items()}  # type: ignore[attr-defined]
        found = {name: bool(hits) for name, hits in required_hits.items()}
        return RuleResult(forbidden, found, [name for name, ok in found.items() if not ok], required_hits)


def highlight_html(text: str, result: RuleResult) -> str:
    """``text`` escaped for Telegram HTML; forbidden hits as ``<b>❗…</b>``, required as ``<u>…</u>``.

    Overlapping hits merge; where a forbidden and a required hit overlap, forbidden wins.
    """
    marks = [0] * len(text)  # 0 plain, 1 required, 2 forbidden
    for hits, level in ((h for hs in result.required_hits.values() for h in hs), 1), (result.forbidden_hits, 2):
        for hit in hits:
            for i in range(max(hit.start, 0), min(hit.end, len(text))):
                marks[i] = max(marks[i], level)
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and marks[j] == marks[i]:
            j += 1
        chunk = html.escape(text[i:j], quote=False)
        out.append({0: chunk, 1: f"<u>{chunk}</u>", 2: f"<b>❗{chunk}</b>"}[marks[i]])
        i = j
    return "".join(out)
