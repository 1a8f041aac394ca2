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
