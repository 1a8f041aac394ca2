"""A JSON/CSV record needs a patient id, as an HL7 message (PID-3) and a FHIR report (subject) do."""

from __future__ import annotations

import io
import json

import pytest

from processors.ingest.model import ParseError
from processors.ingest.records import ColumnMapping, Rejected, iter_csv, iter_jsonl, record_to_event


@pytest.mark.parametrize("row", [
    {"accession": "A1", "text": "Lungs clear."},
    {"accession": "A1", "patient_id": "  ", "text": "Lungs clear."},
    {"accession": "A1", "patient_id": None, "status": "cancelled"},
])
def test_record_without_patient_is_refused_with_a_reason(row: dict[str, object]) -> None:
    with pytest.raises(ParseError, match="no patient id") as ei:
        record_to_event(row, ColumnMapping(), site="s", source_format="json")
    assert ei.value.field == "patient_id"


def test_jsonl_and_csv_rows_without_patient_are_rejects_and_the_others_go_on() -> None:
    lines = [json.dumps({"accession": "A1", "text": "One."}).encode(),
             json.dumps({"accession": "A2", "mrn": "M2", "text": "Two."}).encode()]
    out = [x for _, x in iter_jsonl(lines, ColumnMapping(), site="s", name="r.jsonl")]
    assert isinstance(out[0], Rejected) and out[0].where == "r.jsonl:1" and "no patient id" in out[0].reason
    assert not isinstance(out[1], Rejected) and out[1].patient_id == "M2"
    data = "exam,mrn,findings\nE1,,Lungs clear.\nE2,M2,Heart normal.\n"
    m = ColumnMapping.parse(["exam=accession", "findings=text"])
    rows = [x for _, x in iter_csv(io.StringIO(data), m, site="s", name="x.csv")]
    assert isinstance(rows[0], Rejected) and "no patient id" in rows[0].reason
    assert not isinstance(rows[1], Rejected) and rows[1].patient_id == "M2"
