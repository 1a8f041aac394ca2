"""Versions without OBR-22 are ordered by one kind of time (MSH-7), never an OBX-19/14 time against an
OBR-7 one. The order cases failed on main 9ab78a1 (a correction or a final ordered below the version it
supersedes; two corrections with one version); the messages are made up.
"""

from __future__ import annotations

from processors.ingest.hl7v2 import parse_oru
from processors.ingest.model import ReportEvent


def event(control: str, msh7: str, status: str, *obx: str, obr22: str = "") -> ReportEvent:
    obr = "|".join(["OBR", "1", "P1", "ACC1", "CTH^CT head", "", "", "20260101100000"] + [""] * 14
                   + [obr22, "", "", status])  # OBR-22, OBR-25
    segs = [f"MSH|^~\\&|RIS|H|RS|H|{msh7}||ORU^R01|{control}|P|2.5", "PID|1||PATA^^^H^MR||Alpha^Ann",
            "ORC|RE|P1|ACC1", obr, *obx]
    return parse_oru(("\r".join(segs) + "\r").encode(), site="s").events[0]


def test_a_correction_without_obx19_is_later_than_a_final_with_it() -> None:
    final = event("C4", "20260101120000", "F", "OBX|1|TX|IMP||No fracture.||||||F||||||||20260101120000")
    corr = event("C5", "20260101130000", "C", "OBX|1|TX|IMP||Subtle fracture.||||||C")
    assert final.version < corr.version


def test_a_final_without_obx19_is_later_than_a_preliminary_with_it() -> None:
    prelim = event("C6", "20260101110000", "P", "OBX|1|TX|IMP||Prelim.||||||P||||||||20260101110000")
    final = event("C7", "20260101120000", "F", "OBX|1|TX|IMP||Final: fracture.||||||F")
    assert prelim.version < final.version


def test_two_corrections_with_only_obr7_get_two_versions_in_order() -> None:
    c1 = event("C2", "20260101130000", "C", "OBX|1|TX|IMP||Subtle fracture of the left radius.||||||C")
    c2 = event("C3", "20260101140000", "C", "OBX|1|TX|IMP||Subtle fracture of the radius and ulna.||||||C")
    assert c1.version < c2.version


def test_two_addenda_get_two_versions_in_order() -> None:
    body, add1 = "OBX|1|TX|IMP||No fracture.||||||F", "OBX|2|TX|ADD||Add 1.||||||B"
    a1 = event("C8", "20260102120000", "F", body, add1)
    a2 = event("C9", "20260103120000", "F", body, add1, "OBX|3|TX|ADD||Add 2.||||||B")
    assert a1.status == a2.status == "addendum" and a1.version < a2.version


def test_an_identical_resend_is_the_same_event() -> None:
    obx = "OBX|1|TX|IMP||No fracture.||||||F||||||||20260101120000"
    first, again = event("C4", "20260101120000", "F", obx), event("C4", "20260101120000", "F", obx)
    assert (first.version, first.event_id) == (again.version, again.event_id)


def test_obr22_still_wins_over_msh7() -> None:
    a = event("C1", "20260105000000", "F", "OBX|1|TX|IMP||No fracture.||||||F", obr22="20260101120000")
    b = event("C2", "20260101000000", "C", "OBX|1|TX|IMP||Fracture.||||||C", obr22="20260101130000")
    assert a.version < b.version
