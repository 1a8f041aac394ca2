"""Reading report files of every format (no Kafka): the samples as ``radstream ingest file`` sees them."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.ingest.model import ReportEvent
from processors.ingest.records import ColumnMapping, Rejected
from streams.ingest.files import guess_format, iter_file

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
CSV_MAP = ["exam_id=accession", "mrn=patient_id", "exam=procedure_description", "performed=observation_time",
           "signed=status_time", "radiologist=author", "findings=text", "impression=text"]


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.csv", "csv"), ("a.hl7", "hl7"), ("x.er7", "hl7"), ("dr.json", "fhir"), ("export.fhir.ndjson", "fhir"),
    ("reports.jsonl", "jsonl"), ("reports.ndjson", "jsonl"),
])
def test_guess_format(name: str, fmt: str) -> None:
    assert guess_format(Path(name)) == fmt


def test_csv_sample_with_mapping() -> None:
    out = list(iter_file(SAMPLES / "reports.csv", "csv", ColumnMapping.parse(CSV_MAP), site="s"))
    evs = [x for _, x in out if isinstance(x, ReportEvent)]
    rej = [x for _, x in out if isinstance(x, Rejected)]
    assert [e.accession for e in evs] == ["CSV-2001", "CSV-2002", "CSV-2003"]
    assert evs[0].text.startswith("FINDINGS: Lungs are clear.") and "\n\nIMPRESSION: " in evs[0].text
    assert evs[2].status == "preliminary" and evs[1].author == "Dr. Lee Chen"
    assert [r.where for r in rej] == ["reports.csv:4", "reports.csv:5"]


def test_pretty_fhir_json_file_is_one_resource_and_skip_resumes() -> None:
    path = SAMPLES / "fhir" / "diagnosticreport_final.json"
    [(no, ev)] = list(iter_file(path, "fhir", ColumnMapping(), site="s"))
    assert no == 1 and isinstance(ev, ReportEvent) and ev.accession == "FH-ACC-7781"
    assert list(iter_file(path, "fhir", ColumnMapping(), site="s", skip=1)) == []
    nd = list(iter_file(SAMPLES / "fhir" / "reports.fhir.ndjson", "fhir", ColumnMapping(), site="s", skip=2))
    assert [no for no, _ in nd] == [3, 4]


def test_non_utf8_csv_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("accession,mrn,text\nA,M,ok\nB,M,Gr\u00f6\u00dfe\n".encode("latin-1"))
    out = list(iter_file(path, "csv", ColumnMapping(), site="s"))
    assert isinstance(out[0][1], ReportEvent)
    assert isinstance(out[-1][1], Rejected) and "row is not UTF-8 (byte 0xF6)" in out[-1][1].reason
    assert len(out) == 2
