"""A user's own target rules, in the shape of medspaCy's ``TargetRule`` (literal, category, pattern,
on_match, metadata, attributes), without depending on medspaCy (it pins spaCy<3.8 and numpy<2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOWED_KEYS = frozenset({"literal", "category", "pattern", "metadata", "attributes"})


@dataclass(slots=True)
class TargetRule:
    """A target the ``radstream_context`` component finds and asserts with ConText.

    ``literal``: the phrase, matched case-insensitively token by token (spaCy ``PhraseMatcher`` on
    ``LOWER``) when ``pattern`` is None. ``category``: the label of the matched span (``span.label_``,
    as in medspaCy). ``pattern``: instead of the literal, a spaCy token pattern (a list of dicts, see
    https://spacy.io/usage/rule-based-matching) or a regular expression (a string, matched
    case-insensitively on ``doc.text`` and widened to whole tokens). ``on_match``: a spaCy matcher
    callback ``(matcher, doc, i, matches)``, kept in memory only (never serialised). ``metadata``: any
    JSON-ready dict, copied into the span's ``._.radstream`` record. ``attributes``: values that override
    the ConText result (``{"hypothetical": True}``) or set another registered ``Span._`` extension.
    """

    literal: str
    category: str
    pattern: list[dict[str, Any]] | str | None = None
    on_match: Callable[..., Any] | None = None
    metadata: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.literal, str) or not self.literal.strip():
            raise ValueError(f"TargetRule literal must be a non-empty string, got {self.literal!r}")
        if not isinstance(self.category, str) or not self.category:
            raise ValueError(f"TargetRule category must be a non-empty string, got {self.category!r}")
        if self.pattern is not None and not isinstance(self.pattern, str | list):
            raise ValueError(f"TargetRule pattern must be a list of token dicts or a regex string: {self!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready rule (``on_match`` is code and is left out, as medspaCy does)."""
        out: dict[str, Any] = {"literal": self.literal, "category": self.category}
        for key in ("pattern", "metadata", "attributes"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetRule:
        unknown = set(data) - ALLOWED_KEYS
        if unknown:
            raise ValueError(f"TargetRule keys {sorted(unknown)} unknown; allowed: {sorted(ALLOWED_KEYS)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> list[TargetRule]:
        """Rules from a JSON file ``{"target_rules": [{"literal": ..., "category": ...}, ...]}``."""
        data = json.loads(Path(path).read_text())
        return [cls.from_dict(d) for d in data["target_rules"]]

    @staticmethod
    def to_json(rules: list[TargetRule], path: str | Path) -> None:
        Path(path).write_text(json.dumps({"target_rules": [r.to_dict() for r in rules]}, indent=2))
