"""Assertion-aware features of a report, for the site-trained linear classifier.

Every word and every lexicon concept of the rule engine (:mod:`processors.nlp`) is keyed by its ConText
status, so "no pneumonia" and "pneumonia" are different features. That is what coding rules such as
ICD-9-CM's need: a confirmed diagnosis is coded, a ruled-out or uncertain one is not (and the symptom in
the history is coded instead).

Feature keys (counts): ``<status>|<word>`` and ``<status>|@<concept>``, where status is ``pos``
(asserted), ``neg`` (negated), ``unc`` (uncertain or hypothetical), ``oth`` (someone else), ``hist``
(historical) or ``fu`` (followed up: "followup reflux" in a clinical history, which the engine reads as
hypothetical like "rule out", names the known condition the study follows). A historical or followed-up
word also counts as ``pos``: in a clinical history "history of fever" is the complaint that brings the
patient now.

Coding-rule features (``is_code_feature``), from the ICD-9-CM index terms of ``icd9cm.json``:

- ``<status>|#<code>`` and ``<status>|#<code>|hx`` / ``|imp`` for each index term, keyed by its ConText
  status and by where it is (the clinical history, or the report's own findings/impression), since a
  complaint in the history and a diagnosis in the impression are coded differently. Two diagnoses offered
  as alternatives ("atelectasis or pneumonia", "infiltrate vs. atelectasis") get status ``alt``: neither
  is established. Radiological findings that are no diagnosis ("infiltrate", "opacity", "consolidation":
  kind ``finding``) count as such an alternative ("infiltrate and/or atelectasis").
- ``rule|definite|#<code>``: a diagnosis asserted in the impression; ``rule|symptom_alone|#<code>`` /
  ``rule|symptom_explained|#<code>``: a present symptom with or without such a diagnosis beside it (ICD-9-CM
  codes a symptom only when no established diagnosis accounts for it); ``rule|definite_diagnoses``: how many;
  ``rule|procedure_alone|#<code>``: a surgery the study follows up ("status post reimplantation", kind
  ``procedure``: V67.09) with no condition named beside it.

The classifier learns how much each is worth for a site's labels; labels that are not ICD-9-CM codes
simply get these features where the reports name such conditions. Measured on the CMC dev set
(docs/nlp.md): word bigrams, section-keyed words or concepts, and dropping the words inside index terms
scored lower.

Labelled CSV rows become one report text, the text columns as sections under a header made from the
column name (``clinical_history`` -> ``CLINICAL HISTORY:``), so a report that reaches the worker with
the same headers gives the same features.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processors.nlp.engine import Engine
    from processors.nlp.types import ContextResult, ReportAnalysis

# 2: ICD-9-CM code and coding-rule features; 3: follow-up status, findings and procedures in the codebook
FEATURES_VERSION = 3
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# between two diagnoses of a differential: "X or Y", "X vs. Y", "X and/or Y", "X, either ... or Y" (few words)
_ALTERNATIVE_RE = re.compile(r"[\s,]+(?:[a-z-]+\s+){0,3}(?:or|vs\.?|versus|and/or)\s+(?:[a-z-]+\s+){0,3}")


def is_code_feature(name: str) -> bool:
    """A coding-rule feature (``pos|#486``, ``rule|...``): the linear model weighs these as a group."""
    return "|#" in name or name.startswith("rule|")


def column_header(column: str) -> str:
    """``clinical_history`` -> ``CLINICAL HISTORY``."""
    return re.sub(r"[_\W]+", " ", column).strip().upper()


def compose_report(row: Mapping[str, str], columns: Sequence[str]) -> str:
    """The report text of a labelled CSV row: each text column under its own header line."""
    parts = []
    for col in columns:
        body = (row.get(col) or "").strip()
        if body:
            parts.append(f"{column_header(col)}:\n{body}")
    return "\n\n".join(parts) + "\n"


# in a clinical history, "followup reflux" / "follow up on pneumonia" names the known condition the study
# follows (coded); the engine reads the cue as hypothetical there, as it reads "rule out" and "evaluate for"
_FOLLOW_UP = frozenset({"HYPOTHETICAL:follow up", "HYPOTHETICAL:follow-up", "HYPOTHETICAL:followup"})


def status(res: ContextResult, follow_up: bool = False) -> str:
    if res.experiencer != "patient":
        return "oth"
    if res.negated:
        return "neg"
    if follow_up and res.hypothetical and not res.uncertain and res.triggers \
            and set(res.triggers) <= _FOLLOW_UP:
        return "fu"
    if res.uncertain or res.hypothetical:
        return "unc"
    if res.historical:
        return "hist"
    return "pos"


CODEBOOK = Path(__file__).with_name("icd9cm.json")
# kinds of code that are established diagnoses (a ``finding`` such as "infiltrate" is a radiological
# description: it takes part in a differential, but explains no symptom and is no diagnosis to code)
DIAGNOSES = frozenset({"diagnosis", "congenital"})
DIFFERENTIAL = DIAGNOSES | {"finding"}  # what a differential ("X or Y") offers
# where a complaint is written (``hx``); anything else is the report's own reading (``imp``)
HISTORY_SECTIONS = frozenset({"history", "past_history", "family_history", "exam", "technique", "comparison"})


@dataclass(frozen=True)
class Codebook:
    """ICD-9-CM codes and their index phrases (``icd9cm.json``), as one whole-word regex."""

    kinds: dict[str, str]          # code -> symptom | diagnosis | congenital | finding
    regex: re.Pattern[str]
    code_of: dict[str, str]        # normalised phrase -> code


def _norm(phrase: str) -> str:
    return " ".join(re.split(r"[\s-]+", phrase.lower().strip()))


@lru_cache(maxsize=4)
def load_codebook(path: Path = CODEBOOK) -> Codebook:
    doc = json.loads(path.read_text())["codes"]
    code_of = {_norm(ph): code for code, c in doc.items() for ph in c["phrases"]}
    alts = [r"[\s-]+".join(re.escape(w) for w in ph.split()) for ph in sorted(code_of, key=len, reverse=True)]
    regex = re.compile(r"(?<![a-z0-9])(?:" + "|".join(alts) + r")(?![a-z0-9])")
    return Codebook({code: c["kind"] for code, c in doc.items()}, regex, code_of)


class FeatureExtractor:
    """``features(text)`` -> feature counts. The rule engine is built once per process (on first use)."""

    def __init__(self, engine: Engine | None = None, codes: bool = True, code_sections: bool = True,
                 coding_rules: bool = True, alternatives: bool = True, follow_up: bool = True,
                 findings: bool = True, codebook: Path = CODEBOOK):
        # the switches exist for the ablations of bench/model_cv.py; a trained model uses the defaults
        self._engine = engine
        self.codes = codes
        self.code_sections = code_sections
        self.coding_rules = coding_rules
        self.alternatives = alternatives
        self.follow_up = follow_up
        self.findings = findings
        self.codebook = codebook

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from processors.nlp import get_engine

            self._engine = get_engine()
        return self._engine

    def features(self, text: str) -> dict[str, float]:
        eng = self.engine
        analysis = eng.analyze(text)
        low = text.lower()
        out: dict[str, float] = {}

        def add(st: str, key: str) -> None:
            for s in ("pos", st) if st in ("hist", "fu") else (st,):
                k = f"{s}|{key}"
                out[k] = out.get(k, 0.0) + 1.0

        for sent in analysis.sentences:
            words = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(low, sent.start, sent.end)]
            # a sentence without any ConText trigger asserts all its words: skip the per-word look-up
            triggered = bool(words) and bool(eng.trigger_matcher.finditer(low, sent.start, sent.end))
            for a, b, w in words:
                add(status(eng.assert_term(text, (a, b)), self.follow_up) if triggered else "pos", w)
        for f in analysis.findings:
            st = "pos" if f.category == "normal" else status(_as_context(f), self.follow_up)
            add(st, f"@{f.concept}")
        if self.codes:
            self._code_features(text, low, analysis, add, out)
        return out

    def _code_features(self, text: str, low: str, analysis: ReportAnalysis, add: Callable[[str, str], None],
                       out: dict[str, float]) -> None:
        eng = self.engine
        book = load_codebook(self.codebook)
        secs = [(s.body_start, s.end, s.name) for s in analysis.sections]
        hits: list[list[Any]] = []  # [start, end, code, status, hx|imp]
        for m in book.regex.finditer(low):
            code = book.code_of[_norm(m.group())]
            if not self.findings and book.kinds[code] == "finding":
                continue
            name = next((n for a, b, n in secs if a <= m.start() < b), "other")
            hits.append([m.start(), m.end(), code,
                         status(eng.assert_term(text, (m.start(), m.end())), self.follow_up),
                         "hx" if name in HISTORY_SECTIONS else "imp"])
        if self.alternatives:
            # "atelectasis or pneumonia", "infiltrate and/or atelectasis": a differential of two asserted
            # diagnoses codes neither for sure (ICD-9-CM: code what is established)
            for h1, h2 in zip(hits, hits[1:], strict=False):
                if (h1[3] == h2[3] == "pos" and h1[2] != h2[2] and book.kinds[h1[2]] in DIFFERENTIAL
                        and book.kinds[h2[2]] in DIFFERENTIAL
                        and _ALTERNATIVE_RE.fullmatch(low, h1[1], h2[0])):
                    h1[3] = h2[3] = "alt"
        seen: dict[str, set[tuple[str, str]]] = {}
        for _, _, code, st, where in hits:
            add(st, f"#{code}")
            if self.code_sections:
                add(st, f"#{code}|{where}")
            # a condition the study follows up is the condition now, for the coding rules
            seen.setdefault(code, set()).add(("pos" if st == "fu" else st, where))
        if not self.coding_rules:
            return
        # ICD-9-CM: a definite diagnosis is coded, and a symptom only when no definite diagnosis is
        definite = {c for c, ss in seen.items() if book.kinds[c] in DIAGNOSES and ("pos", "imp") in ss}
        for code, ss in seen.items():
            if book.kinds[code] == "procedure":
                # a follow-up after surgery (V67.09: "status post reimplantation", historical) is coded
                # when no condition is named any more ("history of reflux, status post reimplantation": the
                # reflux is coded)
                named = any(book.kinds[c] in DIAGNOSES and any(st in ("pos", "hist") for st, _ in s2)
                            for c, s2 in seen.items())
                if any(st in ("pos", "hist") for st, _ in ss) and not named:
                    out[f"rule|procedure_alone|#{code}"] = 1.0
                continue
            if not any(st == "pos" for st, _ in ss):
                continue
            if book.kinds[code] == "symptom":
                key = "rule|symptom_explained" if definite - {code} else "rule|symptom_alone"
                out[f"{key}|#{code}"] = 1.0
            elif book.kinds[code] in DIAGNOSES and ("pos", "imp") in ss:
                out[f"rule|definite|#{code}"] = 1.0
        if definite:
            out["rule|definite_diagnoses"] = float(len(definite))


def _as_context(f: object) -> ContextResult:
    from processors.nlp.types import ContextResult

    return ContextResult(negated=bool(getattr(f, "negated", False)),
                         uncertain=bool(getattr(f, "uncertain", False)),
                         historical=bool(getattr(f, "historical", False)),
                         hypothetical=bool(getattr(f, "hypothetical", False)),
                         experiencer=str(getattr(f, "experiencer", "patient")),
                         triggers=list(getattr(f, "triggers", [])))
