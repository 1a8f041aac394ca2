"""Dataclasses of the NLP engine: plain, JSON-serialisable (``dataclasses.asdict``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# 0.6: comma clauses after negated lists, run-ons, one-line reports, history cues; 0.6.1: parenthetical
# asides; 0.6.2: Open-i convention classes (tails of longer triggers, mimics, earlier-study cues,
# hedge + link, ...); 0.6.3: held-out wording classes (episodes put in the past, postposed negations before a
# clause mark, "favor A over B", raising verbs, negated predicates of seeing, incomplete resolution, ...);
# 0.6.4: negated evidence ("no X is seen to suggest Y"), "cannot be ruled out" as possible, a hedge about
# the cause, dated past episodes, a hedge inside a coordinated list; 0.6.5: relative clauses of resolution
# ("X, which has since resolved"), a negation of seeing limited to one view, labelled answers ("Pneumothorax:
# no."), a prenominal hedge kept to its own conjunct ("A and possible left lower lobe B"); 0.6.6: a lasting
# condition as a problem-list item, denied habits, durations, evacuated/drained collections, answered
# questions ("Pneumothorax? No."), a hedge between commas ("A or, less likely, B"), "unlikely to represent";
# 0.6.7: dated past episodes by year, "with prior X", past adverbs and given-up habits, an unsettled
# differential with A as subject, a relative as informant, "presumed" as probable, label synonyms (Open-i);
# 0.6.8: the month "May" is no hedge, a decade or stage of life dates an episode, postposed negations of the
# physical examination, contracted negations ("isn't seen"), a typographic apostrophe, "X: denied"
NLP_VERSION = "0.6.8"


# Sections and sentences are made several times per report. The __init__ that dataclass writes for a frozen
# class sets each field through object.__setattr__, which costs more than the rest of making the object;
# the hand-written ones below set the slots through their own descriptors (about 40% fewer instructions).
@dataclass(frozen=True, slots=True)
class Section:
    name: str  # exam, history, technique, comparison, findings, impression, recommendation, addendum, other
    title: str  # the header as written ("" when the report has no header there)
    start: int  # offset of the header (or of the text when there is none)
    end: int  # end of the section's text
    body_start: int  # offset where the text after the header starts

    def __init__(self, name: str, title: str, start: int, end: int, body_start: int) -> None:
        set_name, set_title, set_start, set_end, set_body_start = _SECTION_SETTERS
        set_name(self, name)
        set_title(self, title)
        set_start(self, start)
        set_end(self, end)
        set_body_start(self, body_start)


@dataclass(frozen=True, slots=True)
class Sentence:
    index: int
    start: int
    end: int
    section: str

    def __init__(self, index: int, start: int, end: int, section: str) -> None:
        set_index, set_start, set_end, set_section = _SENTENCE_SETTERS
        set_index(self, index)
        set_start(self, start)
        set_end(self, end)
        set_section(self, section)


def _slot_setters(cls: type) -> tuple[Any, ...]:
    """Each field's slot descriptor's ``__set__``, in field order (they bypass the frozen __setattr__)."""
    return tuple(getattr(cls, f.name).__set__ for f in dataclasses.fields(cls))


_SECTION_SETTERS = _slot_setters(Section)
_SENTENCE_SETTERS = _slot_setters(Sentence)


@dataclass(slots=True)
class ContextResult:
    negated: bool = False
    uncertain: bool = False
    historical: bool = False  # ConText temporality: began > 2 weeks ago (incl. chronic, still present)
    hypothetical: bool = False
    experiencer: str = "patient"
    certainty: str = "definite"  # definite | probable | possible (uncertain == certainty != definite)
    triggers: list[str] = field(default_factory=list)  # "category:phrase" of the modifiers that applied
    chronic: bool = False  # historical only by "old"/"chronic"/"known"...: still present now


@dataclass(slots=True)
class Finding:
    concept: str
    category: str
    text: str
    start: int
    end: int
    sentence: int
    section: str
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    hypothetical: bool = False
    experiencer: str = "patient"
    certainty: str = "definite"
    laterality: str | None = None
    anatomy: list[str] = field(default_factory=list)
    severity: str | None = None
    change: str | None = None
    size_mm: float | None = None
    source: str = "rules"
    triggers: list[str] = field(default_factory=list)

    @property
    def positive(self) -> bool:
        """Present in this patient now: not negated, hypothetical, historical, nor merely possible."""
        return not (
            self.negated
            or self.hypothetical
            or self.historical
            or self.certainty == "possible"
            or self.experiencer != "patient"
        )


@dataclass(slots=True)
class ReportAnalysis:
    text: str
    nlp_version: str = NLP_VERSION
    modality: str | None = None
    body_region: str | None = None
    contrast: bool | None = None
    sections: list[Section] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    measurements: list[Any] = field(default_factory=list)
    recommendations: list[Any] = field(default_factory=list)
    assessments: list[Any] = field(default_factory=list)
    critical_results: list[Any] = field(default_factory=list)
    communication: Any | None = None
    chest_labels: dict[str, str] = field(default_factory=dict)  # label -> positive|negative|uncertain|absent

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (sentences with their text)."""
        out: dict[str, Any] = {k: plain(getattr(self, k)) for k in _field_names(self)}
        out["sentences"] = [dict(plain(s), text=self.text[s.start : s.end]) for s in self.sentences]
        return out

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)


def _field_names(obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


def plain(value: Any, micros: bool = False) -> Any:
    """dataclasses / objects with __dict__ / containers -> JSON-ready values; datetimes as ISO strings, or
    as UTC epoch microseconds with ``micros`` (what Avro's timestamp-micros wants)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name), micros) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v, micros) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, micros) for v in value]
    if isinstance(value, datetime):
        if not micros:
            return value.isoformat()
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1_000_000)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: plain(v, micros) for k, v in vars(value).items() if not k.startswith("_")}
    return value
