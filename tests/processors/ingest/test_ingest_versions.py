"""Whole-report versions: the original report plus every addendum, in order; a correction replaces the
report. Built from real HL7 and FHIR messages through the parsers."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processors.ingest.fhir import parse_fhir
from processors.ingest.hl7v2 import parse_oru
from processors.ingest.model import ReportEvent
from processors.ingest.versions import History, add_version, whole_text

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "fhir"
T0 = datetime(2026, 3, 10, tzinfo=UTC)
PID = "PID|1||12345^^^H^MR||Doe^Jane"
ORIGINAL = "FINDINGS: 2 cm hypodense lesion in the right hepatic lobe.\nIMPRESSION: Liver lesion."


def hl7(status: str, t22: str, *obx: tuple[str, str]) -> ReportEvent:
    fields = ["OBR", "1", "P1", "A1", "74177^CT ABD^CPT", "", "", "20260301100000"] + [""] * 10
    fields += ["", "", "", "", t22, "", "CT", status]
    lines = [f"OBX|{i + 1}|TX|GDT||{text}||||||{st}" for i, (text, st) in enumerate(obx)]
    raw = "\r".join(["MSH|^~\\&|RIS|HOSP|RADSTREAM|RES|20260301120000||ORU^R01|CTL1|P|2.5", PID,
                     "|".join(fields), *lines]) + "\r"
    [ev] = parse_oru(raw.encode(), site="s1", received_time=T0).events
    return ev


def fold(events: list[ReportEvent]) -> tuple[History, dict[int, str]]:
    """Apply the events in arrival order, as the NLP agent does; the whole text of each on arrival."""
    history: History = []
    out = {}
    for ev in events:
        history = add_version(history, ev.version, ev.status, ev.text)
        out[ev.version] = whole_text(history, ev.version)
    return history, out


def test_an_hl7_addendum_sent_alone_is_appended_to_the_report() -> None:
    final = hl7("F", "20260301110000", *[(ln, "F") for ln in ORIGINAL.splitlines()])
    addendum = hl7("F", "20260302090000", ("ADDENDUM: the lesion is a simple cyst on ultrasound.", "B"))
    assert addendum.status == "addendum" and "hepatic" not in addendum.text  # the message alone
    _, texts = fold([final, addendum])
    assert texts[addendum.version] == ORIGINAL + "\n\nADDENDUM: the lesion is a simple cyst on ultrasound."
    assert texts[final.version] == ORIGINAL


def test_an_hl7_correction_with_the_whole_text_and_an_addendum_header_is_taken_whole() -> None:
    final = hl7("F", "20260301110000", *[(ln, "F") for ln in ORIGINAL.splitlines()])
    whole = [*ORIGINAL.splitlines(), "ADDENDUM: compared with the prior MRI, stable."]
    addendum = hl7("C", "20260302090000", *[(ln, "C") for ln in whole])
    assert addendum.status == "addendum"
    _, texts = fold([final, addendum])
    assert texts[addendum.version] == "\n".join(whole)  # not the report twice


def test_addenda_stay_in_order_and_a_correction_replaces_the_report() -> None:
    final = hl7("F", "20260301110000", *[(ln, "F") for ln in ORIGINAL.splitlines()])
    add1 = hl7("F", "20260302090000", ("ADDENDUM 1: cyst on ultrasound.", "B"))
    add2 = hl7("F", "20260303090000", ("ADDENDUM 2: no follow-up needed.", "B"))
    corrected = hl7("C", "20260304090000", ("FINDINGS: simple hepatic cyst.", "C"))
    add3 = hl7("F", "20260305090000", ("ADDENDUM 3: discussed with Dr Lee.", "B"))
    history, texts = fold([final, add1, add2, add2, corrected, add3])  # add2 delivered twice
    assert texts[add2.version] == (ORIGINAL + "\n\nADDENDUM 1: cyst on ultrasound."
                                   "\n\nADDENDUM 2: no follow-up needed.")
    assert texts[corrected.version] == "FINDINGS: simple hepatic cyst."
    assert texts[add3.version] == "FINDINGS: simple hepatic cyst.\n\nADDENDUM 3: discussed with Dr Lee."
    assert [e[0] for e in history] == [corrected.version, add3.version]  # older versions are not kept


def test_a_retraction_adds_no_text_and_a_later_addendum_still_finds_its_report() -> None:
    history = add_version([], 1, "final", ORIGINAL)
    history = add_version(history, 2, "cancelled", "")  # the views drop cancelled reports
    history = add_version(history, 3, "addendum", "ADDENDUM: reinstated.")
    assert whole_text(history, 3) == ORIGINAL + "\n\nADDENDUM: reinstated."


def _fhir(status: str, issued: str, *texts: str) -> ReportEvent:
    obj: dict[str, Any] = json.loads((SAMPLES / "diagnosticreport_final.json").read_text())
    obj = copy.deepcopy(obj)
    obj["status"], obj["issued"] = status, issued
    obj["presentedForm"] = [{"contentType": "text/plain; charset=utf-8",
                             "data": base64.b64encode(t.encode()).decode()} for t in texts]
    [ev] = parse_fhir(json.dumps(obj).encode(), site="s1")
    return ev


def test_an_amended_fhir_report_with_an_appended_presented_form_is_the_whole_report() -> None:
    final = _fhir("final", "2026-03-10T09:40:12Z", ORIGINAL)
    amended = _fhir("amended", "2026-03-11T08:00:00Z", ORIGINAL, "ADDENDUM: simple cyst on ultrasound.")
    assert amended.text == ORIGINAL + "\n\nADDENDUM: simple cyst on ultrasound."
    _, texts = fold([final, amended])
    assert texts[amended.version] == amended.text
    # an appended report that carries only the new attachment still gets its report
    appended = _fhir("appended", "2026-03-12T08:00:00Z", "ADDENDUM 2: stable.")
    _, texts = fold([final, amended, appended])
    assert texts[appended.version] == amended.text + "\n\nADDENDUM 2: stable."
