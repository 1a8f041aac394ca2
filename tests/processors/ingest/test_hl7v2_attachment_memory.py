"""Cutting an embedded PDF out of a large message copies only what is kept. Failed on main 9ab78a1
(a 30.7 MiB frame took 122.7 MiB extra at peak: the message, its segments and the ED field split)."""

from __future__ import annotations

import base64
import os
import tracemalloc

from processors.ingest.hl7v2 import parse_oru, strip_attachments


def test_a_30_mib_pdf_is_cut_without_copies_of_the_frame() -> None:
    pdf = base64.b64encode(os.urandom(23 * 1024 * 1024))
    segs = [b"MSH|^~\\&|RIS|H|RS|H|20260101120000||ORU^R01|C1|P|2.5", b"PID|1||PATA^^^H^MR",
            b"OBR|1|P1|ACC1|CTH^CT head|||20260101100000||||||||||||||||||F",
            b"OBX|1|TX|IMP||No acute finding.||||||F",
            b"OBX|2|ED|PDF||^application^pdf^Base64^" + pdf + b"||||||F"]
    raw = b"\x0b" + b"\r".join(segs) + b"\r\x1c\r"
    tracemalloc.start()
    try:
        result = parse_oru(raw, site="s")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.events[0].text == "No acute finding."  # the size is of the whole OBX-5:
    assert result.notes == [f"attachment not kept: ED application/pdf, {len(pdf) + 24} bytes"]
    assert peak < 4 * 1024 * 1024, f"{peak / 2**20:.1f} MiB extra"


def test_the_cut_message_is_the_message_without_the_value() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\r\nOBX|1|ED|PDF||^text^pdf^Base64^QUJD||||||F\r\n"
    cut, notes = strip_attachments(raw)
    assert cut == b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\r\nOBX|1|ED|PDF||||||||F"
    assert notes == ["ED text/pdf, 21 bytes"]
