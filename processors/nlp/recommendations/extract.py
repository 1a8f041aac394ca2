"""Follow-up recommendations (see the package docstring for the behaviour choices)."""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.nlp.matching import compile_ci, lower_same_length, substring_pattern

_DATA = json.loads((Path(__file__).parent / "rules.json").read_text(encoding="utf-8"))


def _any(patterns: list[str]) -> str:
    return "(?:" + "|".join(patterns) + ")"


_CUE_RE = compile_ci(r"\b" + _any(_DATA["cues"]["patterns"]) + r"\b")
_CUE_KW: tuple[str, ...] = tuple(_DATA["cues"]["keywords"])
_STRONG_CUE_RE = compile_ci(r"\b" + _any(_DATA["strong_cues"]["patterns"]) + r"\b")
_STRONG_KW: tuple[str, ...] = tuple(_DATA["strong_cues"]["keywords"])
_NOT_AFTER_RE = compile_ci(r"\b" + _DATA["not_after"])


@dataclass(frozen=True, slots=True)
class _Trigger:
    kind: str
    needs: str  # "none" | "cue" | "cue_or_interval"
    rx: re.Pattern[str]
    keywords: tuple[str, ...]


_TRIGGERS = tuple(
    _Trigger(
        t["kind"],
        {False: "none", True: "cue", "or_interval": "cue_or_interval"}[t["cue"]],
        compile_ci(_any(t["patterns"])),
        tuple(t["keywords"]),
    )
    for t in _DATA["triggers"]
)
_PRIORITY = {k: i for i, k in enumerate(dict.fromkeys(t.kind for t in _TRIGGERS))}


def _alternation(patterns: list[str]) -> str:
    return r"\b(?:" + ("|".join(patterns) or "(?!)") + r")\b"


# One plain alternation per case (named groups per entry would defeat the regex engine's fast path);
# the entry is then found by matching the hit alone against each entry.
_MOD_CS_ALTS = [p for e in _DATA["modalities"] for p in e["patterns"] if p in e.get("cs", [])]
_MOD_CI_ALTS = [p for e in _DATA["modalities"] for p in e["patterns"] if p not in e.get("cs", [])]
_MODALITY_CI_RE = compile_ci(_alternation(_MOD_CI_ALTS))
_MODALITY_CS_RE = re.compile(_alternation(_MOD_CS_ALTS))
_MODALITY_ENTRIES = tuple(
    (
        e["code"],
        compile_ci("(?:" + ("|".join(p for p in e["patterns"] if p not in e.get("cs", [])) or "(?!)") + ")"),
        re.compile("(?:" + ("|".join(e.get("cs", [])) or "(?!)") + ")"),
    )
    for e in _DATA["modalities"]
)
_MODALITY_CS_KW = (
    "CT",
    "MR",
    "US",
    "PET",
    "CXR",
    "KUB",
    "HIDA",
    "V/Q",
    "SPECT",
    "MIBG",
    "UGI",
    "DXA",
    "DEXA",
    "LDCT",
)


_UNITS: dict[str, int] = _DATA["interval_units"]
_WORDS: dict[str, int | None] = _DATA["number_words"]
_NUMW = r"(?:\d+(?:\.\d+)?|" + "|".join(sorted((w for w in _WORDS if _WORDS[w]), key=len, reverse=True)) + ")"
_UNIT_ALT = "|".join(sorted(_UNITS, key=len, reverse=True))
_INTERVAL_RE = compile_ci(
    rf"\b(?P<prep>in|within|at|after|over\s+the\s+next|every|q)\s+"
    rf"(?:(?:approximately|approx\.?|about|roughly|another|an\s+additional|a\s+further|the\s+next)\s+)?"
    rf"(?P<a>{_NUMW})(?:\s*(?:-|–|to|or)\s*(?P<b>{_NUMW}))?\s*-?\s*(?P<u>{_UNIT_ALT})\b(?!\s+ago)"
    rf"|\b(?P<a2>{_NUMW})(?:\s*(?:-|–|to)\s*(?P<b2>{_NUMW}))?\s*-?\s*(?P<u2>{_UNIT_ALT})\s*-?\s*"
    rf"(?:follow[- ]?up|interval|surveillance|repeat|re-?imaging|re-?evaluation|recheck)"
)
_FIXED = tuple(
    (compile_ci(f["re"]), f["min"], f["max"], tuple(f["keywords"])) for f in _DATA["fixed_intervals"]
)
_INTERVAL_KW: tuple[str, ...] = tuple(_DATA["interval_keywords"])
_GUIDELINE_KW: tuple[str, ...] = tuple(_DATA["guideline_keywords"])


# A sentence is examined only if it holds one of these: a cue, a trigger that needs no cue, an interval.
def _minimal(keywords: list[str]) -> tuple[str, ...]:
    """Keywords without those containing another one (a text holding "be considered" holds "consider")."""
    uniq = list(dict.fromkeys(keywords))
    return tuple(k for k in uniq if not any(o != k and o in k for o in uniq))


_SENTENCE_KW = _minimal(
    [
        *_CUE_KW,
        *(k for t in _TRIGGERS if t.needs == "none" for k in t.keywords),
        *_INTERVAL_KW,
        *(k for f in _FIXED for k in f[3]),
    ]
)


# where any of them starts, in one pass (cheaper than a ``find`` per keyword)
_SENTENCE_KW_RE = re.compile(substring_pattern(_SENTENCE_KW))


def _has(seg: str, keywords: tuple[str, ...]) -> bool:
    for k in keywords:  # noqa: SIM110 - a plain loop is about twice as fast as any() over a generator
        if k in seg:
            return True
    return False


_GUIDELINE_RE = compile_ci("|".join(g["re"] for g in _DATA["guidelines"]))
_GUIDELINE_ENTRIES = tuple((g["name"], compile_ci(g["re"])) for g in _DATA["guidelines"])
_EDGE_CHARS = " \t\r\n,;:.!?"
_EDGE_WORDS = ("and", "or", "then", "with")


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommendation. ``kind``: imaging_followup | biopsy | clinical_correlation | comparison |
    consultation | other | no_followup."""

    text: str
    start: int
    end: int
    kind: str
    modality: str | None = None
    interval_days_min: int | None = None
    interval_days_max: int | None = None
    guideline: str | None = None
    sentence: int = 0

    def to_record(self) -> dict[str, Any]:
        """The Avro ``Recommendation`` record (schemas/report_findings.avsc)."""
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "kind": self.kind,
            "modality": self.modality,
            "interval_days_min": self.interval_days_min,
            "interval_days_max": self.interval_days_max,
            "guideline": self.guideline,
        }


def _num(word: str) -> float | None:
    w = word.lower()
    if w in _WORDS:
        v = _WORDS[w]
        return float(v) if v is not None else None
    return float(w)


def _days(value: float, unit: int) -> int:
    if unit == 30 and value % 12 == 0:  # 12 months is a year, not 360 days
        return round(value / 12 * 365)
    return round(value * unit)


def parse_interval(text: str, start: int = 0, end: int | None = None) -> tuple[int, int] | None:
    """(min_days, max_days) of the first interval in ``text[start:end]``: "in 3-6 months" -> (90, 180),
    "within 6 weeks" -> (0, 42), "annual" -> (365, 365), "short-interval" -> (90, 180)."""
    return _interval(lower_same_length(text), start, len(text) if end is None else end)


def _interval_match(low: str, start: int, end: int, seg: str) -> re.Match[str] | None:
    """The first interval phrase, searched only in windows around the unit words (no full scan)."""
    best: re.Match[str] | None = None
    for k in _INTERVAL_KW:
        i = seg.find(k)
        while i != -1:
            p = start + i
            m = _INTERVAL_RE.search(low, max(start, p - 45), min(end, p + 30))
            if m and (best is None or m.start() < best.start()):
                best = m
            i = seg.find(k, i + 1)
    return best


def _interval(low: str, start: int, end: int) -> tuple[int, int] | None:
    seg = low[start:end]
    best: tuple[int, int, int] | None = None  # (position, min, max)
    m = _interval_match(low, start, end, seg)
    if m:
        a = _num(m["a"] or m["a2"])
        b_raw = m["b"] or m["b2"]
        b = _num(b_raw) if b_raw else a
        unit = _UNITS[m["u"] or m["u2"]]
        if a is not None and b is not None:
            lo, hi = sorted((_days(a, unit), _days(b, unit)))
            if m["prep"] == "within":
                lo = 0
            best = (m.start(), lo, hi)
    for rx, lo_d, hi_d, kws in _FIXED:
        f = rx.search(low, start, end) if _has(seg, kws) else None
        if f and (best is None or f.start() < best[0]):
            best = (f.start(), lo_d, hi_d)
    return (best[1], best[2]) if best else None


def _modality_match(text: str, low: str, start: int, end: int) -> re.Match[str] | None:
    """The first modality named in ``text[start:end]`` (acronyms case-sensitive, words not)."""
    a = _MODALITY_CI_RE.search(low, start, end)
    b = _MODALITY_CS_RE.search(text, start, end) if _has(text[start:end], _MODALITY_CS_KW) else None
    if a is None or (b is not None and b.start() < a.start()):
        return b
    return a


def _modality(text: str, low: str, start: int, end: int) -> str | None:
    m = _modality_match(text, low, start, end)
    if not m:
        return None
    hit = text[m.start() : m.end()]
    for code, ci, cs in _MODALITY_ENTRIES:
        if cs.fullmatch(hit) or ci.fullmatch(hit.lower()):
            return code
    return None  # pragma: no cover - every hit comes from one entry


def _guideline(low: str, start: int, end: int) -> str | None:
    if not _has(low[start:end], _GUIDELINE_KW):
        return None
    m = _GUIDELINE_RE.search(low, start, end)
    if not m:
        return None
    for name, rx in _GUIDELINE_ENTRIES:
        if rx.fullmatch(m.group()):
            return name
    return None  # pragma: no cover


def _trim(low: str, a: int, b: int) -> tuple[int, int]:
    """Drop edge punctuation/space and dangling connectives ("... correlation and")."""
    changed = True
    while changed and a < b:
        changed = False
        while a < b and low[a] in _EDGE_CHARS:
            a += 1
        while b > a and low[b - 1] in _EDGE_CHARS:
            b -= 1
        for w in _EDGE_WORDS:
            n = len(w)
            if b - a > n and low.startswith(w, b - n) and not low[b - n - 1].isalnum():
                b -= n
                changed = True
            if b - a > n and low.startswith(w, a) and not low[a + n].isalnum():
                a += n
                changed = True
    return a, b


def _sentence_recs(text: str, low: str, lo: int, hi: int, si: int) -> list[Recommendation]:
    seg = low[lo:hi]
    has_cue = _has(seg, _CUE_KW) and bool(_CUE_RE.search(low, lo, hi))
    has_interval = _interval(low, lo, hi) is not None
    found: list[tuple[int, int, str]] = []
    for trig in _TRIGGERS:
        if trig.needs == "cue" and not has_cue:
            continue
        if trig.needs == "cue_or_interval" and not (has_cue or has_interval):
            continue
        if not _has(seg, trig.keywords):
            continue
        for m in trig.rx.finditer(low, lo, hi):
            if trig.kind != "no_followup" and _NOT_AFTER_RE.search(low, max(lo, m.start() - 40), m.start()):
                continue  # "status post biopsy", "prior follow-up"
            found.append((m.start(), m.end(), trig.kind))
    # Higher-priority kinds swallow triggers inside their spans ("no follow-up ... recommended",
    # "US-guided biopsy", "GI follow-up").
    found.sort(key=lambda f: (_PRIORITY[f[2]], f[0]))
    kept: list[tuple[int, int, str]] = []
    for s, e, k in found:
        if any(s < ke and ks < e for ks, ke, _ in kept):
            continue
        kept.append((s, e, k))
    if not kept and (has_cue or has_interval):  # "Recommend MRI in 1 year.", "CT in 12 months."
        mod = _modality_match(text, low, lo, hi)
        if mod and not _NOT_AFTER_RE.search(low, max(lo, mod.start() - 40), mod.start()):
            kept = [(mod.start(), mod.end(), "imaging_followup")]
    if not kept:
        strong = _STRONG_CUE_RE.search(low, lo, hi) if _has(seg, _STRONG_KW) else None
        if not strong:
            return []
        kept = [(strong.start(), strong.end(), "other")]
    kept.sort()
    groups: list[tuple[int, str]] = []  # (first trigger start, kind)
    for s, _, k in kept:
        if not groups or groups[-1][1] != k:
            groups.append((s, k))
    out: list[Recommendation] = []
    for gi, (gs, kind) in enumerate(groups):
        seg_lo = lo if gi == 0 else gs
        seg_hi = groups[gi + 1][0] if gi + 1 < len(groups) else hi
        a, b = _trim(low, seg_lo, seg_hi)
        if b <= a:
            continue
        interval = _interval(low, a, b) if kind in ("imaging_followup", "other", "consultation") else None
        out.append(
            Recommendation(
                text=text[a:b],
                start=a,
                end=b,
                kind=kind,
                modality=_modality(text, low, a, b) if kind != "no_followup" else None,
                interval_days_min=interval[0] if interval else None,
                interval_days_max=interval[1] if interval else None,
                guideline=_guideline(low, a, b) or _guideline(low, lo, hi),
                sentence=si,
            )
        )
    return out


def extract_recommendations(
    text: str, sentences: Sequence[tuple[int, int]] | None = None, *, low: str | None = None
) -> list[Recommendation]:
    """Recommendations in ``text``, sentence by sentence (the whole text is one sentence when None;
    ``low``: the text lower-cased, if the caller has it)."""
    spans = list(sentences) if sentences else [(0, len(text))]
    low = lower_same_length(text) if low is None else low
    starts = [s for s, _ in spans]
    candidates: set[int] = set()
    m = _SENTENCE_KW_RE.search(low)
    while m is not None:
        i = m.start()
        si = bisect_right(starts, i) - 1
        if si >= 0 and i < spans[si][1]:
            candidates.add(si)
        m = _SENTENCE_KW_RE.search(low, i + 1)
    out: list[Recommendation] = []
    for si in sorted(candidates):
        lo, hi = spans[si]
        out.extend(_sentence_recs(text, low, lo, hi, si))
    return out
