"""Assertion-aware bag-of-words features of a report, for the site-trained linear classifier.

Every word and every lexicon concept of the rule engine (:mod:`processors.nlp`) is keyed by its ConText
status, so "no pneumonia" and "pneumonia" are different features. That is what coding rules such as
ICD-9-CM's need: a confirmed diagnosis is coded, a ruled-out or uncertain one is not (and the symptom in
the history is coded instead).

Feature keys (counts): ``<status>|<word>`` and ``<status>|@<concept>``, where status is ``pos``
(asserted), ``neg`` (negated), ``unc`` (uncertain or hypothetical), ``oth`` (someone else) or ``hist``
(historical). A historical word also counts as ``pos``: in a clinical history "history of fever" is the
complaint that brings the patient now. Measured on the CMC dev set (docs/ml.md): word bigrams and
section-keyed words scored lower than these unigrams (too many rare features for a few hundred reports).

Labelled CSV rows become one report text, the text columns as sections under a header made from the
column name (``clinical_history`` -> ``CLINICAL HISTORY:``), so a report that reaches the worker with
the same headers gives the same features.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.nlp.engine import Engine
    from processors.nlp.types import ContextResult

FEATURES_VERSION = 1
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


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


def status(res: ContextResult) -> str:
    if res.experiencer != "patient":
        return "oth"
    if res.negated:
        return "neg"
    if res.uncertain or res.hypothetical:
        return "unc"
    if res.historical:
        return "hist"
    return "pos"


class FeatureExtractor:
    """``features(text)`` -> feature counts. The rule engine is built once per process (on first use)."""

    def __init__(self, engine: Engine | None = None):
        self._engine = engine

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
            for s in ("pos", "hist") if st == "hist" else (st,):
                k = f"{s}|{key}"
                out[k] = out.get(k, 0.0) + 1.0

        for sent in analysis.sentences:
            words = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(low, sent.start, sent.end)]
            # a sentence without any ConText trigger asserts all its words: skip the per-word look-up
            triggered = bool(words) and bool(eng.trigger_matcher.finditer(low, sent.start, sent.end))
            for a, b, w in words:
                add(status(eng.assert_term(text, (a, b))) if triggered else "pos", w)
        for f in analysis.findings:
            add("pos" if f.category == "normal" else status(_as_context(f)), f"@{f.concept}")
        return out


def _as_context(f: object) -> ContextResult:
    from processors.nlp.types import ContextResult

    return ContextResult(negated=bool(getattr(f, "negated", False)),
                         uncertain=bool(getattr(f, "uncertain", False)),
                         historical=bool(getattr(f, "historical", False)),
                         hypothetical=bool(getattr(f, "hypothetical", False)),
                         experiencer=str(getattr(f, "experiencer", "patient")))
