"""An NLP ``ReportAnalysis`` as the NLP fields of the ReportFindings contract
(``schemas/report_findings.avsc``).

The schema drives the mapping, so the processors need not know it: the record fields the schema names
are read straight from the processors' dataclasses, objects or dicts (schema defaults for missing ones).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from processors.nlp.types import ReportAnalysis, plain
from schemas import SCHEMA_DIR

SCHEMA_FILE = SCHEMA_DIR / "report_findings.avsc"

# the fields the NLP fills; the caller adds the stream fields (event_id, accession, ...)
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
_LEAVES = (str, int, float, bool)


def analysis_to_avro(analysis: ReportAnalysis) -> dict[str, Any]:
    """Exactly the NLP fields of the ReportFindings record (absent chest labels are left out)."""
    out: dict[str, Any] = {}
    for name, sub in _avro_fields().items():
        value = getattr(analysis, name)
        if name == "chest_labels":
            value = {k: v for k, v in value.items() if v != "absent"}
        out[name] = _avro_value(value, sub)
    return out


def _avro_value(value: Any, sub: dict[str, Any] | None) -> Any:
    """One pass, driven by the schema: the record fields the schema names (schema defaults for missing
    ones), read straight from dataclasses, objects or dicts; leaves as ``plain(micros=True)``."""
    if value is None or type(value) in _LEAVES:
        return value
    if sub is None:
        return plain(value, micros=True)
    if isinstance(value, list | tuple):
        return [_avro_value(v, sub) for v in value]
    if isinstance(value, dict):
        return {name: _avro_value(value.get(name, default), inner) for name, (default, inner) in sub.items()}
    return {name: _avro_value(getattr(value, name, default), inner) for name, (default, inner) in sub.items()}


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
