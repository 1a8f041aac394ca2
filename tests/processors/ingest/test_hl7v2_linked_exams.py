"""Linked exams share report text only when the OBRs are demonstrably one order set of one patient.

Each case here failed on main 9ab78a1 (text shared by position: another patient's, a cancelled exam's,
an unrelated procedure's); the messages are made up.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from processors.ingest.hl7v2 import HL7Result, parse_oru
from processors.ingest.model import ParseError

T0 = datetime(2026, 5, 4, tzinfo=UTC)
MSH = "MSH|^~\\&|RIS|H|RS|H|20260504120000||ORU^R01|C1|P|2.5"
PID_A = "PID|1||PATA^^^H^MR||Alpha^Ann"
PID_B = "PID|2||PATB^^^H^MR||Beta^Bob"


def orc(placer: str, filler: str, group: str = "", control: str = "RE") -> str:
    return f"ORC|{control}|{placer}|{filler}|{group}"


def obr(n: int, acc: str, proc: str, status: str = "F", parent: str = "") -> str:
    fields = ["OBR", str(n), f"P{acc}", acc, proc, "", "", "20260504100000"] + [""] * 18
    fields[25] = status
    if parent:
        fields += [""] * 3 + [parent]  # OBR-29
    return "|".join(fields)


def obx(text: str) -> str:
    return f"OBX|1|TX|IMP||{text}||||||F"


def parse(*segs: str) -> HL7Result:
    return parse_oru(("\r".join([MSH, *segs]) + "\r").encode(), site="s", received_time=T0)


def test_never_across_patients() -> None:
    with pytest.raises(ParseError) as err:
        parse(PID_A, orc("P1", "ACC1", "G1"), obr(1, "ACC1", "CTH^CT head"),
              PID_B, orc("P2", "ACC2", "G1"), obr(2, "ACC2", "CXR^Chest"), obx("Beta: large pneumothorax."))
    assert err.value.code == "AE" and err.value.reason.startswith("OBR #1 has no report text")


def test_a_cancelled_exam_keeps_no_text() -> None:
    res = parse(PID_A, orc("P1", "ACC1", "G1", "CA"), obr(1, "ACC1", "MRB^MRI brain", "X"),
                orc("P2", "ACC2", "G1"), obr(2, "ACC2", "CXR^Chest"), obx("Chest: no pneumothorax."))
    got = {e.accession: (e.status, e.text) for e in res.events}
    assert got == {"ACC1": ("cancelled", ""), "ACC2": ("final", "Chest: no pneumothorax.")}
    assert res.notes == []


def test_an_unlinked_procedure_is_refused_not_given_other_text() -> None:
    with pytest.raises(ParseError) as err:
        parse(PID_A, orc("P1", "ACC1"), obr(1, "ACC1", "USL^US left knee"),
              orc("P2", "ACC2"), obr(2, "ACC2", "CXR^Chest"), obx("Chest: no pneumothorax."))
    assert err.value.code == "AE" and "OBR #1 has no report text" in err.value.reason


def test_same_patient_same_placer_group_shares() -> None:
    text = "Chest and abdomen: no acute findings."
    res = parse(PID_A, orc("P1", "CT1", "G7^RIS"), obr(1, "CT1", "CTC^CT chest"),
                orc("P2", "CT2", "G7^RIS"), obr(2, "CT2", "CTA^CT abdomen"), obx(text))
    assert [(e.accession, e.text) for e in res.events] == [("CT1", text), ("CT2", text)]
    assert "OBR #1 shares the text of OBR #2" in res.notes


def test_a_placer_group_of_another_namespace_is_not_the_same_group() -> None:
    with pytest.raises(ParseError):
        parse(PID_A, orc("P1", "CT1", "G7^RIS"), obr(1, "CT1", "CTC^CT chest"),
              orc("P2", "CT2", "G7^OTHER"), obr(2, "CT2", "CTA^CT abdomen"), obx("Body."))


def test_a_child_order_naming_its_parent_in_obr29_shares() -> None:
    res = parse(PID_A, orc("P1", "CT1"), obr(1, "CT1", "CTC^CT chest", parent="P2^CT2"),
                orc("P2", "CT2"), obr(2, "CT2", "CTA^CT abdomen"), obx("Body."))
    assert [e.text for e in res.events] == ["Body.", "Body."]


def test_same_group_across_a_second_pid_segment_of_the_same_patient_is_not_shared() -> None:
    # the same identifiers under a new PID segment: a new patient group, never linked
    with pytest.raises(ParseError):
        parse(PID_A, orc("P1", "CT1", "G7"), obr(1, "CT1", "CTC^CT chest"),
              PID_A, orc("P2", "CT2", "G7"), obr(2, "CT2", "CTA^CT abdomen"), obx("Body."))


def test_a_no_report_status_is_skipped_not_given_text() -> None:
    res = parse(PID_A, orc("P1", "CT1", "G7"), obr(1, "CT1", "CTC^CT chest", "O"),
                orc("P2", "CT2", "G7"), obr(2, "CT2", "CTA^CT abdomen"), obx("Body."))
    assert [e.accession for e in res.events] == ["CT2"] and res.skipped[0].startswith("OBR #1")
