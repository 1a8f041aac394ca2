"""Dataclasses of the NLP engine: plain, JSON-serialisable (``dataclasses.asdict``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from schemas import SCHEMA_DIR

NLP_VERSION = "0.3.0"
SCHEMA_FILE = SCHEMA_DIR / "report_findings.avsc"


@dataclass(frozen=True, slots=True)
class Section:
    name: str  # exam, history, technique, comparison, findings, impression, recommendation, addendum, other
    title: str  # the header as written ("" when the report has no header there)
    start: int  # offset of the header (or of the text when there is none)
    end: int  # end of the section's text
    body_start: int  # offset where the text after the header starts


@dataclass(frozen=True, slots=True)
class Sentence:
    index: int
    start: int
    end: int
    section: str


@dataclass(slots=True)
class ContextResult:
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    hypothetical: bool = False
    experiencer: str = "patient"
    certainty: str = "definite"  # definite | probable | possible (uncertain == certainty != definite)
    triggers: list[str] = field(default_factory=list)  # "category:phrase" of the modifiers that applied


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
        out: dict[str, Any] = {k: _plain(getattr(self, k)) for k in _field_names(self)}
        out["sentences"] = [dict(_plain(s), text=self.text[s.start : s.end]) for s in self.sentences]
        return out

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_avro(self) -> dict[str, Any]:
        """Exactly the NLP fields of ``schemas/report_findings.avsc`` (the caller adds the stream fields)."""
        out: dict[str, Any] = {}
        for name, sub in _avro_fields().items():
            value = getattr(self, name)
            if name == "chest_labels":
                value = {k: v for k, v in value.items() if v != "absent"}
            out[name] = _avro_value(value, sub)
        return out


def _field_names(obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


def _plain(value: Any, avro: bool = False) -> Any:
    """dataclasses / objects with __dict__ / containers -> JSON-ready values (Avro: datetimes as micros)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), avro) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v, avro) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, avro) for v in value]
    if isinstance(value, datetime):
        if not avro:
            return value.isoformat()
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1_000_000)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: _plain(v, avro) for k, v in vars(value).items() if not k.startswith("_")}
    return value


_LEAVES = (str, int, float, bool)


def _avro_value(value: Any, sub: dict[str, Any] | None) -> Any:
    """One pass, driven by the schema: the record fields the schema names (schema defaults for missing
    ones), read straight from dataclasses, objects or dicts; leaves as ``_plain(avro=True)``."""
    if value is None or type(value) in _LEAVES:
        return value
    if sub is None:
        return _plain(value, avro=True)
    if isinstance(value, list | tuple):
        return [_avro_value(v, sub) for v in value]
    if isinstance(value, dict):
        return {name: _avro_value(value.get(name, default), inner) for name, (default, inner) in sub.items()}
    return {name: _avro_value(getattr(value, name, default), inner) for name, (default, inner) in sub.items()}


_NLP_FIELDS = (
    "modality",
    "body_region",
    "contrast",
    "nlp_version",
    "sections",
    "findings",
    "measurements",
    "recommendations",
    "assessments",
    "critical_results",
    "communication",
    "chest_labels",
)


@lru_cache(maxsize=1)
def _avro_fields() -> dict[str, Any]:
    schema = json.loads(SCHEMA_FILE.read_text())
    by_name = {f["name"]: f for f in schema["fields"]}
    return {name: _record_fields(by_name[name]["type"]) for name in _NLP_FIELDS}


def _record_fields(t: Any) -> dict[str, Any] | None:
    """For a record (or array/union of one): {field: (default, nested)}; None for scalars and maps."""
    if isinstance(t, list):
        for option in t:
            found = _record_fields(option)
            if found is not None:
                return found
        return None
    if isinstance(t, dict):
        if t.get("type") == "array":
            return _record_fields(t["items"])
        if t.get("type") == "record":
            return {f["name"]: (f.get("default"), _record_fields(f["type"])) for f in t["fields"]}
    return None
