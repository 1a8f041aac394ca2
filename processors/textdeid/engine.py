"""Detect, merge, replace: report text -> ``DeidText``.

Candidates come from the pattern detectors (``rules.json``), the name rules (``names.py``) and the site's
institution list. Overlapping candidates merge into one span (the union: recall first) whose type is the
one of the highest-priority candidate, then each span is replaced (``surrogates.py``; dates shifted by
``dates.py``) and the offset map recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from processors.textdeid.dates import shift_date
from processors.textdeid.names import find_names, in_clinical_run
from processors.textdeid.rules import BEFORE_WINDOW, is_clinical, rules
from processors.textdeid.surrogates import Surrogates
from processors.textdeid.types import DeidText, OffsetMap, Span, TextDeidError, TextDeidOptions

TEXTDEID_VERSION = "textdeid-1"
NAME_PRIORITY = 60
DOB = "dob"  # the format of date_of_birth (rules.json): replaced as a whole, not shifted
_DOB_SPAN = 36525  # days: a surrogate birth date is 1..100 years before the real one


@dataclass
class _Cand:
    start: int
    end: int
    type: str
    priority: int
    match: re.Match[str] | None = None
    format: str = ""
    group: int = 0


def _proper(text: str, start: int, end: int) -> bool:
    """No capitalised word of the span is a known non-name ("Emergency Department", "March")."""
    not_names = rules().proper_not_words
    for w in re.findall(r"[^\W\d_][\w'\u2019-]*", text[start:end]):
        if w[0].isupper() and re.sub(r"['\u2019]s$", "", w).lower() in not_names:
            return False
    return True


def _has_word(text: str, start: int, end: int, wanted: frozenset[str]) -> bool:
    return any(w.lower() in wanted for w in re.findall(r"[^\W\d_]+", text[start:end]))  # Cedars-Sinai


def _first_ok(text: str, start: int, end: int, stop: frozenset[str]) -> bool:
    first = text[start:end].split()[0] if text[start:end].split() else ""
    return first not in stop


def _institution_ok(text: str, start: int, end: int) -> bool:
    return _first_ok(text, start, end, rules().institution_stop_first)


def candidates(text: str, options: TextDeidOptions) -> list[_Cand]:
    r = rules()
    out: list[_Cand] = []
    lower = text.lower()
    if len(lower) != len(text):  # a few characters lower-case to two: keep offsets aligned
        lower = "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)
    for d in r.detectors:
        if d.requires and not any(k in lower for k in d.requires):
            continue
        if d.gate is not None and d.gate.search(text) is None:
            continue
        source = lower if d.lower else text
        for m in d.regex.finditer(source):
            s, e = m.span(d.group)
            if s < 0 or e <= s:
                continue
            if d.not_before is not None and d.not_before.search(source, max(0, s - BEFORE_WINDOW), s):
                continue
            if d.before is not None:
                b = d.before.search(source, max(0, s - BEFORE_WINDOW), s)
                if b is None:
                    continue
                if d.extend:
                    s = b.start()
            if d.exclude is not None and d.exclude.match(text, m.start(), m.end()):
                continue
            if d.proper and not _proper(text, s, e):
                continue
            if d.require_word and not _has_word(text, s, e, d.require_word):
                continue
            if d.not_clinical and any(is_clinical(w, r) for w in re.findall(r"[^\W\d_]+", text[s:e])):
                continue
            if d.not_word and any(
                w.lower() in r.not_names or w.lower() in r.proper_not_words
                for w in re.findall(r"[^\W\d_]+", text[s:e])
            ):
                continue  # "Server: room 4": lower case cannot tell a word from a host name
            if d.slash_clinical and in_clinical_run(text, s, e):
                continue  # "Read by: SMA/ima": clinical abbreviations, not initials
            if d.type in ("INSTITUTION", "LOCATION"):
                # leading words like "The"/"Outside"/"From" are not part of an institution's name; a city
                # loses only prepositions and verbs ("From Portland"), never "The"/"Prior" (The Dalles,
                # Prior Lake: the rest of the name would give the city away); nothing left -> not one
                stop = r.institution_stop_first if d.type == "INSTITUTION" else r.location_stop_first
                while not _first_ok(text, s, e, stop):
                    nxt = re.compile(r"\S+\s+").match(text, s)
                    if nxt is None or nxt.end() >= e:
                        break
                    s = nxt.end()
                if d.type == "LOCATION" and (
                    not _first_ok(text, s, e, stop) or _has_word(text, s, e, r.location_not_words)
                ):
                    continue
            if d.type == "INSTITUTION":
                words = text[s:e].split()
                capitalised = any(ch.isupper() for ch in words[0])
                if not _institution_ok(text, s, e) or not capitalised or (len(words) < 2 and not d.one_word):
                    continue  # a bare head word ("Outside Hospital" -> "Hospital") names no institution
                if len(words) == 1 and re.sub(r"['\u2019]s$", "", words[0]).lower() in r.institution_words:
                    continue  # nor does one alone after a context ("returned from Surgery", "seen at Clinic")
                if len(words) == 1 and d.one_word and is_clinical(words[0], r):
                    continue  # a procedure, service or anatomy ("returned from Dialysis", "seen at Carina")
            out.append(_Cand(s, e, d.type, d.priority, m, d.format, d.group))
    for s, e in find_names(text, lower):
        out.append(_Cand(s, e, "NAME", NAME_PRIORITY))
    for name in options.institutions:
        if name.strip():
            for m in re.finditer(rf"(?<!\w){re.escape(name.strip())}(?!\w)", text, flags=re.IGNORECASE):
                out.append(_Cand(m.start(), m.end(), "INSTITUTION", 95))
    return out


def merge(cands: list[_Cand]) -> list[_Cand]:
    """Disjoint spans: overlapping candidates become their union, typed by the strongest of them."""
    cands = sorted(cands, key=lambda c: (c.start, -(c.end - c.start), -c.priority))
    out: list[_Cand] = []
    for c in cands:
        if out and c.start < out[-1].end:
            last = out[-1]
            if c.format == DOB and last.format != DOB:  # a date of birth stays one, whatever it joins
                last.format = DOB
                last.match = None
            if c.end > last.end:
                last.end = c.end
                last.match = None  # a union is no longer one detector's match
            if (c.priority, c.end - c.start) > (last.priority, 0) and c.type != last.type:
                last.type, last.priority = c.type, c.priority
                last.match = None
            continue
        out.append(_Cand(c.start, c.end, c.type, c.priority, c.match, c.format, c.group))
    return out


def _birth_date(value: str, surrogates: Surrogates) -> str:
    """A stand-in for a date of birth: a keyed date in the same format, moved by its own keyed 1..100
    years (not the patient's shift), so no age can be computed from it; a year alone moves the same way."""
    days = 366 + surrogates.number("dob", value) % _DOB_SPAN
    for d in rules().detectors:
        if d.type != "DATE" or d.format in ("", DOB):
            continue
        source = value.lower() if d.lower else value
        m = d.regex.fullmatch(source) if d.group == 0 else None
        if m is not None:
            new = shift_date(m, d.format, 0, days, value)
            if new is not None:
                return new
    if re.fullmatch(r"\d{4}", value):
        return str(int(value) - days // 365)
    return surrogates.shape("DATE", value, letters=False)


def _replacement(text: str, c: _Cand, surrogates: Surrogates, shift_days: int) -> str:
    value = text[c.start : c.end]
    if c.format == DOB:
        return "[DATE]" if surrogates.mode == "tag" else _birth_date(value, surrogates)
    if c.type == "DATE":
        if c.match is not None and c.match.span(c.group) == (c.start, c.end):
            shifted = shift_date(c.match, c.format, c.group, shift_days, text)
            if shifted is not None:
                return shifted
        return "[DATE]" if surrogates.mode == "tag" else surrogates.shape("DATE", value, letters=False)
    return surrogates.replace(c.type, value)


def deidentify_text(
    text: str, key: bytes, patient: str, shift_days: int, options: TextDeidOptions
) -> DeidText:
    if not isinstance(text, str):
        raise TextDeidError(f"report text must be a string, not {type(text).__name__}")
    if len(text) > options.max_chars:
        raise TextDeidError(
            f"report text has {len(text)} characters, more than the limit of {options.max_chars}"
        )
    if "\x00" in text:
        raise TextDeidError("report text contains NUL characters (binary data?)")
    surrogates = Surrogates(key, patient, options.mode)
    parts: list[str] = []
    spans: list[Span] = []
    pieces: list[tuple[int, int, int, int]] = []
    pos = out_len = 0
    for c in merge(candidates(text, options)):
        keep = text[pos : c.start]
        parts.append(keep)
        out_len += len(keep)
        new = _replacement(text, c, surrogates, shift_days)
        parts.append(new)
        spans.append(Span(out_len, out_len + len(new), c.type))
        pieces.append((c.start, c.end, out_len, out_len + len(new)))
        out_len += len(new)
        pos = c.end
    parts.append(text[pos:])
    return DeidText("".join(parts), tuple(spans), OffsetMap(tuple(pieces)), TEXTDEID_VERSION)


def detect(text: str, options: TextDeidOptions | None = None) -> list[Span]:
    """The PHI spans of the original text (offsets into ``text``), without replacing anything."""
    return [Span(c.start, c.end, c.type) for c in merge(candidates(text, options or TextDeidOptions()))]
