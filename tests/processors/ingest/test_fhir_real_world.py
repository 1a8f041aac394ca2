"""FHIR DiagnosticReports as real senders write them (pure): reports with nothing to store yet, Bundles of
every type holding one, report text only as HTML or in Observations, a PDF-only report."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from processors.ingest.fhir import iter_fhir_ndjson, parse_fhir, parse_fhir_result
from processors.ingest.model import ParseError
from processors.ingest.records import Rejected

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "fhir"


def load(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return obj


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode()


def bundle(kind: str, *reports: dict[str, Any]) -> dict[str, Any]:
    """The sample Bundle (Patient, Encounter, ServiceRequest, ImagingStudy, report) of type ``kind``, its
    report replaced by ``reports``; each gets its own accession on the report."""
    obj = load("bundle_final.json")
    obj["type"] = kind
    template = obj["entry"].pop()
    for i, changes in enumerate(reports, 1):
        entry = copy.deepcopy(template)
        entry["fullUrl"] = f"urn:uuid:7c1f1c52-0000-4000-8000-0000000001{i:02d}"
        dr = entry["resource"]
        dr["id"] = f"dr{i}"
        dr["identifier"] = [{"type": {"coding": [{"code": "ACSN"}]}, "value": f"ACC{i}"}]
        dr.update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            dr.pop(key)
        obj["entry"].append(entry)
    if kind in ("batch", "transaction"):
        for entry in obj["entry"]:
            entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    return obj


def report(**changes: Any) -> dict[str, Any]:
    obj = load("diagnosticreport_final.json")
    obj.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        obj.pop(key)
    return obj


def text_of(obj: dict[str, Any]) -> str:
    [ev] = parse_fhir(json.dumps(obj).encode(), site="s")
    return ev.text


# --- statuses with nothing to store yet ---------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {"status": "registered", "presentedForm": None, "conclusion": None},
    {"status": "registered"},  # FHIR: registered means nothing is available; any text is not a report yet
    {"status": "partial", "presentedForm": None, "conclusion": None},
])
def test_report_with_nothing_yet_is_skipped_with_a_note(changes: dict[str, Any]) -> None:
    result = parse_fhir_result(json.dumps(report(**changes)).encode(), site="s")
    assert result.events == [] and result.refused == []
    [note] = result.skipped
    assert note.startswith("DiagnosticReport dr-ct-head-7781") and changes["status"] in note


def test_partial_with_text_is_a_preliminary_report() -> None:
    [ev] = parse_fhir(json.dumps(report(status="partial")).encode(), site="s")
    assert ev.status == "preliminary" and ev.text.startswith("FINDINGS:")


@pytest.mark.parametrize("kind", ["transaction", "batch", "collection"])
def test_bundle_with_a_registered_report_keeps_its_final_report(kind: str) -> None:
    obj = bundle(kind, {}, {"status": "registered", "presentedForm": None})
    result = parse_fhir_result(json.dumps(obj).encode(), site="s")
    assert [(e.accession, e.status) for e in result.events] == [("ACC1", "final")]
    [note] = result.skipped
    assert "dr2 (ACC2)" in note and "registered" in note
    assert result.refused == []


def test_batch_refuses_a_bad_report_alone_transaction_refuses_the_whole() -> None:
    bad = {"status": "final", "presentedForm": None}  # no text at all
    result = parse_fhir_result(json.dumps(bundle("batch", {}, bad, {})).encode(), site="s")
    assert [e.accession for e in result.events] == ["ACC1", "ACC3"]
    [refused] = result.refused
    assert refused.where == "Bundle.entry[5]" and "dr2: empty report text" in refused.error.reason
    for kind in ("transaction", "collection"):
        with pytest.raises(ParseError, match="dr2: empty report text"):
            parse_fhir_result(json.dumps(bundle(kind, {}, bad, {})).encode(), site="s")


def test_unknown_status_is_still_refused() -> None:
    with pytest.raises(ParseError, match="carries no report") as ei:
        parse_fhir_result(json.dumps(report(status="unknown")).encode(), site="s")
    assert ei.value.code == "business-rule"


def test_ndjson_batch_line_gives_its_good_reports_and_a_reject_per_bad_one() -> None:
    line = json.dumps(bundle("batch", {}, {"presentedForm": None}, {"status": "registered"})).encode()
    out = list(iter_fhir_ndjson([line], site="s", name="x.ndjson"))
    assert [type(x).__name__ for _, x in out] == ["ReportEvent", "Rejected"]
    rej = out[1][1]
    assert isinstance(rej, Rejected) and rej.reason.startswith("Bundle.entry[5]: DiagnosticReport dr2")


# --- where the text is --------------------------------------------------------------------------------

def test_text_html_presented_form_becomes_text_with_its_line_breaks() -> None:
    html = ("<html><head><style>p {margin: 0}</style></head><body><h2>FINDINGS</h2>"
            "<p>Lungs are\n    clear.&nbsp;No effusion.</p><p>Heart size normal.<br/>Aorta normal.</p>"
            "<h2>IMPRESSION</h2><ol><li>No acute disease.</li><li>Stable nodule, 4&nbsp;mm.</li></ol>"
            "</body></html>")
    form = {"contentType": "text/html; charset=utf-8", "data": b64(html)}
    obj = report(conclusion=None, presentedForm=[form])
    assert text_of(obj) == ("FINDINGS\nLungs are clear. No effusion.\nHeart size normal.\nAorta normal.\n"
                            "IMPRESSION\n1. No acute disease.\n2. Stable nodule, 4 mm.")  # <ol> numbered


def test_text_plain_wins_over_html_and_pre_keeps_its_lines() -> None:
    plain = {"contentType": "text/plain", "data": b64("Plain report.")}
    html = {"contentType": "text/html", "data": b64("<p>HTML report.</p>")}
    assert text_of(report(presentedForm=[html, plain])) == "Plain report."
    pre = {"contentType": "text/html",
           "data": b64("<pre>FINDINGS:\nLungs clear.\n\nIMPRESSION:\nNormal.</pre>")}
    assert text_of(report(presentedForm=[pre])) == "FINDINGS:\nLungs clear.\nIMPRESSION:\nNormal."


def observation(oid: str, value: str, code: str = "") -> dict[str, Any]:
    # the text is "<code.text>: <value>" (test_fhir_text_sources.py); no code.text: the value alone
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"text": code} if code else {"coding": [{"system": "http://loinc.org", "code": "1"}]},
            "valueString": value}


def test_contained_observations_give_the_text_in_result_order() -> None:
    obj = report(presentedForm=None, conclusion=None)
    obj["contained"] += [observation("imp", "IMPRESSION: No acute disease."),
                         observation("find", "FINDINGS: Lungs clear.\r\nNo effusion.")]
    obj["result"] = [{"reference": "#find"}, {"reference": "#imp"}]
    assert text_of(obj) == "FINDINGS: Lungs clear.\nNo effusion.\n\nIMPRESSION: No acute disease."
    # a conclusion one of them holds is not repeated; one none of them holds is added after them
    obj["conclusion"] = "No  acute disease."
    assert text_of(obj).endswith("IMPRESSION: No acute disease.")
    obj["conclusion"] = "Normal chest."
    assert text_of(obj).endswith("IMPRESSION: No acute disease.\n\nNormal chest.")


def test_bundle_observations_give_the_text() -> None:
    obj = bundle("collection", {"presentedForm": None, "result": [{"reference": "Observation/o1"}]})
    obj["entry"].insert(0, {"fullUrl": "urn:uuid:7c1f1c52-0000-4000-8000-000000000201",
                            "resource": observation("o1", "Normal.", "Brain MRI")})
    assert text_of(obj) == "Brain MRI: Normal."


def test_pdf_only_report_is_refused_as_not_supported() -> None:
    obj = report(conclusion=None, presentedForm=[{"contentType": "application/pdf", "data": "JVBERi0xLjQK"}])
    with pytest.raises(ParseError, match=r"report text only as application/pdf: not supported") as ei:
        parse_fhir(json.dumps(obj).encode(), site="s")
    assert ei.value.code == "not-supported"
    by_url = report(conclusion=None, presentedForm=[{"contentType": "text/plain", "url": "https://ris/r/1.txt"}])
    with pytest.raises(ParseError, match=r"report text only as text/plain by url: not supported"):
        parse_fhir(json.dumps(by_url).encode(), site="s")
    # a retraction needs no text, PDF or not
    [ev] = parse_fhir(json.dumps({**obj, "status": "cancelled"}).encode(), site="s")
    assert ev.status == "cancelled"


def test_conclusion_is_not_added_to_a_plain_text_presented_form() -> None:
    obj = report()
    text = text_of(obj)
    assert text.startswith("FINDINGS:") and obj["conclusion"] not in text
