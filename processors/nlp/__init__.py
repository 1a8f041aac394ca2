"""radstream's radiology NLP engine (pure functions: text in, dataclasses out).

``analyze(text, exam=None, chest_mapping=None) -> ReportAnalysis`` and
``assert_term(text, term_or_span) -> ContextResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processors.nlp.types import NLP_VERSION, ContextResult, Finding, ReportAnalysis, Section, Sentence

if TYPE_CHECKING:
    from processors.nlp.engine import Engine


def analyze(text: str, exam: str | None = None, chest_mapping: str | None = None) -> ReportAnalysis:
    """Analyse one report; ``chest_mapping``: a chest label mapping file (None: the default). The engine
    is built once per process and mapping, on first use."""
    from processors.nlp.engine import analyze as _analyze

    return _analyze(text, exam, chest_mapping)


def assert_term(text: str, term: str | tuple[int, int]) -> ContextResult:
    """ConText status (negated, uncertain, historical, hypothetical, experiencer) of a term or span."""
    from processors.nlp.engine import assert_term as _assert

    return _assert(text, term)


def get_engine(chest_mapping: str | None = None) -> Engine:
    from processors.nlp.engine import get_engine as _get

    return _get(chest_mapping)


__all__ = [
    "NLP_VERSION",
    "ContextResult",
    "Finding",
    "ReportAnalysis",
    "Section",
    "Sentence",
    "analyze",
    "assert_term",
    "get_engine",
]
