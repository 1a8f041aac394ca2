"""Report-text de-identification (HIPAA Safe Harbor identifiers that occur in radiology reports).

``deidentify(text, key=..., patient=..., options=...) -> DeidText`` with ``.text`` (the de-identified
text), ``.spans`` (the PHI found: ``Span(start, end, type)``, offsets into ``.text``) and ``.offsets``
(original offsets -> offsets into ``.text``, for findings computed on the original).

Rules and word lists are data (``rules.json``, ``lexicons/``); see docs/textdeid.md for what is covered,
how it was measured and why it is a rule engine rather than philter / presidio / scrubadub.
"""

from __future__ import annotations

from processors.ingest.pseudonym import date_shift_days
from processors.textdeid.engine import TEXTDEID_VERSION, deidentify_text, detect
from processors.textdeid.types import (
    MODES,
    PHI_TYPES,
    DeidText,
    OffsetMap,
    Span,
    TextDeidError,
    TextDeidOptions,
)

__all__ = [
    "MODES",
    "PHI_TYPES",
    "TEXTDEID_VERSION",
    "DeidText",
    "OffsetMap",
    "Span",
    "TextDeidError",
    "TextDeidOptions",
    "deidentify",
    "detect",
    "shift_days",
]


def shift_days(key: bytes, patient: str) -> int:
    """Days every date of this patient moves back: the images' shift
    (``processors.ingest.pseudonym.date_shift_days`` on the research pseudonym)."""
    return date_shift_days(key, patient)


def deidentify(
    text: str, *, key: bytes, patient: str = "", options: TextDeidOptions | None = None
) -> DeidText:
    """De-identify one report text.

    ``key``: the secret pseudonym key (surrogates and the date shift are keyed on it); ``patient``: the
    patient's research pseudonym (``psn-...``), so dates move by the same number of days as in the
    patient's images and surrogates stay consistent across the patient's reports. Raises
    ``TextDeidError`` for input that is not text or is larger than ``options.max_chars``.
    """
    if not key:
        raise TextDeidError("text de-identification needs a secret key")
    return deidentify_text(text, key, patient, shift_days(key, patient), options or TextDeidOptions())
