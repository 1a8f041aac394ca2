"""Person names (patients, relatives, staff) in report text.

Radiology reports name people in a few typed contexts, which is what this looks for (the words are
data, ``rules.json`` "names" and ``lexicons/``):

- after a title: "Dr. Lee", "Mrs. J. Doe";
- before a credential: "Jane Doe, RN", "John A. Smith MD", signatures;
- after a trigger: "discussed with Lee", "read by", "Attending:", "Patient: DOE, JOHN", "his wife Mary";
- a known given name followed by a capitalised word ("Maria Gonzalez was informed");
- any other occurrence, in the same report, of a surname found by the rules above.

Eponyms (Hodgkin, Baker cyst, Smith fracture) are not names unless a title, credential or trigger says
so: a lexicon or propagated match followed by an eponym head word ("disease", "fracture", "'s", ...) or
made only of eponym words is dropped. Capitalised non-names (headings, roles, anatomy) stop a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from processors.textdeid.rules import Rules, rules

Found = tuple[int, int]


@cache
def _compiled() -> dict[str, re.Pattern[str]]:
    r = rules()
    tok = r.token
    seq = rf"{tok}(?:[ \t]+{tok}){{0,3}}"
    title = r.title.pattern
    return {
        "seq": re.compile(seq),
        "title": re.compile(rf"(?<![\w.])(?i:{title})[ \t]+(?=[A-Z])"),
        "cred_comma": re.compile(rf"(?<![\w-])({seq}),[ \t]*(?:{r.credential_any})(?![\w-])"),
        "cred_bare": re.compile(rf"(?<![\w-])({seq})[ \t]+(?:{r.credential_bare})(?![\w-])"),
        "trigger": re.compile(rf"(?<![\w/-])(?i:{r.trigger})(?![\w-])"),
        "lexicon": re.compile(rf"(?<![\w'-])([A-Z][a-z]+|[A-Z]{{2,}}) (?:[A-Z]\.? )?({tok})(?![\w-])"),
        "last_first": re.compile(rf"(?<![\w'-])({tok}),[ \t]*({tok})(?:[ \t]+[A-Z]\.?)?(?![\w-])"),
        "first_after_comma": re.compile(rf",[ \t]*({tok})(?:[ \t]+[A-Z]\.?)?(?![\w-])"),
        "skip": re.compile(r"[ \t]*(?:[:,-][ \t]*)?(?:(?:the|The|THE|a|an)[ \t]+)?"),
    }


def _is_not_name(word: str, r: Rules) -> bool:
    if re.fullmatch(r"[A-Z]\.?", word):  # an initial, never an article
        return False
    return word.lower().rstrip(".,:;") in r.not_names


def _trim(text: str, start: int, end: int, r: Rules) -> Found | None:
    """The name tokens of text[start:end] without leading/trailing non-name words; None if nothing is left."""
    toks = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    while toks and _is_not_name(text[toks[0][0]:toks[0][1]], r):
        toks.pop(0)
    # a non-name word inside a sequence ends it ("Smith Radiology")
    for i, (s, e) in enumerate(toks):
        if _is_not_name(text[s:e], r):
            toks = toks[:i]
            break
    if not toks:
        return None
    s, e = toks[0][0], toks[-1][1]
    if e - s == 1 and not text[s].isupper():
        return None
    return s, e


def _eponym_use(text: str, start: int, end: int, r: Rules) -> bool:
    """An eponym used as one: all its words are eponyms, or it is followed by an eponym head word."""
    words = re.findall(r"[A-Za-z]+", text[start:end])
    if words and all(w.lower() in r.eponyms for w in words):
        return True
    return bool(r.eponym_head.match(text, end)) and any(w.lower() in r.eponyms for w in words)


def _after(text: str, pos: int, r: Rules) -> Found | None:
    """The name that starts at ``pos`` (after a trigger or title), skipping punctuation, an article, a
    title and up to two role words ("Attending Radiologist: Dr. Lee")."""
    c = _compiled()
    for _ in range(4):
        pos = c["skip"].match(text, pos).end()  # type: ignore[union-attr]
        t = c["title"].match(text, pos)
        if t:
            pos = t.end()
            continue
        w = re.compile(r"[A-Za-z]+(?=[\s:,])").match(text, pos)
        if w and _is_not_name(w.group(), r) and w.group()[0].isupper():
            pos = w.end()
            continue
        break
    m = c["seq"].match(text, pos)
    if not m:
        return None
    found = _trim(text, m.start(), m.end(), r)
    if found is None:
        return None
    # "DOE, JOHN" / "Van Dyke, John A." after a header trigger
    lf = c["first_after_comma"].match(text, found[1])
    if lf and not _is_not_name(lf.group(1), r):
        found = (found[0], lf.end())
    return found


def find_names(text: str) -> Iterator[Found]:
    """Name spans (may overlap; the caller merges them)."""
    r = rules()
    c = _compiled()
    found: list[Found] = []
    for t in c["title"].finditer(text):
        m = c["seq"].match(text, t.end())
        if m:
            span = _trim(text, m.start(), m.end(), r)
            if span:
                found.append(span)
    for key in ("cred_comma", "cred_bare"):
        for m in c[key].finditer(text):
            span = _trim(text, m.start(1), m.end(1), r)
            if span and not _eponym_use(text, *span, r):
                found.append(span)
    for m in c["trigger"].finditer(text):
        span = _after(text, m.end(), r)
        if span and not (_eponym_use(text, *span, r) and r.eponym_head.match(text, span[1])):
            found.append(span)
    for m in c["lexicon"].finditer(text):
        first, last = m.group(1), m.group(2)
        if first.lower() in r.first_names and not _is_not_name(last, r) and len(last) > 1 \
                and not _eponym_use(text, m.start(2), m.end(2), r):
            found.append((m.start(1), m.end(2)))
    for m in c["last_first"].finditer(text):
        last, first = m.group(1), m.group(2)
        if last.lower() in r.surnames and first.lower() in r.first_names and not _is_not_name(last, r):
            found.append((m.start(1), m.end()))
    yield from found
    yield from _propagate(text, found, r)


def _propagate(text: str, found: list[Found], r: Rules) -> Iterator[Found]:
    """Other occurrences of the words of names already found (a surname repeated without its title)."""
    seen: set[str] = set()
    for s, e in found:
        for w in re.findall(r"[A-Z][A-Za-z'\u2019-]{2,}", text[s:e]):
            if not _is_not_name(w, r):
                seen.add(w)
    for w in sorted(seen):
        for m in re.finditer(rf"(?<![\w'-]){re.escape(w)}(?![\w-])", text, flags=re.IGNORECASE):
            if m.group()[0].isupper() and not _eponym_use(text, m.start(), m.end(), r):
                yield m.start(), m.end()
