"""JSONL/CSV records -> report events (pure)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from processors.ingest.model import ParseError, ReportEvent, derive_version
from processors.ingest.records import ColumnMapping, Rejected, iter_csv, iter_jsonl, record_to_event
from streams import serde

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _one(row: Mapping[str, object], *specs: str) -> ReportEvent:
    """The event of ``row``, which gets a patient id when it names none (a record needs one)."""
    if not any(k in row for k in ("patient_id", "mrn")) and "patient_id" not in " ".join(specs):
        row = {"patient_id": "P0", **row}
    return record_to_event(row, ColumnMapping.parse(specs), site="s1", source_format="json", received_time=T0)


def test_jsonl_line_becomes_event_that_fits_the_contract() -> None:
    line = json.dumps({"accession": "A1", "patient_id": "P1", "status": "final", "text": "Lungs clear.",
                       "status_time": "2026-03-01T10:00:00+01:00", "modality": "cr"}).encode()
    [(no, ev)] = list(iter_jsonl([line], ColumnMapping(), site="s1", received_time=T0))
    assert no == 1 and isinstance(ev, ReportEvent)
    assert ev.version == int(datetime(2026, 3, 1, 9, 0, tzinfo=UTC).timestamp() * 1_000_000)
    assert ev.modality == "CR" and ev.site == "s1" and ev.report_id == "A1"
    back = serde.decode("report_finalized", serde.encode("report_finalized", ev.to_avro()))
    assert back["accession"] == "A1" and back["text"] == "Lungs clear." and back["event_id"] == ev.event_id
    assert back["status_time"] == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_same_record_twice_same_event_id_new_status_new_id() -> None:
    row = {"accession": "A1", "patient_id": "P1", "text": "x", "status_time": "2026-03-01T10:00:00Z"}
    a, b = _one(row), record_to_event(dict(row), ColumnMapping(), site="s1", source_format="json",
                                      received_time=datetime(2030, 1, 1, tzinfo=UTC))
    assert a.event_id == b.event_id
    c = _one({**row, "status": "corrected", "status_time": "2026-03-01T11:00:00Z"})
    assert c.event_id != a.event_id and c.version > a.version


def test_mapping_several_columns_into_text_as_sections() -> None:
    row = {"rid": "R9", "findings": "Heart normal.", "impression": "Normal chest.", "indication": ""}
    ev = _one(row, "rid=accession", "indication=text", "findings=text", "impression=text")
    assert ev.accession == "R9"
    assert ev.text == "FINDINGS: Heart normal.\n\nIMPRESSION: Normal chest."


def test_aliases_fill_fields_without_mapping() -> None:
    ev = _one({"accession_number": "A2", "mrn": "M", "report_text": "t", "exam": "XR CHEST"})
    assert (ev.accession, ev.patient_id, ev.procedure_description) == ("A2", "M", "XR CHEST")


@pytest.mark.parametrize(("row", "reason"), [
    ({"patient_id": "P", "text": "t"}, "no accession"),
    ({"accession": "A", "text": "  "}, "empty report text"),
    ({"accession": "A", "text": "t", "status": "bogus"}, "unknown report status"),
    ({"accession": "A", "text": "t", "status_time": "yesterday"}, "invalid"),
    ({"accession": "A", "text": "t", "version": "v2"}, "not an integer"),
    ({"accession": {"x": 1}, "text": "t"}, "nested value"),
])
def test_bad_records_raise_parse_error_with_reason(row: dict[str, object], reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        _one(row)


def test_cancelled_needs_no_text() -> None:
    ev = _one({"accession": "A", "status": "cancelled", "status_time": "2026-03-01T10:00:00Z"})
    assert ev.retracts and ev.text == ""


def test_version_fallbacks_keep_lifecycle_order() -> None:
    assert derive_version("final", None, None) < derive_version("corrected", None, None)
    obs = datetime(2026, 1, 1, tzinfo=UTC)
    assert derive_version("preliminary", None, None, obs) < derive_version("final", None, None, obs)
    assert derive_version("final", None, None) < derive_version("preliminary", obs, None)


def test_jsonl_rejects_carry_line_and_reason_and_raw_bytes() -> None:
    lines = [b'{"accession": "A", "patient_id": "P", "text": "ok"}\n', b"\n", b"{broken\n", b"[1, 2]\n",
             b"\xff\xfe\n"]
    out = list(iter_jsonl(lines, ColumnMapping(), site="s", name="f.jsonl"))
    assert [no for no, _ in out] == [1, 3, 4, 5]
    rej = [r for _, r in out if isinstance(r, Rejected)]
    assert [r.where for r in rej] == ["f.jsonl:3", "f.jsonl:4", "f.jsonl:5"]
    assert "invalid JSON" in rej[0].reason and "object" in rej[1].reason and rej[0].raw == b"{broken\n"


def test_csv_with_mapping_bad_row_and_quoted_newlines() -> None:
    data = ('id,findings,impression,mrn\n'
            'R1,"Heart normal.\nLungs clear.",Normal.,M1\n'
            'R2,only three,cells\n'
            'R3,,,M3\n'
            'R4,Effusion.,Small effusion.,M4\n')
    m = ColumnMapping.parse(["id=accession", "findings=text", "impression=text"])
    out = list(iter_csv(io.StringIO(data), m, site="s", name="f.csv"))
    assert [no for no, _ in out] == [1, 2, 3, 4]
    ev1, rej2, rej3, ev4 = (x for _, x in out)
    assert isinstance(ev1, ReportEvent)
    assert ev1.text == "FINDINGS: Heart normal.\nLungs clear.\n\nIMPRESSION: Normal."
    assert ev1.patient_id == "M1" and ev1.source_format == "csv"
    assert isinstance(rej2, Rejected) and "3 cells" in rej2.reason
    assert isinstance(rej3, Rejected) and "empty report text" in rej3.reason
    assert isinstance(ev4, ReportEvent) and ev4.accession == "R4"


def test_csv_skip_resumes_after_n_rows() -> None:
    data = "accession,mrn,text\nA,M,one\nB,M,two\nC,M,three\n"
    out = list(iter_csv(io.StringIO(data), ColumnMapping(), site="s", skip=2))
    assert [(no, getattr(x, "accession", None)) for no, x in out] == [(3, "C")]


@pytest.mark.parametrize("spec", ["nofield", "a=unknown_field", "=text"])
def test_bad_mapping_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        ColumnMapping.parse([spec])


def test_order_numbers_by_name_alias_or_mapping() -> None:
    ev = _one({"accession": "A1", "text": "t", "placer_order_number": "PL1", "filler_number": "FL1"})
    assert (ev.placer_order_number, ev.filler_order_number) == ("PL1", "FL1")
    ev = _one({"accession": "A1", "text": "t", "order": "PL2"}, "order=placer_order_number")
    assert (ev.placer_order_number, ev.filler_order_number) == ("PL2", None)
    assert _one({"accession": "A1", "text": "t", "placer_order_number": ""}).placer_order_number is None
