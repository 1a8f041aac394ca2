"""Contract records for the ML tests (dicts as streams.serde.decode returns them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def report(accession: str, text: str, *, version: int = 1, status: str = "final", modality: str = "CT",
           body_part: str = "CHEST") -> dict[str, Any]:
    return {
        "event_id": f"default|{accession}|{version}", "site": "default", "accession": accession,
        "report_id": f"R-{accession}", "version": version, "status": status, "patient_id": f"P-{accession}",
        "patient_id_is_pseudonym": False, "visit_number": None, "patient_class": None, "modality": modality,
        "procedure_code": None, "procedure_description": None, "body_part": body_part,
        "study_instance_uid": None, "observation_time": T0, "status_time": T0, "received_time": T0,
        "author": None, "source_format": "json", "source_message_id": None, "text": text,
    }


def finding(concept: str, text: str, *, negated: bool = False, hypothetical: bool = False) -> dict[str, Any]:
    return {
        "concept": concept, "category": "finding", "text": text, "start": 0, "end": len(text), "sentence": 0,
        "section": "impression", "negated": negated, "uncertain": False, "historical": False,
        "hypothetical": hypothetical, "experiencer": "patient", "laterality": None, "anatomy": [],
        "severity": None, "change": None, "size_mm": None, "source": "rules",
    }


def nlp_result(rep: dict[str, Any], findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "event_id": rep["event_id"], "site": rep["site"], "accession": rep["accession"],
        "report_version": rep["version"], "status": rep["status"], "patient_id": rep["patient_id"],
        "modality": rep["modality"], "body_region": None, "contrast": None, "nlp_version": "test",
        "processed_time": T0, "sections": [], "findings": findings, "measurements": [], "recommendations": [],
        "assessments": [], "critical_results": [], "communication": None, "chest_labels": {},
    }
