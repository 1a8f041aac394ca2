"""Exam normalisation: modality, body region and contrast from a procedure description."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from processors.nlp.matching import compile_ci

_DATA = json.loads((Path(__file__).parent / "vocabulary.json").read_text(encoding="utf-8"))


def _rx(patterns: list[str]) -> re.Pattern[str]:
    return compile_ci(r"(?<![\w/])(?:" + "|".join(patterns) + r")(?![\w])")


_MODALITIES = tuple((m["code"], _rx(m["patterns"])) for m in _DATA["modalities"])
_DICOM: dict[str, str] = _DATA["dicom"]
_REGIONS = {name: _rx(pats) for name, pats in _DATA["regions"].items()}
_PRIORITY: list[str] = _DATA["priority"]
_COMBINATIONS: dict[str, str] = _DATA["combinations"]
_ABBREVIATIONS = tuple((_rx([p]), region) for p, region in _DATA["region_abbreviations"].items())
_CONTRAST_KIND = ("both", "without", "with")
_CONTRAST_RE = compile_ci(
    "|".join(
        rf"(?P<{kind}>(?<![\w/])(?:{'|'.join(_DATA['contrast'][kind])})(?![\w]))" for kind in _CONTRAST_KIND
    )
)
_IMPLIED_RE = _rx(_DATA["contrast"]["implied"])
_SEP_RE = re.compile(r"[_]+")

MODALITY_CODES = frozenset(code for code, _ in _MODALITIES)
BODY_REGIONS = frozenset([*_REGIONS, *_COMBINATIONS.values(), *(r for _, r in _ABBREVIATIONS if r)])


@dataclass(frozen=True, slots=True)
class ExamInfo:
    """Normalised exam: ``modality`` (CT, MR, XR, US, MG, NM, PET, XA, RF, DXA), ``body_region``
    (see ``BODY_REGIONS``) and ``contrast`` (True / False / None = not stated)."""

    modality: str | None = None
    body_region: str | None = None
    contrast: bool | None = None

    def to_record(self) -> dict[str, Any]:
        """The ReportFindings fields modality, body_region, contrast."""
        return {"modality": self.modality, "body_region": self.body_region, "contrast": self.contrast}


def _modality_from_text(text: str) -> str | None:
    for code, rx in _MODALITIES:
        if rx.search(text):
            return code
    return None


@lru_cache(maxsize=1024)
def normalize_modality(modality: str | None) -> str | None:
    """A DICOM Modality code (CT, MR, CR, DX, US, MG, NM, PT, XA, RF, ...) or a modality word as a code."""
    if not modality:
        return None
    code = modality.strip().upper()
    return _DICOM.get(code) or _modality_from_text(code.lower())


def _region(text: str) -> str | None:
    for rx, region in _ABBREVIATIONS:
        if region and rx.search(text):
            return region
    found = {name for name, rx in _REGIONS.items() if rx.search(text)}
    if not found:
        return None
    if "whole_body" in found:
        return "whole_body"
    if len(found) > 1:
        combined = _COMBINATIONS.get("+".join(sorted(found)))
        if combined:
            return combined
    return next(r for r in _PRIORITY if r in found)


def _contrast(text: str) -> bool | None:
    kinds = {m.lastgroup for m in _CONTRAST_RE.finditer(text)}
    if "both" in kinds or "with" in kinds:
        return True
    if "without" in kinds:
        return False
    if _IMPLIED_RE.search(text):
        return True
    return None


@lru_cache(maxsize=8192)  # procedure descriptions repeat endlessly in a stream; ExamInfo is immutable
def normalize_exam(description: str | None, modality: str | None = None) -> ExamInfo:
    """Modality, body region and contrast from a procedure description and/or a DICOM modality code.

    A recognised ``modality`` code wins over the description, except that a description naming PET
    (PET/CT) wins over a CT/NM code of the same hybrid exam.
    """
    text = _SEP_RE.sub(" ", description or "").lower()
    from_text = _modality_from_text(text) if text else None
    code = normalize_modality(modality)
    mod = code or from_text
    if from_text == "PET" and code in ("CT", "NM", "MR"):
        mod = "PET"
    return ExamInfo(mod, _region(text) if text else None, _contrast(text) if text else None)
