"""Assessment categories (BI-RADS, Lung-RADS, LI-RADS, PI-RADS, TI-RADS, Bosniak, O-RADS)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.nlp.matching import compile_ci, lower_same_length

_DATA = json.loads((Path(__file__).parent / "systems.json").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class _Pattern:
    rx: re.Pattern[str]
    keyword: str
    insensitive: bool


@dataclass(frozen=True, slots=True)
class _System:
    name: str
    patterns: tuple[_Pattern, ...]
    categories: frozenset[str]
    mapping: dict[str, str]
    prefix: str


_SYSTEMS = tuple(
    _System(
        name=s["system"],
        patterns=tuple(
            _Pattern(compile_ci(p["re"]), p["keyword"], True)
            if "i" in p.get("flags", "")
            else _Pattern(re.compile(p["re"]), p["keyword"], False)
            for p in s["patterns"]
        ),
        categories=frozenset(s["categories"]),
        mapping=s.get("map", {}),
        prefix=s.get("prefix", ""),
    )
    for s in _DATA["systems"]
)
_NEG_RE = compile_ci(_DATA["negation_before"])
_PRIOR_BEFORE_RE = compile_ci(_DATA["prior_before"])
_PRIOR_AFTER_RE = compile_ci(_DATA["prior_after"])
_BOUNDARY_RE = re.compile(r"[.;,\n]|\bnow\b|\bcurrently\b|\btoday\b|\bto\b")
_PAREN_RE = re.compile(r"\(\s*$")
_SPACE_RE = re.compile(r"[\s\-]+")


@dataclass(frozen=True, slots=True)
class Assessment:
    """One assessment category.

    ``variant``: O-RADS "US"/"MRI" when written; ``prior``: the mention is about an earlier exam."""

    system: str
    category: str
    text: str
    start: int
    end: int
    variant: str | None = None
    prior: bool = False

    def to_record(self) -> dict[str, Any]:
        """The Avro ``Assessment`` record (schemas/report_findings.avsc)."""
        return {
            "system": self.system,
            "category": self.category,
            "text": self.text,
            "start": self.start,
            "end": self.end,
        }


def _normalise(system: _System, raw: str, modifier: str | None) -> str | None:
    cat = _SPACE_RE.sub("", raw).upper()
    cat = system.mapping.get(cat, cat)
    if system.prefix and not cat.startswith(system.prefix):
        cat = system.prefix + cat
    if cat not in system.categories:
        return None
    if modifier and system.name == "Lung-RADS" and not cat.endswith("S"):
        cat += "S"
    return cat


def _window_before(text: str, lo: int, start: int) -> str:
    win = text[max(lo, start - 80) : start]
    found = list(_BOUNDARY_RE.finditer(win))
    last = found[-1] if found else None
    return win[last.end() :] if last else win


def _is_prior(text: str, lo: int, start: int, end: int) -> bool:
    if _PRIOR_BEFORE_RE.search(_window_before(text, lo, start)):
        return True
    if _PRIOR_AFTER_RE.match(text, end, min(len(text), end + 40)):
        return True
    # "Prior mammogram of 2023 (BI-RADS 2)": look past an opening parenthesis.
    pre = text[max(lo, start - 80) : start]
    paren = _PAREN_RE.search(pre)
    return bool(paren and _PRIOR_BEFORE_RE.search(_window_before(pre, 0, paren.start())))


def _near(rx: re.Pattern[str], src: str, keyword: str) -> list[re.Match[str]]:
    """Matches of ``rx`` found in windows around the occurrences of ``keyword`` (no full-text scan)."""
    out: list[re.Match[str]] = []
    done = 0
    i = src.find(keyword)
    while i != -1:
        for m in rx.finditer(src, max(done, i - 30), min(len(src), i + 60)):
            if m.start() >= done:
                out.append(m)
                done = m.end()
        i = src.find(keyword, max(i + 1, done))
    return out


_KEYWORDS = frozenset((pat.insensitive, pat.keyword) for system in _SYSTEMS for pat in system.patterns)


def extract_assessments(
    text: str, *, include_prior: bool = False, low: str | None = None
) -> list[Assessment]:
    """Assessment categories in ``text`` in order of appearance.

    Negated mentions ("no BI-RADS 3 ...") are skipped; mentions about an earlier exam ("previously
    BI-RADS 3", "BI-RADS 2 on the prior") are skipped unless ``include_prior`` (then ``prior=True``).
    ``low``: the text lower-cased, if the caller has it.
    """
    low = lower_same_length(text) if low is None else low
    # each distinct keyword is looked for once (most reports hold none of them)
    present = {key for key in _KEYWORDS if key[1] in (low if key[0] else text)}
    if not present:
        return []
    hits: list[tuple[int, int, _System, str, str | None]] = []
    for system in _SYSTEMS:
        for pat in system.patterns:
            if (pat.insensitive, pat.keyword) not in present:
                continue
            src = low if pat.insensitive else text
            for m in _near(pat.rx, src, pat.keyword):
                mod = m.groupdict().get("mod")
                cat = _normalise(system, m["cat"], mod if system.name == "Lung-RADS" else None)
                if cat is None:
                    continue
                variant = None
                if system.name == "O-RADS" and mod:
                    variant = "MRI" if mod.upper().startswith("MR") else "US"
                    if variant == "MRI" and cat == "0":
                        continue
                end = m.start() + len(m.group().rstrip(" :-–,"))
                hits.append((m.start(), end, system, cat, variant))
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    out: list[Assessment] = []
    last_end = 0
    for start, end, system, cat, variant in hits:
        if start < last_end:  # overlaps a longer/earlier hit ("ACR TI-RADS TR4")
            continue
        lo = last_end
        last_end = end
        if _NEG_RE.search(low, max(0, start - 20), start):
            continue
        prior = _is_prior(low, lo, start, end)
        if prior and not include_prior:
            continue
        out.append(Assessment(system.name, cat, text[start:end], start, end, variant, prior))
    return out
