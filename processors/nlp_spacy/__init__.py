"""radstream's NLP as spaCy pipeline components (see docs/spacy.md).

Importing this package registers the factories ``radstream_sections``, ``radstream_context`` and
``radstream`` (both in one); an installed radstream (``pip install``) also announces them through the
``spacy_factories`` entry points in pyproject.toml, so ``spacy.blank("en").add_pipe("radstream")`` then
works without this import. Behind them is the same engine as ``processors.nlp.analyze``.
"""

from __future__ import annotations

from processors.nlp_spacy.components import (
    ASSESSMENTS,
    COMMUNICATION,
    CRITICAL,
    FINDINGS,
    MEASUREMENTS,
    RECOMMENDATIONS,
    SECTIONS,
    Radstream,
    make_context,
    make_radstream,
    make_sections,
    register_extensions,
)
from processors.nlp_spacy.rules import TargetRule

__all__ = [
    "ASSESSMENTS",
    "COMMUNICATION",
    "CRITICAL",
    "FINDINGS",
    "MEASUREMENTS",
    "RECOMMENDATIONS",
    "SECTIONS",
    "Radstream",
    "TargetRule",
    "make_context",
    "make_radstream",
    "make_sections",
    "register_extensions",
]
