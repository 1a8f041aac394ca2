"""Critical results from ConText-classified findings, and the communication statement."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from processors.nlp.matching import compile_ci, lower_same_length

_HERE = Path(__file__).parent
_DATA = json.loads((_HERE / "concepts.json").read_text(encoding="utf-8"))
_CONCEPTS = _DATA["concepts"]
REPORTED_SECTIONS: frozenset[str] = frozenset(_DATA["reported_sections"])
_COMM = json.loads((_HERE / "communication.json").read_text(encoding="utf-8"))
_I = re.IGNORECASE


_NORM_RE = re.compile(r"[\s_\-/]+")
_PUNCT_RE = re.compile(r"[^\w\s]")


def normalise(term: str) -> str:
    """Lower-case, hyphens/underscores/slashes as spaces, no other punctuation, single spaces."""
    return _NORM_RE.sub(" ", _PUNCT_RE.sub(" ", term.replace("-", " ").replace("_", " "))).strip().lower()


_LEVEL: dict[str, int] = {c["concept"]: int(c["level"]) for c in _CONCEPTS}
_SYNONYMS: dict[str, tuple[str, ...]] = {
    c["concept"]: tuple(dict.fromkeys(normalise(s) for s in [c["concept"], *c["synonyms"]]))
    for c in _CONCEPTS
}
_BY_TERM: dict[str, str] = {}
for _concept, _terms in _SYNONYMS.items():
    for _t in _terms:
        _BY_TERM.setdefault(_t, _concept)
_TERM_RE = re.compile(
    r"\b(?P<t>" + "|".join(re.escape(t) for t in sorted(_BY_TERM, key=len, reverse=True)) + r")(?:e?s)?\b"
)


def critical_concepts() -> frozenset[str]:
    """Names of the critical concepts (``concepts.json``)."""
    return frozenset(_SYNONYMS)


def critical_synonyms() -> dict[str, tuple[str, ...]]:
    """Concept -> normalised synonyms (the concept name first), for adding to a lexicon."""
    return dict(_SYNONYMS)


def critical_level(concept: str) -> int | None:
    """1 = critical (minutes), 2 = urgent (hours); None for a non-critical concept."""
    return _LEVEL.get(concept)


@lru_cache(maxsize=16384)  # pure; a finding's (concept, text) pair recurs in report after report
def match_critical(concept: str | None, text: str | None) -> str | None:
    """The critical concept for a finding: by its text against the synonyms (longest synonym wins,
    so "tension pneumothorax" beats "pneumothorax"), else by its concept name; None if not critical."""
    best: tuple[int, str] | None = None
    for raw in (text, concept):
        if not raw:
            continue
        norm = normalise(raw)
        exact = _BY_TERM.get(norm)
        if exact:
            cand = (len(norm), exact)
        else:
            m = _TERM_RE.search(norm)
            if not m:
                continue
            cand = (len(m["t"]), _BY_TERM[m["t"]])
        if best is None or cand[0] > best[0]:
            best = cand
    return best[1] if best else None


class FindingLike(Protocol):
    concept: str
    text: str
    start: int
    end: int
    negated: bool
    uncertain: bool
    historical: bool
    hypothetical: bool
    experiencer: str


@dataclass(frozen=True, slots=True)
class CriticalResult:
    """A positive critical finding mention. ``level``: 1 critical, 2 urgent; ``finding``: its index."""

    concept: str
    text: str
    start: int
    end: int
    level: int = 1
    uncertain: bool = False
    finding: int | None = None

    def to_record(self) -> dict[str, Any]:
        """The Avro ``CriticalResult`` record (schemas/report_findings.avsc)."""
        return {"concept": self.concept, "text": self.text, "start": self.start, "end": self.end}


def critical_results(
    findings: Iterable[FindingLike],
    *,
    include_uncertain: bool = False,
    sections: Collection[str] = REPORTED_SECTIONS,
) -> list[CriticalResult]:
    """Critical results among ``findings`` (objects with concept, text, start, end, negated, uncertain,
    historical, hypothetical, experiencer; an optional ``change`` == "resolved" also excludes).

    Only findings of this exam count: one with a ``section`` attribute outside ``sections``
    (``reported_sections`` of concepts.json: not the indication, exam, technique or comparison) is
    left out ("INDICATION: pneumothorax", "COMPARISON: CT showing a subdural hematoma").

    Only positive mentions count: not negated, not hypothetical, not historical, experiencer
    "patient" (or empty), and not uncertain unless ``include_uncertain`` (then ``uncertain=True``);
    a finding whose optional ``certainty`` is "probable" ("likely", "probable", "consistent with")
    counts as positive, flagged ``uncertain=True``.
    One result per finding, in the order given.
    """
    out: list[CriticalResult] = []
    for i, f in enumerate(findings):
        if f.negated or f.hypothetical or f.historical:
            continue
        section = getattr(f, "section", None)
        if section is not None and section not in sections:
            continue
        if (f.experiencer or "patient").lower() != "patient":
            continue
        probable = (getattr(f, "certainty", None) or "") == "probable"
        if f.uncertain and not probable and not include_uncertain:
            continue
        if (getattr(f, "change", None) or "").lower() == "resolved":
            continue
        concept = match_critical(f.concept, f.text)
        if concept is None:
            continue
        out.append(CriticalResult(concept, f.text, f.start, f.end, _LEVEL[concept], bool(f.uncertain), i))
    return out


# --- communication -----------------------------------------------------------------------------------

_VERB_RE = compile_ci(r"\b(?:" + "|".join(_COMM["verbs"]) + r")\b")
_VERB_KW: tuple[str, ...] = tuple(_COMM["verb_keywords"])
_NOT_BEFORE_RE = compile_ci(r"\b" + _COMM["not_before"])
_TITLE_RE = re.compile(_COMM["recipient_title"])
_ROLE_WORDS = "(?:" + "|".join(_COMM["role_words"]) + ")"
_ROLE_WORD_RE = compile_ci(rf"\b{_ROLE_WORDS}\b")
_STOP_RE = compile_ci(_COMM["stops"])
_MODIFIERS = frozenset(w.lower() for w in _COMM["role_modifiers"])
_PASSIVE_RE = re.compile(r"\b(?:was|were|is|are|has\s+been|have\s+been)\s+(?:\w+\s+)?$")
_SENT_END_RE = re.compile(
    r"(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bMrs)(?<!\bDrs)(?<!\bvs)(?<![ap]\.m)(?<![AP]\.M)(?<!\b[A-Z])"
    r"(?<!\bDR)(?<!\bMR)(?<!\bMS)(?<!\bMRS)(?<!\bDRS)(?<!\bVS)"
    r"\.(?=\s+[A-Z(\[]|\s*$)|[!?](?=\s)|\n\s*\n"
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_MONTH = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE_RE = re.compile(
    r"(?<![\d/])(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}|\d{2})(?![\d/])"
    r"|(?<!\d)(?P<iy>\d{4})-(?P<im>\d{2})-(?P<id>\d{2})(?!\d)"
    rf"|\b{_MONTH}\s+(?P<md>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<my>\d{{4}})\b"
    rf"|\b(?P<dm>\d{{1,2}})\s+(?P<mon2>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?,?\s+(?P<dy>\d{{4}})\b",
    _I,
)
_TIME_RE = re.compile(
    r"(?<![\d:/])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?::[0-5]\d)?(?!\d)"
    r"(?:\s*(?P<ap>[AaPp])\.?\s?[Mm]\b\.?)?(?:\s*(?:hours|hrs|h)\b)?"
    r"|\b(?P<h2>0?[1-9]|1[0-2])\s*(?P<ap2>[AaPp])\.?\s?[Mm]\b\.?"
    r"|\b(?P<h3>[01]\d|2[0-3])(?P<m3>[0-5]\d)\s*(?:hours|hrs|h)\b",
)


_AMPM_END_RE = re.compile(r"\b[AaPp]\.[Mm]\.$")


@dataclass(frozen=True, slots=True)
class Communication:
    """The statement that results were communicated. ``time``: naive local datetime when the text gives
    a full date (with year) and a time of day; else None (``time_text`` keeps what was written)."""

    text: str
    start: int
    end: int
    recipient: str | None = None
    time_text: str | None = None
    time: datetime | None = None

    def to_record(self) -> dict[str, Any]:
        """The Avro ``Communication`` record (schemas/report_findings.avsc)."""
        return {
            "text": self.text,
            "recipient": self.recipient,
            "time_text": self.time_text,
            "time": self.time,
        }


def _sentence_bounds(text: str, pos: int, sentences: Sequence[tuple[int, int]] | None) -> tuple[int, int]:
    if sentences:
        for s, e in sentences:
            if s <= pos < e:
                return s, e
    lo = max(0, pos - 600)  # a sentence longer than this is cut
    for m in _SENT_END_RE.finditer(text, lo, pos):
        lo = m.end()
    end = _SENT_END_RE.search(text, pos, min(len(text), pos + 600))
    hi = end.end() if end else min(len(text), pos + 600)
    return lo, hi


def _recipient(text: str, low: str, lo: int, hi: int, verb: re.Match[str]) -> str | None:
    title = _TITLE_RE.search(text, verb.start(), hi) or _TITLE_RE.search(text, lo, hi)
    if title:
        return title.group().strip()
    stop = _STOP_RE.search(low, verb.end(), hi)
    chunk = text[verb.end() : stop.start() if stop else hi].strip()
    if chunk and len(chunk) <= 80 and _ROLE_WORD_RE.search(chunk.lower()):
        return chunk
    passive = _PASSIVE_RE.search(low, lo, verb.start())  # "the ED physician was notified"
    if not passive:
        return None
    found = list(_ROLE_WORD_RE.finditer(low, lo, passive.start()))
    last = found[-1] if found else None
    if last is None:
        return None
    words = text[lo : last.start()].split()
    keep = 0
    while (
        keep < min(len(words), 4)
        and words[-1 - keep][-1] not in ":;,.)"
        and (words[-1 - keep].lower() in _MODIFIERS or words[-1 - keep][:1].isupper())
    ):
        keep += 1
    role = text[last.start() : last.end()]
    phrase = " ".join([*words[len(words) - keep :], role]) if keep else role
    return phrase


def _year(y: str) -> int:
    return int(y) + 2000 if len(y) == 2 else int(y)


def _date(m: re.Match[str], dayfirst: bool) -> tuple[int, int, int]:
    if m["y"]:
        a, b = int(m["a"]), int(m["b"])
        month, day = (b, a) if dayfirst else (a, b)
        return _year(m["y"]), month, day
    if m["iy"]:
        return int(m["iy"]), int(m["im"]), int(m["id"])
    if m["my"]:
        return int(m["my"]), _MONTHS[m["mon"][:3].lower()], int(m["md"])
    return int(m["dy"]), _MONTHS[m["mon2"][:3].lower()], int(m["dm"])


def _clock(m: re.Match[str]) -> tuple[int, int]:
    if m["h"] is not None:
        h, minute, ap = int(m["h"]), int(m["m"]), m["ap"]
    elif m["h2"] is not None:
        h, minute, ap = int(m["h2"]), 0, m["ap2"]
    else:
        h, minute, ap = int(m["h3"]), int(m["m3"]), None
    if ap:
        h = h % 12 + (12 if ap.lower() == "p" else 0)
    return h, minute


def _when(text: str, lo: int, hi: int, dayfirst: bool) -> tuple[str | None, datetime | None]:
    dm = _DATE_RE.search(text, lo, hi)
    tm = _TIME_RE.search(text, lo, hi)
    parts = [m for m in (dm, tm) if m]
    if not parts:
        return None, None
    a = min(p.start() for p in parts)
    b = max(p.end() for p in parts)
    if dm and tm and b - a > len(dm.group()) + len(tm.group()) + 30:  # far apart: keep the first
        first = dm if dm.start() < tm.start() else tm
        a, b = first.start(), first.end()
    when: datetime | None = None
    if dm and tm:
        try:
            y, mo, d = _date(dm, dayfirst)
            h, mi = _clock(tm)
            when = datetime(y, mo, d, h, mi)
        except ValueError:
            when = None
    raw = text[a:b].strip()
    if raw.endswith(".") and not _AMPM_END_RE.search(raw):
        raw = raw[:-1]
    return raw, when


def find_communication(
    text: str,
    sentences: Sequence[tuple[int, int]] | None = None,
    *,
    dayfirst: bool = False,
    low: str | None = None,
) -> Communication | None:
    """The first statement that findings were communicated ("discussed with Dr. Smith by telephone at
    14:35 on 1/2/2024", "communicated to the ED physician", "called to and read back by ...",
    "Dr. X was notified at ..."). Dates are month/day/year unless ``dayfirst``. ``low``: the text
    lower-cased, if the caller has it."""
    low = lower_same_length(text) if low is None else low
    positions: list[int] = []
    for k in _VERB_KW:
        i = low.find(k)
        while i != -1:
            positions.append(i)
            i = low.find(k, i + 1)
    done = -1
    for pos in sorted(positions):
        if pos < done:
            continue
        verb = next(
            (v for v in _VERB_RE.finditer(low, max(0, pos - 30), min(len(low), pos + 60)) if v.end() > pos),
            None,
        )
        if verb is None:
            continue
        done = verb.end()
        lo, hi = _sentence_bounds(text, verb.start(), sentences)
        if _NOT_BEFORE_RE.search(low, max(lo, verb.start() - 30), verb.start()):
            continue  # "will be discussed with", "could not be reached"
        a, b = lo, hi
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        time_text, when = _when(text, a, b, dayfirst)
        recipient = _recipient(text, low, a, b, verb)
        if recipient is None and time_text is None:
            continue  # "informed consent", "images sent", "patient reported to have fallen"
        return Communication(text[a:b], a, b, recipient, time_text, when)
    return None
