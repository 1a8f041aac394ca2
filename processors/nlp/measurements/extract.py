"""Size measurements in radiology text (see the package docstring for the behaviour choices)."""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from processors.nlp.matching import compile_ci, lower_same_length

_DATA = json.loads((Path(__file__).parent / "units.json").read_text(encoding="utf-8"))
_UNIT_FACTORS: dict[str, float] = _DATA["units"]


_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)"
_UNIT = "(?:" + "|".join(sorted(_UNIT_FACTORS, key=len, reverse=True)) + r")(?![\w/])"
_SEP = r"\s*(?:x|×|\*|by)\s*"
# A number must not continue a word, a decimal, a date, a time or a list like "1,2".
_LEAD = r"(?<![\w.,/:-])"
_RANGE = rf"(?P<from>from\s+)?(?P<r1>{_NUM})(?:\s*-?\s*{_UNIT})?\s*(?:-|–|to)\s*(?P<r2>{_NUM})\s*-?\s*{_UNIT}"
_DIMS = rf"{_NUM}(?:\s*-?\s*{_UNIT})?(?:{_SEP}{_NUM}(?:\s*-?\s*{_UNIT})?){{0,2}}\s*-?\s*{_UNIT}"
_MEAS_RE = compile_ci(rf"{_LEAD}(?:(?P<range>{_RANGE})|(?P<dims>{_DIMS}))")
_TOKEN_RE = compile_ci(rf"(?P<num>{_NUM})(?:\s*-?\s*(?P<unit>{_UNIT}))?")
_UNIT_RES = [(compile_ci(rf"^(?:{alt})$"), f) for alt, f in _UNIT_FACTORS.items()]
_FACTORS: dict[str, float] = {}  # unit as written (lower case) -> factor, filled on first use
# Fast scan: every measurement ends in a unit; the full regex only runs in a window before each unit.
_UNIT_HIT_RE = re.compile(r"mm|cm|millimet|centimet")


def _alts(key: str) -> str:
    return "(?:" + "|".join(_DATA[key]) + ")"


# "5 mm axial slices", "3-mm reconstructions": adjectives, then a technique noun ("8 mm thick" is a size).
_TECH_AFTER_RE = compile_ci(
    rf"\s*-?\s*(?:{_DATA['technique_after'][0]}\s*-?\s*)*{_DATA['technique_after'][1]}"
)
_TECH_BEFORE_RE = compile_ci(
    rf"\b{_alts('technique_before')}\b[^.;\n]{{0,25}}$|\b(?:acquired|obtained|performed|imaged)\s+(?:at|with)\s*$"
)
_DIST_AFTER_RE = compile_ci(rf"\s*{_alts('distance_after')}")
_PRIOR_BEFORE_RE = compile_ci(
    rf"\b{_alts('prior_before')}\s*(?:measur(?:ed|ing)\s*)?(?:about|approximately|approx\.?|roughly|~|of|at)?\s*$"
)
_PRIOR_AFTER_RE = compile_ci(rf"\s*{_alts('prior_after')}")
# Clause boundaries that end the look-back window for prior cues ("previously 4 mm, now 6 mm").
_CLAUSE_CHARS = ",;([\n"
_CLAUSE_WORDS = ("now", "currently", "today")
_DIGIT_RE = re.compile(r"\d")
_CUT_RE = re.compile(r"[,;)\]\n]|\.(?!\d)")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One size statement. ``kind``: size | technique | distance | prior (only "size" by default)."""

    text: str
    start: int
    end: int
    dims_mm: tuple[float, ...]
    max_mm: float
    prior_max_mm: float | None = None
    sentence: int = 0
    kind: str = "size"
    min_mm: float | None = None
    finding: int | None = None

    def to_record(self) -> dict[str, Any]:
        """The Avro ``Measurement`` record (schemas/report_findings.avsc)."""
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "dims_mm": list(self.dims_mm),
            "max_mm": self.max_mm,
            "prior_max_mm": self.prior_max_mm,
            "finding": self.finding,
        }


def _factor(unit: str) -> float:
    f = _FACTORS.get(unit)
    if f is not None:
        return f
    for rx, f in _UNIT_RES:
        if rx.match(unit):
            _FACTORS[unit] = f
            return f
    raise ValueError(unit)  # pragma: no cover - the regex only matches known units


def _dims(chunk: str) -> list[float]:
    """Numbers in a matched chunk in mm; a number without unit takes the next unit written."""
    values: list[str] = []
    out: list[float] = []
    for tok in _TOKEN_RE.finditer(chunk):
        values.append(tok["num"])
        if tok["unit"]:
            f = _factor(tok["unit"])
            out.extend(round(float(v) * f, 3) for v in values)
            values = []
    return out


def sentence_index(starts: Sequence[int], pos: int) -> int:
    """Index of the sentence (by start offsets) containing or preceding ``pos``."""
    return max(bisect_right(starts, pos) - 1, 0)


def _window_before(low: str, lo: int, start: int) -> str:
    """The text before ``start`` back to the last clause boundary (``_CLAUSE_CHARS`` / ``_CLAUSE_WORDS``)."""
    a = max(lo, start - 60)
    cut = max(low.rfind(c, a, start) for c in _CLAUSE_CHARS) + 1
    for w in _CLAUSE_WORDS:
        i = low.rfind(w, a, start)
        if (
            i >= cut
            and (i == 0 or not low[i - 1].isalnum())
            and not low[i + len(w) : i + len(w) + 1].isalnum()
        ):
            cut = i + len(w)
    return low[max(a, cut) : start]


def _after_clause(text: str, end: int, hi: int) -> str:
    win = text[end : min(hi, end + 40)]
    cut = _CUT_RE.search(win)
    return win[: cut.start()] if cut else win


def _candidates(low: str) -> list[re.Match[str]]:
    """Full measurement matches, found by scanning for units and matching in a window before each."""
    out: list[re.Match[str]] = []
    last_end = 0
    n = len(low)
    for u in _UNIT_HIT_RE.finditer(low):
        if u.start() < last_end or (u.start() and low[u.start() - 1].isalpha()):
            continue  # inside a measurement already taken, or a word ("recommend", "summary")
        ws = max(last_end, u.start() - 60)
        while ws > last_end and not low[ws - 1].isspace():
            ws -= 1
        for m in _MEAS_RE.finditer(low, ws, min(n, u.end() + 12)):
            if m.start() <= u.start() < m.end():
                out.append(m)
                last_end = m.end()
                break
    return out


def extract_measurements(
    text: str,
    sentences: Sequence[tuple[int, int]] | None = None,
    *,
    all_kinds: bool = False,
    low: str | None = None,
) -> list[Measurement]:
    """Size measurements in ``text`` (offsets into ``text``), lesion sizes only unless ``all_kinds``
    (``low``: the text lower-cased, if the caller has it)."""
    spans = list(sentences) if sentences else [(0, len(text))]
    starts = [s for s, _ in spans]
    low_text = lower_same_length(text) if low is None else low
    raw: list[Measurement] = []
    for m in _candidates(low_text):
        si = sentence_index(starts, m.start())
        lo, hi = spans[si]
        lo, hi = min(lo, m.start()), max(hi, m.end())
        prior: float | None = None
        range_low: float | None = None
        if m["range"]:
            start = m.start("r1")
            a, b = _dims(low_text[start : m.end()])[:2]
            if m["from"]:
                dims, prior = [b], a
            else:
                dims, range_low = [max(a, b)], min(a, b)
        else:
            start = m.start()
            dims = _dims(m.group())
        if not dims:
            continue
        end = m.end()
        before = low_text[max(lo, start - 60) : start]
        kind = "size"
        if _TECH_AFTER_RE.match(low_text, end, hi) or _TECH_BEFORE_RE.search(before):
            kind = "technique"
        elif _DIST_AFTER_RE.match(low_text, end, hi):
            kind = "distance"
        elif prior is None and (
            _PRIOR_BEFORE_RE.search(_window_before(low_text, lo, start))
            or (
                (after := _after_clause(low_text, end, hi))
                and _PRIOR_AFTER_RE.match(after)
                and not _DIGIT_RE.search(after)
            )
        ):
            kind = "prior"
        raw.append(
            Measurement(
                text=text[start:end],
                start=start,
                end=end,
                dims_mm=tuple(dims),
                max_mm=max(dims),
                prior_max_mm=prior,
                sentence=si,
                kind=kind,
                min_mm=range_low,
            )
        )
    return _merge_priors(raw, all_kinds)


def _merge_priors(raw: list[Measurement], all_kinds: bool) -> list[Measurement]:
    """Fold each "prior" value into the current size it is compared with (same sentence)."""
    out = list(raw)
    used: set[int] = set()
    for i, m in enumerate(raw):
        if m.kind != "prior":
            continue
        target = None
        for j in range(i - 1, -1, -1):  # preferred: the current size this one follows
            if raw[j].sentence != m.sentence:
                break
            if raw[j].kind == "size":
                target = j
                break
        if target is None:
            for j in range(i + 1, len(raw)):
                if raw[j].sentence != m.sentence:
                    break
                if raw[j].kind == "size":
                    target = j
                    break
        if target is None:
            continue
        used.add(i)
        cur = out[target]
        prior = m.max_mm if cur.prior_max_mm is None else max(cur.prior_max_mm, m.max_mm)
        out[target] = replace(cur, prior_max_mm=prior)
    if all_kinds:
        return [m for i, m in enumerate(out) if i not in used]
    return [m for m in out if m.kind == "size"]


_BREAK_RE = re.compile(r"[;.]|\b(?:and|with|but|while|whereas|adjacent|near|abutting|next)\b", re.IGNORECASE)


def attach_measurements(
    measurements: Sequence[Measurement],
    finding_spans: Sequence[tuple[int, int, int]],
    text: str | None = None,
) -> list[int | None]:
    """For each measurement, the index of the finding span (start, end, sentence) it describes, or None.

    Candidates are findings in the same sentence. The cost is the character gap between the two spans;
    given ``text``, each clause break in the gap ("and", "with", "adjacent", ";", ...) adds 40, so
    "8 mm nodule", "nodule measuring 8 mm" and "a nodule in the RUL, 8 mm" attach to the nodule, while
    "emphysema and an 8 mm nodule" does not attach to the emphysema. Ties go to the finding the
    measurement follows. Without ``text`` only the gap length counts.
    """
    result: list[int | None] = []
    for m in measurements:
        best: tuple[float, int, int] | None = None
        for idx, (fs, fe, fsent) in enumerate(finding_spans):
            if fsent != m.sentence:
                continue
            if fe <= m.start:
                lo, hi, order = fe, m.start, 0
            elif fs >= m.end:
                lo, hi, order = m.end, fs, 1
            else:
                lo, hi, order = 0, 0, 0
            if text is None:
                cost = float(hi - lo)
            else:
                gap = text[lo:hi]
                cost = float(len(gap.strip())) + 40.0 * len(_BREAK_RE.findall(gap))
            key = (cost, order, idx)
            if best is None or key < best:
                best = key
        result.append(best[2] if best else None)
    return result


def with_findings(
    measurements: Sequence[Measurement],
    findings: Sequence[Any],
    text: str | None = None,
    eligible: Callable[[Any], bool] | None = None,
) -> list[Measurement]:
    """``measurements`` with ``finding`` set (index into ``findings``: objects with start, end, sentence),
    via ``attach_measurements``; only findings passing ``eligible`` (e.g. not negated) are candidates."""
    idx = [i for i, f in enumerate(findings) if eligible is None or eligible(f)]
    spans = [(findings[i].start, findings[i].end, findings[i].sentence) for i in idx]
    chosen = attach_measurements(measurements, spans, text)
    return [m if c is None else replace(m, finding=idx[c]) for m, c in zip(measurements, chosen, strict=True)]
