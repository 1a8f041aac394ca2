"""FHIR R4 DiagnosticReport / Bundle -> report events (pure)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from processors.ingest.fhir import iter_fhir_ndjson, parse_fhir
from processors.ingest.model import ParseError, ReportEvent
from processors.ingest.records import Rejected
from streams import serde

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "fhir"


def load(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return obj


def one(obj: dict[str, Any]) -> ReportEvent:
    [ev] = parse_fhir(json.dumps(obj).encode(), site="s1")
    return ev


def test_single_report_with_contained_service_request() -> None:
    ev = one(load("diagnosticreport_final.json"))
    assert ev.accession == "FH-ACC-7781" and ev.status == "final" and ev.source_format == "fhir"
    assert ev.report_id == "dr-ct-head-7781" and ev.patient_id == "pat-5512"
    assert ev.text.startswith("FINDINGS:\nNo intracranial hemorrhage.")  # presentedForm wins over conclusion
    assert ev.procedure_code == "30799-1" and ev.procedure_description == "CT HEAD WITHOUT CONTRAST"
    assert ev.author == "Dr. Priya Raman"
    assert ev.version % 1_000_000 == 250_000  # issued has milliseconds
    serde.decode("report_finalized", serde.encode("report_finalized", ev.to_avro()))


def test_bundle_resolves_patient_encounter_request_and_study() -> None:
    ev = one(load("bundle_final.json"))
    assert (ev.accession, ev.patient_id, ev.patient_class, ev.visit_number) == (
        "FH-ACC-9001", "MRN-9001", "inpatient", "VN-2026-0312")
    assert ev.study_instance_uid == "1.2.826.0.1.3680043.8.498.90010001" and ev.modality == "MR"
    appended = one(load("bundle_appended.json"))
    assert appended.status == "addendum" and appended.version > ev.version
    assert appended.accession == ev.accession and appended.event_id != ev.event_id
    assert "ADDENDUM:" in appended.text


@pytest.mark.parametrize(("fhir_status", "ours"), [
    ("preliminary", "preliminary"), ("partial", "preliminary"), ("final", "final"), ("amended", "corrected"),
    ("corrected", "corrected"), ("appended", "addendum"), ("cancelled", "cancelled"),
    ("entered-in-error", "entered_in_error"),
])
def test_status_mapping(fhir_status: str, ours: str) -> None:
    obj = load("diagnosticreport_final.json")
    obj["status"] = fhir_status
    assert one(obj).status == ours


def test_conclusion_when_no_plain_text_form_and_charset() -> None:
    obj = load("diagnosticreport_final.json")
    obj["presentedForm"] = [{"contentType": "application/pdf", "data": "JVBERi0="}]
    assert one(obj).text == obj["conclusion"]
    obj["presentedForm"] = [{"contentType": "text/plain; charset=iso-8859-1",
                             "data": base64.b64encode("Läsion rechts".encode("latin-1")).decode()}]
    assert one(obj).text == "Läsion rechts"


def test_accession_from_imaging_study_or_report_identifier() -> None:
    obj = load("bundle_final.json")
    dr = obj["entry"][4]["resource"]
    dr.pop("basedOn")
    obj["entry"][3]["resource"]["identifier"].append(
        {"type": {"coding": [{"code": "ACSN"}]}, "value": "FROM-STUDY"})
    assert one(obj).accession == "FROM-STUDY"
    dr["identifier"] = [{"type": {"coding": [{"code": "ACSN"}]}, "value": "ON-REPORT"}]
    assert one(obj).accession == "ON-REPORT"


def test_same_resource_twice_same_event_id() -> None:
    raw = (SAMPLES / "bundle_final.json").read_bytes()
    assert parse_fhir(raw, site="s")[0].event_id == parse_fhir(raw, site="s")[0].event_id


def test_bundle_with_two_reports_gives_two_events() -> None:
    obj = load("bundle_final.json")
    second = copy.deepcopy(obj["entry"][4])
    second["fullUrl"] = "urn:uuid:7c1f1c52-0000-4000-8000-000000000009"
    second["resource"]["id"] = "dr-9002"
    second["resource"]["identifier"] = [{"type": {"coding": [{"code": "ACSN"}]}, "value": "FH-ACC-9002"}]
    obj["entry"].append(second)
    evs = parse_fhir(json.dumps(obj).encode(), site="s")
    assert [e.accession for e in evs] == ["FH-ACC-9001", "FH-ACC-9002"]
    assert [e.source_message_id for e in evs] == ["bundle-9001-a#1", "bundle-9001-a#2"]


@pytest.mark.parametrize(("mutate", "code", "reason"), [
    (lambda o: o.update(status="bogus"), "code-invalid", "unknown report status 'bogus'"),
    (lambda o: o.update(status="unknown"), "business-rule", "carries no report"),
    (lambda o: o.update(contained=[], basedOn=[]), "required", "no accession"),
    (lambda o: (o.pop("presentedForm"), o.pop("conclusion")), "required", "empty report text"),
    (lambda o: o.update(subject={"display": "someone"}), "required", "no patient"),
    (lambda o: o.update(issued="not a time"), "structure", "invalid FHIR DiagnosticReport: issued"),
    (lambda o: o.update(resourceType="Observation"), "not-supported", "expected a DiagnosticReport"),
    (lambda o: o["presentedForm"][0].update(data="%%%notbase64"), "structure", "invalid FHIR"),
])
def test_bad_reports(mutate: Any, code: str, reason: str) -> None:
    obj = load("diagnosticreport_final.json")
    mutate(obj)
    with pytest.raises(ParseError, match=reason) as ei:
        one(obj)
    assert ei.value.code == code


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", "not JSON"), (b"[1]", "JSON object"), (b"\xff\xfe{}", "not UTF-8"),
    (json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}).encode(),
     "no DiagnosticReport"),
])
def test_bad_bodies(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_fhir(raw, site="s")


def test_invalid_sample_reports_problems() -> None:
    with pytest.raises(ParseError, match="invalid FHIR DiagnosticReport") as ei:
        parse_fhir((SAMPLES / "invalid_diagnosticreport.json").read_bytes(), site="s")
    assert "code" in ei.value.reason and ei.value.code == "structure"


def test_ndjson_export() -> None:
    lines = (SAMPLES / "reports.fhir.ndjson").read_bytes().splitlines(keepends=True)
    out = list(iter_fhir_ndjson(lines, site="s", name="x.ndjson"))
    kinds = [(no, type(x).__name__, getattr(x, "status", None)) for no, x in out]
    assert kinds == [(1, "ReportEvent", "final"), (2, "ReportEvent", "final"),
                     (3, "ReportEvent", "cancelled"), (4, "Rejected", None)]
    assert isinstance(out[-1][1], Rejected) and out[-1][1].where == "x.ndjson:4"


def _typed(code: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]},
            "value": value}


def test_placer_and_filler_order_numbers_from_the_service_request_or_the_report() -> None:
    bundle = load("bundle_final.json")
    assert (one(bundle).placer_order_number, one(bundle).filler_order_number) == (None, None)
    sr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    sr["identifier"] += [_typed("PLAC", "ORD-PL-9001"), _typed("FILL", "ORD-FL-9001")]
    ev = one(bundle)
    assert (ev.placer_order_number, ev.filler_order_number, ev.accession) == (
        "ORD-PL-9001", "ORD-FL-9001", "FH-ACC-9001")
    back = serde.decode("report_finalized", serde.encode("report_finalized", ev.to_avro()))
    assert (back["placer_order_number"], back["filler_order_number"]) == ("ORD-PL-9001", "ORD-FL-9001")
    # an identifier on the DiagnosticReport itself wins over its ServiceRequest's
    dr = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    dr["identifier"] = [*dr.get("identifier", []), _typed("FILL", "DR-FL-1")]
    assert one(bundle).filler_order_number == "DR-FL-1" and one(bundle).placer_order_number == "ORD-PL-9001"
