"""The pieces of a report that get an embedding ("units").

A report gets one unit for its impression (the radiologist's summary: the best single handle for
"reports like this one") and one per sentence of its findings section. Reports without an impression
or findings header (short reports, free text) get one unit for the whole text instead.

Sections and sentences come from :mod:`processors.nlp` (the same spans the rule engine uses); if that
package is not importable, a simple header/sentence split stands in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_CHARS = 2000        # longer units are cut: MiniLM sees 256 word pieces at most anyway
MIN_CHARS = 3

_HEADER_RE = re.compile(r"(?im)^[ \t]*(findings|impression|conclusion|opinion)[ \t]*(?::|$)[ \t]*")
_OTHER_HEADER_RE = re.compile(r"(?m)^[ \t]*[A-Z][A-Za-z /]{2,30}:")
_SENT_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)", re.M)


@dataclass(frozen=True, slots=True)
class Unit:
    unit: str      # "impression" | "findings:<n>" | "report"
    section: str   # impression | findings | other
    start: int
    end: int
    text: str


Span = tuple[str, int, int]  # (section name, body start, end)
SectionFn = Callable[[str], list[Span]]
SentenceFn = Callable[[str, int, int], list[tuple[int, int]]]


def _nlp_sections(text: str) -> list[Span]:
    from processors.nlp.sections import split_sections

    return [(s.name, s.body_start, s.end) for s in split_sections(text)]


def _nlp_sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    from processors.nlp.sentences import split_sentences

    return split_sentences(text, start, end)


def simple_sections(text: str) -> list[Span]:
    """Fallback: FINDINGS / IMPRESSION headers at line starts; a section ends at the next header."""
    heads = [(m.start(), m.end(), m.group(1).lower()) for m in _HEADER_RE.finditer(text)]
    others = [m.start() for m in _OTHER_HEADER_RE.finditer(text)]
    spans: list[Span] = []
    for start, body, name in heads:
        nxt = [o for o in others if o > start] + [h[0] for h in heads if h[0] > start] + [len(text)]
        spans.append(("findings" if name == "findings" else "impression", body, min(nxt)))
    return spans


def simple_sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Fallback: split at ``.!?`` and line breaks."""
    out = []
    for m in _SENT_RE.finditer(text, start, end):
        s, e = m.start(), m.end()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e - s >= MIN_CHARS:
            out.append((s, e))
    return out


def _default_fns() -> tuple[SectionFn, SentenceFn]:
    try:
        import processors.nlp.sections  # noqa: F401
        import processors.nlp.sentences  # noqa: F401
    except ImportError:
        return simple_sections, simple_sentences
    return _nlp_sections, _nlp_sentences


def _clean(text: str) -> str:
    return " ".join(text.split())[:MAX_CHARS]


def report_units(text: str, sections: SectionFn | None = None,
                 sentences: SentenceFn | None = None) -> list[Unit]:
    """Impression (one unit) + findings sentences (one unit each), or the whole report as one unit."""
    default_sec, default_sent = _default_fns()
    sec_fn = sections or default_sec
    sent_fn = sentences or default_sent
    units: list[Unit] = []
    n = 0
    impression_seen = False
    for name, start, end in sec_fn(text):
        if name == "impression" and not impression_seen:
            body = _clean(text[start:end])
            if len(body) >= MIN_CHARS:
                units.append(Unit("impression", "impression", start, end, body))
                impression_seen = True
        elif name == "findings":
            for s, e in sent_fn(text, start, end):
                body = _clean(text[s:e])
                if len(body) >= MIN_CHARS:
                    units.append(Unit(f"findings:{n}", "findings", s, e, body))
                    n += 1
    if not units and len(_clean(text)) >= MIN_CHARS:
        units.append(Unit("report", "other", 0, len(text), _clean(text)))
    return units


@dataclass(frozen=True, slots=True)
class SentenceSpan:
    index: int     # running number over the whole report
    section: str
    start: int
    end: int


def report_sentences(text: str, sections: SectionFn | None = None,
                     sentences: SentenceFn | None = None) -> list[SentenceSpan]:
    """Every sentence of the report with its section name (``other`` outside any section)."""
    default_sec, default_sent = _default_fns()
    sec_fn = sections or default_sec
    sent_fn = sentences or default_sent
    # the NLP splitter gives text before the first header as section "other"; the fallback drops it
    pieces = sorted(sec_fn(text), key=lambda s: s[1]) or [("other", 0, len(text))]
    out: list[SentenceSpan] = []
    for name, start, end in pieces:
        for s, e in sent_fn(text, start, end):
            if text[s:e].strip():
                out.append(SentenceSpan(len(out), name, s, e))
    return out
