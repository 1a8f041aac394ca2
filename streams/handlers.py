"""Per-event logic of the stream agents, free of Faust so it can be tested and reused (backfill)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

RETRACTED = frozenset({"cancelled", "entered_in_error"})

# ReportFinalized fields copied onto ReportFindings
_CARRIED = ("event_id", "site", "accession", "status", "patient_id")


def findings_key(report: dict[str, Any]) -> bytes:
    """Kafka key of both report topics: one partition per report, so versions stay in order."""
    return f"{report.get('site', 'default')}|{report['accession']}".encode()


def analyze_report(report: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A decoded ReportFinalized record -> the ReportFindings record for the same version.

    A cancelled / entered-in-error version carries no findings: it retracts the report's
    earlier versions in the latest views.
    """
    from processors.nlp import NLP_VERSION, analyze

    record: dict[str, Any] = {k: report[k] for k in _CARRIED}
    record["report_version"] = report["version"]
    record["processed_time"] = now or datetime.now(UTC)
    if report["status"] in RETRACTED or not report["text"].strip():
        record.update(modality=report.get("modality"), nlp_version=NLP_VERSION)
        return record
    analysis = analyze(report["text"], exam=_exam_of(report))
    record.update(analysis.to_avro())
    if not record.get("modality"):
        record["modality"] = report.get("modality")
    return record


def _exam_of(report: dict[str, Any]) -> str | None:
    parts = [p for p in (report.get("modality"), report.get("procedure_description")) if p]
    return " ".join(parts) or None
