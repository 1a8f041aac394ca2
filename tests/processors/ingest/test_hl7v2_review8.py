"""Review 8 defects, at parse level. Each test failed on main cecac05."""

from __future__ import annotations

import pytest

from processors.ingest.hl7v2 import parse_oru
from processors.ingest.model import ParseError

MSH = "MSH|^~\\&|RIS|H|RS|H|20260101120000||ORU^R01|C1|P|2.5"


def _obr(n: int, acc: str, status: str = "F") -> str:
    fields = ["OBR", str(n), "P" + acc, acc, "MRK^MR knee"] + [""] * 25
    fields[25] = status
    return "|".join(fields)


@pytest.mark.parametrize("obx_status", ["X", "F"])
def test_a_cancelled_obr_never_gives_its_text_to_a_linked_order(obx_status: str) -> None:
    segs = [MSH, "PID|1||PQ7^^^H^MR", "ORC|RE|PK1|K1|GRP9", _obr(1, "K1"), "ORC|RE|PK2|K2|GRP9",
            _obr(2, "K2", "X"), f"OBX|1|TX|IMP||Order withdrawn by ward.||||||{obx_status}"]
    with pytest.raises(ParseError) as exc:
        parse_oru(("\r".join(segs) + "\r").encode(), site="s")
    assert exc.value.code == "AE"
    assert "OBR #1 has no report text" in exc.value.reason


_ED = b"OBX|2|ED|PDF||^application^pdf^Base64^" + b"QUJD" * 40


def test_a_bare_cr_after_an_ed_value_in_an_lf_message_keeps_the_next_obx() -> None:
    segs = [MSH.encode(), b"PID|1||PQ7^^^H^MR", _obr(1, "K1").encode(), b"OBX|1|TX|FND||Effusion.||||||F"]
    raw = b"\n".join(segs) + b"\n" + _ED + b"\rOBX|3|TX|IMP||Aspirate.||||||F\n"
    result = parse_oru(raw, site="s")
    assert result.events[0].text == "Effusion.\nAspirate."
    assert result.notes == ["attachment not kept: ED application/pdf, 184 bytes"]


def test_lf_cr_segment_ends_still_cut_the_attachment() -> None:
    segs = [MSH.encode(), b"PID|1||PQ7^^^H^MR", _obr(1, "K1").encode(), _ED,
            b"OBX|3|TX|IMP||Aspirate.||||||F"]
    result = parse_oru(b"\n\r".join(segs) + b"\n\r", site="s")
    assert result.events[0].text == "Aspirate."
    assert result.notes == ["attachment not kept: ED application/pdf, 184 bytes"]


def _one(msh7: str, ctrl: str, obr25: str, obx: list[tuple[str, str]]) -> bytes:
    segs = [f"MSH|^~\\&|RIS|H|RS|H|{msh7}||ORU^R01|{ctrl}|P|2.5", "PID|1||PQ7^^^H^MR", "ORC|RE|PK1|K1",
            "OBR|1|PK1|K1|MRK^MR knee|||20260101090000||||||||||||||||||" + obr25]
    segs += [f"OBX|{i}|TX|IMP||{text}||||||{st}" for i, (text, st) in enumerate(obx, 1)]
    return ("\r".join(segs) + "\r").encode()


@pytest.mark.parametrize("msh7", ["202601011430", "20260101143000"])
def test_a_final_and_its_addendum_or_correction_with_one_msh7_get_ordered_versions(msh7: str) -> None:
    final = parse_oru(_one(msh7, "M1", "F", [("Meniscal tear.", "F")]), site="s").events[0]
    addendum = parse_oru(_one(msh7, "M2", "F", [("Addendum: also a Baker cyst.", "B")]), site="s").events[0]
    corrected = parse_oru(_one(msh7, "M3", "C", [("No meniscal tear.", "C")]), site="s").events[0]
    assert (final.status, addendum.status, corrected.status) == ("final", "addendum", "corrected")
    assert final.version < corrected.version < addendum.version
    resend = parse_oru(_one(msh7, "M1", "F", [("Meniscal tear.", "F")]), site="s").events[0]
    assert (resend.version, resend.event_id) == (final.version, final.event_id)


def test_two_obrs_of_one_accession_with_one_status_and_no_obr22_are_refused() -> None:
    obr = "OBR|{n}|PK1|K1|MRK^MR knee|||20260101090000||||||||||||||||||F"
    segs = [MSH, "PID|1||PQ7^^^H^MR", "ORC|RE|PK1|K1", obr.format(n=1), "OBX|1|TX|IMP||Meniscal tear.||||||F",
            "ORC|RE|PK1|K1", obr.format(n=2), "OBX|1|TX|IMP||No meniscal tear.||||||F"]
    with pytest.raises(ParseError) as exc:
        parse_oru(("\r".join(segs) + "\r").encode(), site="s")
    assert exc.value.code == "AE"
    assert "same time" in exc.value.reason


def test_fhir_html_an_unclosed_strike_out_is_refused_not_read_to_its_block_end() -> None:
    # s16: the rest of its block was dropped without an error ("Cartilage"); now refused with the reason
    # (more cases in test_fhir_narrative_struck.py)
    from processors.ingest.fhir import html_text

    html = ("<p>Knee: <del>no</del> effusion.</p><p>Cartilage <s>intact</p><div>Impression: tear.</div>"
            "<ul><li><strike>old</li><li>Baker cyst.</li></ul><del><p>gone</p><p>too</p></del><p>End.</p>")
    with pytest.raises(ParseError, match=r"<s> at line 1, column 50, struck-out <strike> at line 1, col"):
        html_text(html)
    closed = html.replace("intact</p>", "intact</s></p>").replace("old</li>", "old</strike></li>")
    assert html_text(closed) == "Knee: effusion.\nCartilage\nImpression: tear.\nBaker cyst.\nEnd."


def test_fhir_observation_quantity_and_codeable_concept_values_are_written() -> None:
    import json

    from processors.ingest.fhir import parse_fhir

    acsn = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
    obs = [{"resourceType": "Observation", "id": "a", "status": "final", "code": {"text": "Findings"},
            "valueString": "Cyst in the left kidney."},
           {"resourceType": "Observation", "id": "b", "status": "final", "code": {"text": "Cyst size"},
            "valueQuantity": {"value": 2.4, "unit": "cm"}},
           {"resourceType": "Observation", "id": "c", "status": "final",
            "code": {"coding": [{"display": "Bosniak class"}]},
            "valueCodeableConcept": {"coding": [{"code": "II", "display": "Bosniak II"}]}}]
    dr = {"resourceType": "DiagnosticReport", "id": "d1", "status": "final", "code": {"text": "CT abdomen"},
          "subject": {"reference": "Patient/p9"}, "issued": "2026-01-01T12:00:00Z",
          "identifier": [{"type": acsn, "system": "urn:acc", "value": "K7"}],
          "contained": obs, "result": [{"reference": "#a"}, {"reference": "#b"}, {"reference": "#c"}]}
    event = parse_fhir(json.dumps(dr).encode(), site="s")[0]
    assert event.text == ("Findings: Cyst in the left kidney.\n\nCyst size: 2.4 cm\n\n"
                          "Bosniak class: Bosniak II")
