"""analysis_to_avro(): the NLP fields of a ReportFindings record, encodable with the contract."""

from __future__ import annotations

import json
from typing import Any

from processors.nlp import analyze
from schemas import SCHEMA_DIR
from streams.findings_avro import analysis_to_avro
from streams.serde import decode, encode

CHEST = """EXAM: XR CHEST 2 VIEWS
FINDINGS: Moderate cardiomegaly. Small bilateral pleural effusions. No pneumothorax.
IMPRESSION: Cardiomegaly with small bilateral effusions.
"""
CT = (
    "EXAM: CT CHEST WITH CONTRAST\nFINDINGS: Right upper lobe nodule measuring 1.2 x 0.8 cm, previously "
    "6 mm. Small right pneumothorax.\nIMPRESSION: Lung-RADS 4B. Recommend PET/CT in 3 months.\n"
    "Findings discussed with Dr. Jones by telephone at 10:15 on 3/4/2025."
)
STREAM_FIELDS = {
    "event_id": "e1",
    "accession": "A1",
    "report_version": 1,
    "status": "final",
    "patient_id": "p",
    "processed_time": 0,
    "site": "default",
    "study_ref": None,
}


def _round_trip(rec: dict[str, Any]) -> dict[str, Any]:
    return decode("report_findings", encode("report_findings", dict(rec, **STREAM_FIELDS)))


def test_exactly_the_nlp_fields_and_they_encode() -> None:
    rec = analysis_to_avro(analyze(CHEST))
    # every field of the contract but the stream's own
    schema = json.loads((SCHEMA_DIR / "report_findings.avsc").read_text())
    assert set(rec) == {f["name"] for f in schema["fields"]} - set(STREAM_FIELDS)
    assert rec["chest_labels"]["Cardiomegaly"] == "positive"
    assert "absent" not in rec["chest_labels"].values()
    back = _round_trip(rec)
    assert back["findings"] == rec["findings"] and back["chest_labels"] == rec["chest_labels"]
    assert {f["certainty"] for f in back["findings"]} <= {"definite", "probable", "possible"}


def test_extractor_records_encode() -> None:
    rec = analysis_to_avro(analyze(CT))
    assert (rec["modality"], rec["body_region"], rec["contrast"]) == ("CT", "chest", True)
    assert rec["communication"]["recipient"] == "Dr. Jones"
    assert isinstance(rec["communication"]["time"], int)  # timestamp-micros
    back = _round_trip(rec)
    assert [m["max_mm"] for m in back["measurements"]] == [m["max_mm"] for m in rec["measurements"]] == [12.0]
    assert back["communication"]["recipient"] == "Dr. Jones"
    assert [(a["system"], a["category"]) for a in back["assessments"]] == [("Lung-RADS", "4B")]


def test_the_exam_given_is_carried() -> None:
    body = "FINDINGS: No acute intracranial abnormality."
    rec = analysis_to_avro(analyze(body, exam="MRI BRAIN W/WO CONTRAST"))
    assert (rec["modality"], rec["body_region"], rec["contrast"]) == ("MR", "head", True)
