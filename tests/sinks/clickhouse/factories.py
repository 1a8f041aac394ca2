"""Builders of valid contract records for the warehouse tests (dicts as streams.serde.decode returns),
and of the migrations an older release had."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sinks.clickhouse.migrate import DDL_DIR

BASE_TIME = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def report(
    accession: str,
    version: int = 1,
    *,
    status: str = "final",
    patient_id: str = "P1",
    modality: str = "CT",
    body_part: str = "CHEST",
    procedure: str = "CT chest",
    exam_time: datetime = BASE_TIME,
    patient_class: str | None = "outpatient",
    text: str = "FINDINGS: normal.",
    site: str = "default",
    **extra: Any,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "event_id": f"{site}|{accession}|{version}",
        "site": site,
        "accession": accession,
        "report_id": f"R-{accession}",
        "version": version,
        "status": status,
        "patient_id": patient_id,
        "patient_id_is_pseudonym": False,
        "visit_number": f"V-{accession}",
        "patient_class": patient_class,
        "modality": modality,
        "procedure_code": procedure.upper().replace(" ", ""),
        "procedure_description": procedure,
        "body_part": body_part,
        "study_instance_uid": f"1.2.826.0.1.{abs(hash(accession)) % 10**8}",
        "observation_time": exam_time,
        "status_time": exam_time + timedelta(hours=2),
        "received_time": exam_time + timedelta(hours=2, seconds=1),
        "author": "Dr Example",
        "source_format": "json",
        "source_message_id": None,
        "text": text,
    }
    rec.update(extra)
    return rec


def finding(
    concept: str,
    *,
    start: int = 10,
    negated: bool = False,
    uncertain: bool = False,
    historical: bool = False,
    hypothetical: bool = False,
    experiencer: str = "patient",
    size_mm: float | None = None,
    category: str = "finding",
    section: str = "findings",
    laterality: str | None = None,
    certainty: str | None = None,
) -> dict[str, Any]:
    return {
        "concept": concept,
        "category": category,
        "text": concept.replace("_", " "),
        "start": start,
        "end": start + len(concept),
        "sentence": 0,
        "section": section,
        "negated": negated,
        "uncertain": uncertain,
        "historical": historical,
        "hypothetical": hypothetical,
        "experiencer": experiencer,
        "certainty": certainty or ("possible" if uncertain else "definite"),
        "laterality": laterality,
        "anatomy": ["lung"] if "nodule" in concept else [],
        "severity": None,
        "change": None,
        "size_mm": size_mm,
        "source": "rules",
    }


def findings(
    rep: dict[str, Any],
    found: list[dict[str, Any]] | None = None,
    *,
    processed_time: datetime | None = None,
    assessments: Sequence[tuple[str, str]] = (),
    critical: Sequence[str] = (),
    communication_after: timedelta | None = None,
    chest_labels: dict[str, str] | None = None,
    measurements: list[dict[str, Any]] | None = None,
    recommendations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    t = rep["status_time"]
    comm = None
    if communication_after is not None:
        comm = {
            "text": "Discussed with the referring physician",
            "recipient": "Dr Referrer",
            "time_text": "at once",
            "time": t + communication_after,
        }
    return {
        "event_id": rep["event_id"],
        "site": rep["site"],
        "accession": rep["accession"],
        "report_version": rep["version"],
        "status": rep["status"],
        "patient_id": rep["patient_id"],
        "modality": rep["modality"],
        "body_region": (rep.get("body_part") or "").lower() or None,
        "contrast": None,
        "nlp_version": "test-1",
        "processed_time": processed_time or t + timedelta(seconds=3),
        "sections": [{"name": "findings", "title": "FINDINGS", "start": 0, "end": len(rep["text"])}],
        "findings": list(found or []),
        "measurements": list(measurements or []),
        "recommendations": list(recommendations or []),
        "assessments": [
            {"system": s, "category": c, "text": f"{s} {c}", "start": 0, "end": 5} for s, c in assessments
        ],
        "critical_results": [{"concept": c, "text": c, "start": 0, "end": len(c)} for c in critical],
        "communication": comm,
        "chest_labels": dict(chest_labels or {}),
    }


def ddl_until(directory: Path, last: int) -> Path:
    """``directory`` (created) with a copy of the migrations numbered up to ``last``: what a store that
    an older release migrated has."""
    directory.mkdir()
    for path in DDL_DIR.glob("*.sql"):
        if int(path.name[:3]) <= last:
            shutil.copy(path, directory / path.name)
    return directory


def registered(project_id: str, identified: bool = False) -> dict[str, Any]:
    """A ``project_registration`` record (a de-identified project unless ``identified``): the sink keeps a
    project's status events from analysts until it knows the project is de-identified."""
    from sinks.dicom.projects import Project

    return Project(project_id, "RESEARCH", "owner", "steward1", identified=identified,
                   irb_reference="IRB-T" if identified else "", time=BASE_TIME).record()
