"""Result and option types of report-text de-identification, and the offset map between the original
text and the de-identified one."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["surrogate", "tag"]
MODES: tuple[str, ...] = ("surrogate", "tag")

# PHI types (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i), the identifiers that occur in reports)
PHI_TYPES = (
    "NAME",
    "DATE",
    "AGE",
    "MRN",
    "ACCESSION",
    "ORDER",
    "ID",
    "SSN",
    "PHONE",
    "EMAIL",
    "URL",
    "IP",
    "STREET",
    "LOCATION",
    "ZIP",
    "INSTITUTION",
)


class TextDeidError(ValueError):
    """Input that cannot be de-identified (too large, not text): the caller dead-letters it."""


@dataclass(frozen=True)
class TextDeidOptions:
    """Per-site settings.

    ``mode``: ``surrogate`` replaces each identifier by a realistic stand-in of the same kind ("hide in
    plain sight": a missed name among surrogates is hard to tell from them), consistent within a patient;
    ``tag`` replaces it by ``[TYPE]``. Dates are shifted in both modes (intervals survive).
    ``institutions``: the site's own institution names (exact phrases, matched case-insensitively),
    found besides the pattern rules. ``max_chars``: longer input is refused (TextDeidError).
    """

    mode: Mode = "surrogate"
    institutions: tuple[str, ...] = ()
    max_chars: int = 200_000


@dataclass(frozen=True)
class Span:
    """A PHI span: [start, end) character offsets and its type."""

    start: int
    end: int
    type: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "type": self.type}


@dataclass(frozen=True)
class OffsetMap:
    """Original-text offsets -> de-identified-text offsets.

    ``pieces``: the replaced spans as (orig_start, orig_end, new_start, new_end), sorted, disjoint. Text
    outside them is copied unchanged, so an offset there moves by the length change of the pieces before it.
    An offset strictly inside a replaced span maps to the start of its replacement (``side="start"``) or
    to its end (``side="end"``), so a span that cuts into PHI grows to cover the whole replacement.
    """

    pieces: tuple[tuple[int, int, int, int], ...] = ()
    _starts: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(p[0] for p in self.pieces))

    def map(self, pos: int, side: Literal["start", "end"] = "start") -> int:
        i = bisect_right(self._starts, pos) - 1
        if i < 0:
            return pos
        o0, o1, n0, n1 = self.pieces[i]
        if pos >= o1:
            return n1 + (pos - o1)
        if pos == o0:
            return n0
        return n0 if side == "start" else n1

    def map_span(self, start: int, end: int) -> tuple[int, int]:
        """A [start, end) span of the original text in the de-identified text (never inverted)."""
        new_start = self.map(start, "start")
        new_end = self.map(end, "end") if end > start else new_start
        return new_start, max(new_start, new_end)


@dataclass(frozen=True)
class DeidText:
    """The de-identified text, the PHI spans found (offsets into ``text``, the de-identified text) and
    the map from original offsets to offsets into ``text``."""

    text: str
    spans: tuple[Span, ...]
    offsets: OffsetMap
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "spans": [s.to_dict() for s in self.spans]}
