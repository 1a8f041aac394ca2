"""radstream's radiology NLP engine (pure functions: text in, dataclasses out).

``analyze(text, exam=None) -> ReportAnalysis`` and ``assert_term(text, term_or_span) -> ContextResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processors.nlp.types import NLP_VERSION, ContextResult, Finding, ReportAnalysis, Section, Sentence

if TYPE_CHECKING:
    from processors.nlp.engine import Engine


def analyze(text: str, exam: str | None = None) -> ReportAnalysis:
    """Analyse one report (the engine is built once per process, on first use)."""
    from processors.nlp.engine import analyze as _analyze

    return _analyze(text, exam)


def assert_term(text: str, term: str | tuple[int, int]) -> ContextResult:
    """ConText status (negated, uncertain, historical, hypothetical, experiencer) of a term or span."""
    from processors.nlp.engine import assert_term as _assert

    return _assert(text, term)


def get_engine() -> Engine:
    from processors.nlp.engine import get_engine as _get

    return _get()


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
