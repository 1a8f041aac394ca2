"""Loading the rules (``rules.json``) and word lists (``lexicons/``): data, compiled once per process."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from itertools import chain
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BEFORE_WINDOW = 80


@dataclass(frozen=True)
class Detector:
    name: str
    type: str
    priority: int
    regex: re.Pattern[str]
    group: int = 0
    format: str = ""
    requires: tuple[str, ...] = ()  # run only if one of these occurs in the lower-cased text
    gate: re.Pattern[str] | None = None  # run only if this occurs in the text
    lower: bool = False  # the pattern is for the lower-cased text
    exclude: re.Pattern[str] | None = None  # a hit in the original text of a match drops it
    before: re.Pattern[str] | None = None  # must match right before the span (within BEFORE_WINDOW)
    extend: bool = False  # the span grows to include what ``before`` matched
    not_before: re.Pattern[str] | None = None  # must not match right before the span
    proper: bool = False  # a match with a word of the not-names lexicon is dropped (not a proper name)
    require_word: frozenset[str] = frozenset()  # if set, a match must contain one of these words
    one_word: bool = False  # an INSTITUTION of one word is allowed (after a strong context only)
    not_clinical: bool = False  # a match with a clinical word (is_clinical) is dropped
    not_word: bool = False  # a match with a word of not_names / proper_not_words, in any case, is dropped
    slash_clinical: bool = False  # a match inside a slash run of clinical abbreviations is dropped


@dataclass(frozen=True)
class Rules:
    detectors: tuple[Detector, ...]
    institution_stop_first: frozenset[str]
    location_stop_first: frozenset[str]  # only prepositions and verbs: "The"/"Prior" begin cities
    location_not_words: frozenset[str]  # a city match with one of these is a label ("Exam ID 48213")
    title: re.Pattern[str]
    credential_any: str
    credential_bare: str
    trigger: str
    token: str
    eponym_head: re.Pattern[str]
    first_names: frozenset[str]
    surnames: frozenset[str]
    eponyms: frozenset[str]
    not_names: frozenset[str]
    # clinical words that start a lettered list item ("B. Kidneys measure ..."): never the surname of an
    # initial that is a name only by the verb after it (names.py, rules.json initial_name_not_subject)
    initial_not_subject: frozenset[str]
    proper_not_words: frozenset[str]  # not_names - institution words + place words (`proper` detectors)
    institution_words: frozenset[str]  # proper_allowed_words: alone, they name no institution
    # terms of the NLP's lexicons and lexicons/clinical_words.txt (drugs, procedures, services): never a
    # name or an institution found only by a weak context (names.py _joined, institution_one_word)
    clinical_words: frozenset[str]
    clinical_suffix: re.Pattern[str]  # a word with a clinical ending ("Cystoscopy", "Hepatology")
    # what comes before a drug's name ("started on", "dose of"): a word found only after "and" that
    # occurs there anywhere in the report is no name (names.py)
    joined_not_after: re.Pattern[str]
    # clinical abbreviations of 2-4 letters and the short words of INITIALS_LOWER_NOT: never initials alone
    # on a line or in a slash pair ("CHF", "PA/LAT", "IVC/svc": names.py _slash_initials, _initials_lines)
    clinical_abbreviations: frozenset[str]
    initials_not: frozenset[str]
    defs: dict[str, str]  # the macros (with the built-in letter classes), for patterns built in code
    raw: dict[str, Any]


def words(name: str) -> list[str]:
    """A lexicon file: one entry per line, '#' comments and blank lines skipped."""
    lines = (HERE / "lexicons" / name).read_text(encoding="utf-8").splitlines()
    return [w.strip() for w in lines if w.strip() and not w.lstrip().startswith("#")]


def _char_class(chars: list[str]) -> str:
    """A regex character class of these characters, as ranges of consecutive code points."""
    parts: list[str] = []
    cps = sorted({ord(c) for c in chars})
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        a, b = cps[i], cps[j]
        parts.append(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}")
        i = j + 1
    return "[" + "".join(parts) + "]"


@cache
def letter_classes() -> dict[str, str]:
    """Built-in macros: {UPPER} and {LOWER} are the upper- and lower-case letters of every script
    (Python's ``re`` has no \\p{Lu}), so "Müller", "Łukasz", "Dvořák" and "ÅSA" are words like "Miller";
    {LOWER} also takes combining marks (a decomposed "u\u0308"). {LETTER} is any letter or mark,
    {NAME_CHAR} a letter, mark, apostrophe or hyphen: character classes, not alternations (fast to match)."""
    upper: list[str] = []
    lower: list[str] = []
    other: list[str] = []  # letters without case (most scripts' letters; CJK)
    for cp in chain(range(0xD800), range(0xE000, 0x10000)):  # the Basic Multilingual Plane, no surrogates
        ch = chr(cp)
        if ch.isalpha() and (ch.isupper() or ch.istitle()):
            upper.append(ch)
        elif ch.isalpha() and ch.islower():
            lower.append(ch)
        elif ch.isalpha():
            other.append(ch)
    marks = [chr(cp) for cp in range(0x300, 0x370)]  # combining diacritical marks
    return {
        "UPPER": _char_class(upper),
        "LOWER": _char_class(lower + marks),
        "LETTER": _char_class(upper + lower + other + marks),
        # a character of a name word: a letter, a mark, an apostrophe or a hyphen ("O'Neill-Baptiste")
        "NAME_CHAR": _char_class(upper + lower + other + marks + ["'", "\u2019", "-"]),
    }


def expand(pattern: str, defs: dict[str, str]) -> str:
    """A pattern with its {MACROS} replaced."""
    for _ in range(3):  # macros may use macros
        for name, value in defs.items():
            pattern = pattern.replace("{" + name + "}", value)
    return pattern


NLP_LEXICON = HERE.parent / "nlp" / "lexicon"
NLP_CONTEXT = HERE.parent / "nlp" / "context"
NLP_SECTIONS = HERE.parent / "nlp" / "sections"


def nlp_terms() -> frozenset[str]:
    """The words of the NLP's finding and attribute phrases, read from its data files (not imported:
    de-identification need not load the NLP): what the NLP reads must survive de-identification."""
    out: set[str] = set()
    concepts = json.loads((NLP_LEXICON / "concepts.json").read_text(encoding="utf-8"))
    for c in concepts["concepts"]:
        for phrase in c.get("synonyms", []):
            out.update(re.findall(r"[^\W\d_]+", phrase.lower()))
    modifiers = json.loads((NLP_LEXICON / "modifiers.json").read_text(encoding="utf-8"))
    for values in modifiers.values():
        if isinstance(values, dict):
            for phrases in values.values():
                for phrase in phrases:
                    out.update(re.findall(r"[^\W\d_]+", phrase.lower()))
    # the ConText cue words and the section titles: a cue or a title is never a name ("Dr. Chen and
    # Possible drainage ... IMPRESSION: Possible abscess" must keep "Possible", the abscess's hedge)
    context = json.loads((NLP_CONTEXT / "rules.json").read_text(encoding="utf-8"))
    for rule in context.get("rules", []):
        out.update(re.findall(r"[^\W\d_]+", str(rule.get("phrase", "")).lower()))
    headers = json.loads((NLP_SECTIONS / "headers.json").read_text(encoding="utf-8"))
    for section in headers.get("sections", []):
        for title in section.get("titles", []):
            out.update(re.findall(r"[^\W\d_]+", title.lower()))
    return frozenset(w for w in out if len(w) > 2)


@cache
def nlp_short_words() -> frozenset[str]:
    """The one- and two-letter words of the NLP's ConText cues ("hx", "vs", "fh"): nlp_terms drops them."""
    out: set[str] = set()
    context = json.loads((NLP_CONTEXT / "rules.json").read_text(encoding="utf-8"))
    for rule in context.get("rules", []):
        out.update(w for w in re.findall(r"[^\W\d_]+", str(rule.get("phrase", "")).lower()) if len(w) <= 2)
    return frozenset(out)


@cache
def nlp_abbreviations() -> frozenset[str]:
    """The NLP's one-word synonyms of up to four letters ("pe", "dvt", "ptx", "sah"): nlp_terms drops
    words of two letters, and a slash pair of them ("PE/dvt") is a history, not a typist's initials."""
    out: set[str] = set()
    for path in (NLP_LEXICON / "concepts.json", NLP_LEXICON.parent / "critical" / "concepts.json"):
        for c in json.loads(path.read_text(encoding="utf-8"))["concepts"]:
            out.update(p.lower() for p in c.get("synonyms", []) if re.fullmatch(r"[A-Za-z]{1,4}", p))
    return frozenset(out)


@cache
def rules() -> Rules:
    raw = json.loads((HERE / "rules.json").read_text(encoding="utf-8"))
    defs = {**letter_classes(), **raw["defs"]}
    detectors = tuple(
        Detector(
            d["name"],
            d["type"],
            int(d.get("priority", 50)),
            re.compile(expand(d["pattern"], defs)),
            int(d.get("group", 0)),
            d.get("format", ""),
            tuple(d.get("requires", ())),
            re.compile(expand(d["gate"], defs)) if d.get("gate") else None,
            d.get("text") == "lower",
            re.compile(d["exclude"]) if d.get("exclude") else None,
            re.compile(expand(d["before"], defs)) if d.get("before") else None,
            bool(d.get("extend")),
            re.compile(d["not_before"]) if d.get("not_before") else None,
            bool(d.get("proper")),
            frozenset(w.lower() for w in d.get("require_word", ())),
            bool(d.get("one_word")),
            bool(d.get("not_clinical")),
            bool(d.get("not_word")),
            bool(d.get("slash_clinical")),
        )
        for d in raw["detectors"]
    )
    n = raw["names"]
    return Rules(
        detectors=detectors,
        institution_stop_first=frozenset(raw["institution_stop_first"]),
        location_stop_first=frozenset(raw["location_stop_first"]),
        location_not_words=frozenset(w.lower() for w in raw["location_not_words"]),
        title=re.compile(expand(n["titles"], defs)),
        credential_any=n["credentials_any"],
        credential_bare=n["credentials_bare"],
        trigger=n["triggers"],
        token=expand(n["token"], defs),
        eponym_head=re.compile(n["eponym_heads"], re.IGNORECASE),
        first_names=frozenset(w.lower() for w in words("first_names.txt")),
        surnames=frozenset(w.lower() for w in words("surnames.txt")),
        eponyms=frozenset(w.lower() for w in words("eponyms.txt")),
        not_names=frozenset(w.lower() for w in words("not_names.txt")),
        initial_not_subject=frozenset(w.lower() for w in n.get("initial_name_not_subject", ())),
        proper_not_words=(
            frozenset(w.lower() for w in words("not_names.txt"))
            - frozenset(w.lower() for w in raw.get("proper_allowed_words", ()))
        )
        | frozenset(w.lower() for w in raw.get("proper_not_words", ())),
        institution_words=frozenset(w.lower() for w in raw.get("proper_allowed_words", ())),
        clinical_words=(nlp_terms() | frozenset(w.lower() for w in words("clinical_words.txt")))
        - frozenset(w.lower() for w in words("surnames.txt") + words("first_names.txt")),
        clinical_suffix=re.compile(expand(raw["clinical_suffixes"], defs), re.IGNORECASE),
        joined_not_after=re.compile(n["joined_not_after"], re.IGNORECASE),
        clinical_abbreviations=frozenset(w.lower() for w in words("clinical_abbreviations.txt")),
        initials_not=frozenset(re.findall(r"[a-z]+", raw["defs"]["INITIALS_LOWER_NOT"])),
        defs={name: expand(value, defs) for name, value in defs.items()},
        raw=raw,
    )


def is_clinical(word: str, r: Rules) -> bool:
    """A term the NLP reads, a drug, procedure or service, or a word with a clinical ending."""
    w = re.sub(r"['\u2019]s$", "", word).lower()
    return w in r.clinical_words or r.clinical_suffix.fullmatch(w) is not None
