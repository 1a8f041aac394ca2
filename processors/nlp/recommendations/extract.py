"""Follow-up recommendations (see the package docstring for the behaviour choices)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_DATA = json.loads((Path(__file__).parent / "rules.json").read_text(encoding="utf-8"))
_I = re.IGNORECASE


def _any(patterns: list[str]) -> str:
    return "(?:" + "|".join(patterns) + ")"


_CUE_RE = re.compile(r"\b" + _any(_DATA["cues"]) + r"\b", _I)
_STRONG_CUE_RE = re.compile(r"\b" + _any(_DATA["strong_cues"]) + r"\b", _I)
_NOT_AFTER_RE = re.compile(r"\b" + _DATA["not_after"], _I)


@dataclass(frozen=True, slots=True)
class _Trigger:
    kind: str
    needs: str  # "none" | "cue" | "cue_or_interval"
    rx: re.Pattern[str]


_TRIGGERS = tuple(
    _Trigger(
        t["kind"],
        {False: "none", True: "cue", "or_interval": "cue_or_interval"}[t["cue"]],
        re.compile(_any(t["patterns"]), _I),
    )
    for t in _DATA["triggers"]
)
_PRIORITY = {k: i for i, k in enumerate(dict.fromkeys(t.kind for t in _TRIGGERS))}


def _modality_regex() -> tuple[re.Pattern[str], list[str]]:
    parts: list[str] = []
    codes: list[str] = []
    for i, entry in enumerate(_DATA["modalities"]):
        cs = set(entry.get("cs", []))
        alts = [p if p in cs else f"(?i:{p})" for p in entry["patterns"]]
        parts.append(rf"(?P<m{i}>\b(?:{'|'.join(alts)})\b)")
        codes.append(entry["code"])
    return re.compile("|".join(parts)), codes


_MODALITY_RE, _MODALITY_CODES = _modality_regex()

_UNITS: dict[str, int] = _DATA["interval_units"]
_WORDS: dict[str, int | None] = _DATA["number_words"]
_NUMW = r"(?:\d+(?:\.\d+)?|" + "|".join(sorted((w for w in _WORDS if _WORDS[w]), key=len, reverse=True)) + ")"
_UNIT_ALT = "|".join(sorted(_UNITS, key=len, reverse=True))
_INTERVAL_RE = re.compile(
    rf"\b(?P<prep>in|within|at|after|over\s+the\s+next|every|q)\s+"
    rf"(?:(?:approximately|approx\.?|about|roughly|another|an\s+additional|a\s+further|the\s+next)\s+)?"
    rf"(?P<a>{_NUMW})(?:\s*(?:-|–|to|or)\s*(?P<b>{_NUMW}))?\s*-?\s*(?P<u>{_UNIT_ALT})\b(?!\s+ago)"
    rf"|\b(?P<a2>{_NUMW})(?:\s*(?:-|–|to)\s*(?P<b2>{_NUMW}))?\s*-?\s*(?P<u2>{_UNIT_ALT})\s*-?\s*"
    rf"(?:follow[- ]?up|interval|surveillance|repeat|re-?imaging|re-?evaluation|recheck)",
    _I,
)
_FIXED = tuple((re.compile(f["re"], _I), f["min"], f["max"]) for f in _DATA["fixed_intervals"])
_GUIDELINES = tuple((g["name"], re.compile(g["re"], _I)) for g in _DATA["guidelines"])
_GUIDELINE_RE = re.compile("|".join(f"(?P<g{i}>{g['re']})" for i, g in enumerate(_DATA["guidelines"])), _I)
_STRIP_TAIL_RE = re.compile(r"(?:[\s,;:]+|\b(?:and|or|then|with)\b)+$", _I)
_STRIP_HEAD_RE = re.compile(r"^(?:[\s,;:]+|\b(?:and|or|then)\b)+", _I)
# Cheap pre-filter: nothing here, no work.
_ANY_RE = re.compile(
    r"recommend|suggest|advis|consider|follow|f/u|surveil|repeat|correlat|biops|consult|refer|"
    r"warrant|indicated|helpful|useful|annual|interval|screening|comparison|prior|sampling|FNA|"
    r"evaluat|imag|please|requir|need|necessary|month|week|year|day",
    _I,
)


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
    end = len(text) if end is None else end
    best: tuple[int, int, int] | None = None  # (position, min, max)
    m = _INTERVAL_RE.search(text, start, end)
    if m:
        a = _num(m["a"] or m["a2"])
        b_raw = m["b"] or m["b2"]
        b = _num(b_raw) if b_raw else a
        unit = _UNITS[(m["u"] or m["u2"]).lower()]
        if a is not None and b is not None:
            lo, hi = sorted((_days(a, unit), _days(b, unit)))
            if m["prep"] and m["prep"].lower() == "within":
                lo = 0
            best = (m.start(), lo, hi)
    for rx, lo_d, hi_d in _FIXED:
        f = rx.search(text, start, end)
        if f and (best is None or f.start() < best[0]):
            best = (f.start(), lo_d, hi_d)
    return (best[1], best[2]) if best else None


def _modality(text: str, start: int, end: int) -> str | None:
    m = _MODALITY_RE.search(text, start, end)
    if not m or m.lastgroup is None:
        return None
    return _MODALITY_CODES[int(m.lastgroup[1:])]


def _guideline(text: str, start: int, end: int) -> str | None:
    m = _GUIDELINE_RE.search(text, start, end)
    if not m or m.lastgroup is None:
        return None
    return _GUIDELINES[int(m.lastgroup[1:])][0]


def _sentence_recs(text: str, lo: int, hi: int, si: int) -> list[Recommendation]:
    has_cue = bool(_CUE_RE.search(text, lo, hi))
    has_interval = parse_interval(text, lo, hi) is not None
    found: list[tuple[int, int, str]] = []
    for trig in _TRIGGERS:
        if trig.needs == "cue" and not has_cue:
            continue
        if trig.needs == "cue_or_interval" and not (has_cue or has_interval):
            continue
        for m in trig.rx.finditer(text, lo, hi):
            if trig.kind != "no_followup" and _NOT_AFTER_RE.search(text, max(lo, m.start() - 40), m.start()):
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
        mod = _MODALITY_RE.search(text, lo, hi)
        if mod and not _NOT_AFTER_RE.search(text, max(lo, mod.start() - 40), mod.start()):
            kept = [(mod.start(), mod.end(), "imaging_followup")]
    if not kept:
        strong = _STRONG_CUE_RE.search(text, lo, hi)
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
        raw = text[seg_lo:seg_hi]
        head = _STRIP_HEAD_RE.match(raw)
        a = seg_lo + (head.end() if head else 0)
        tail = _STRIP_TAIL_RE.search(text, a, seg_hi)
        b = tail.start() if tail else seg_hi
        while b > a and text[b - 1] in ".!?":
            b -= 1
        if b <= a:
            continue
        interval = (
            parse_interval(text, a, b) if kind in ("imaging_followup", "other", "consultation") else None
        )
        out.append(
            Recommendation(
                text=text[a:b],
                start=a,
                end=b,
                kind=kind,
                modality=_modality(text, a, b) if kind != "no_followup" else None,
                interval_days_min=interval[0] if interval else None,
                interval_days_max=interval[1] if interval else None,
                guideline=_guideline(text, a, b) or _guideline(text, lo, hi),
                sentence=si,
            )
        )
    return out


def extract_recommendations(
    text: str, sentences: Sequence[tuple[int, int]] | None = None
) -> list[Recommendation]:
    """Recommendations in ``text``, sentence by sentence (the whole text is one sentence when None)."""
    spans = list(sentences) if sentences else [(0, len(text))]
    out: list[Recommendation] = []
    for si, (lo, hi) in enumerate(spans):
        if _ANY_RE.search(text, lo, hi):
            out.extend(_sentence_recs(text, lo, hi, si))
    return out
