"""The segment terminator is the one that ends MSH: an LF-segmented message whose report text holds
Windows CRLF line breaks is read, not refused "no OBR segment". The LF cases failed on main 9ab78a1.
"""

from __future__ import annotations

from datetime import UTC, datetime

from processors.ingest.hl7v2 import parse_oru, split_batch, strip_attachments

T0 = datetime(2026, 5, 4, tzinfo=UTC)
SEGS = ["MSH|^~\\&|RIS|H|RS|H|20260101120000||ORU^R01|C1|P|2.5", "PID|1||PATA^^^H^MR", "ORC|RE|P1|ACC1",
        "OBR|1|P1|ACC1|CTH^CT head|||20260101100000||||||||||||||||||F"]
TEXT = "FINDINGS: Normal.\r\nIMPRESSION: No acute finding."


def text_of(raw: bytes) -> str:
    return parse_oru(raw, site="s", received_time=T0).events[0].text


def test_lf_segments_with_crlf_in_the_text() -> None:
    raw = ("\n".join([*SEGS, f"OBX|1|TX|IMP||{TEXT}||||||F"]) + "\n").encode()
    assert text_of(raw) == "FINDINGS: Normal.\nIMPRESSION: No acute finding."


def test_lf_segments_with_a_bare_cr_in_the_text() -> None:
    raw = ("\n".join([*SEGS, "OBX|1|TX|IMP||Line one.\rLine two.||||||F"]) + "\n").encode()
    assert text_of(raw) == "Line one.\nLine two."


def test_cr_segments_still_keep_a_bare_lf_in_the_text() -> None:
    raw = ("\r".join([*SEGS, "OBX|1|TX|IMP||Line one.\nLine two.||||||F"]) + "\r").encode()
    assert text_of(raw) == "Line one.\nLine two."


def test_crlf_segments() -> None:
    raw = ("\r\n".join([*SEGS, "OBX|1|TX|IMP||Body.||||||F"]) + "\r\n").encode()
    assert text_of(raw) == "Body."


def test_an_attachment_is_cut_in_an_lf_message_with_crlf_text() -> None:
    segs = [*SEGS, f"OBX|1|TX|IMP||{TEXT}||||||F", "OBX|2|ED|PDF||^Application^PDF^Base64^QUJD||||||F"]
    raw = ("\n".join(segs) + "\n").encode()
    cut, notes = strip_attachments(raw)
    assert b"QUJD" not in cut and len(notes) == 1
    assert text_of(raw) == "FINDINGS: Normal.\nIMPRESSION: No acute finding."


def test_an_lf_batch_with_crlf_text_is_two_messages() -> None:
    one = "\n".join([*SEGS, f"OBX|1|TX|IMP||{TEXT}||||||F"])
    data = (one + "\n" + one.replace("C1", "C2") + "\n").encode()
    assert len(split_batch(data)) == 2
