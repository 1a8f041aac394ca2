"""FHIR report text from result Observations and from HTML keeps what it says: which organ a line is
about, repeated values of different organs, exponents, struck-out words, list numbers.

Each test failed on main 9ab78a1 (the messages are made up).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from processors.ingest.fhir import html_text, parse_fhir


def observation(oid: str, value: str, code: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": code, "valueString": value}


def report(*observations: dict[str, Any], refs: list[str] | None = None) -> dict[str, Any]:
    return {"resourceType": "DiagnosticReport", "id": "dr1", "status": "final",
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                 "code": "ACSN"}]}, "value": "ACC1"}],
            "code": {"text": "US abdomen"}, "subject": {"reference": "Patient/p1"},
            "issued": "2026-01-01T10:00:00Z", "contained": list(observations),
            "result": [{"reference": f"#{r}"} for r in (refs or [o["id"] for o in observations])]}


def text_of(obj: dict[str, Any]) -> str:
    return parse_fhir(json.dumps(obj).encode(), site="s")[0].text


def test_each_observation_line_names_its_code_and_equal_values_are_kept() -> None:
    obj = report(observation("o1", "Normal.", {"text": "Right kidney"}),
                 observation("o2", "Normal.", {"text": "Left kidney"}),
                 observation("o3", "5 mm cyst.", {"coding": [{"system": "http://snomed.info/sct",
                                                               "code": "10200004", "display": "Liver"}]}))
    assert text_of(obj) == "Right kidney: Normal.\n\nLeft kidney: Normal.\n\nLiver: 5 mm cyst."


def test_only_a_repeated_code_and_value_is_dropped() -> None:
    obj = report(observation("o1", "Normal.", {"text": "Spleen"}), refs=["o1", "o1"])
    assert text_of(obj) == "Spleen: Normal."


def test_a_value_that_already_names_its_code_is_not_labelled_twice() -> None:
    obj = report(observation("o1", "Impression: no acute finding.", {"text": "Impression"}))
    assert text_of(obj) == "Impression: no acute finding."


@pytest.mark.parametrize(("html", "text"), [
    ("Platelets 150 x 10<sup>9</sup>/L", "Platelets 150 x 10^9/L"),
    ("SpO<sub>2</sub> 95%", "SpO2 95%"),
    ("No <del>fracture</del><ins>dislocation</ins>.", "No dislocation."),
    ("No <s>acute</s> <strike>old</strike> fracture.", "No fracture."),
    # <ins> is inline, as a browser shows it: "hemor<ins>r</ins>hage" is one word (test_fhir_narrative_struck)
    ("Mild <ins>effusion</ins>.", "Mild effusion."),
    ("<ol><li>Effusion</li><li>Atelectasis</li></ol>", "1. Effusion\n2. Atelectasis"),
    ('<ol start="3"><li>Nodule</li></ol><ul><li>Note</li></ul>', "3. Nodule\nNote"),
    ("<ol><li>A<ul><li>a</li></ul></li><li>B</li></ol>", "1. A\na\n2. B"),
])
def test_html_keeps_what_the_text_says(html: str, text: str) -> None:
    assert html_text(html) == text
