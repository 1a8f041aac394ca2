"""HL7 v2 ORU^R01 as real senders write it: stray backslashes, raw line breaks, Windows text declared as
8859/1, line-level statuses, linked exams, resends without OBR-22, embedded PDFs, a UTF-8 BOM.

Every test here failed on the parser before session 15 (main 3aa413c); the messages are made up.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from processors.ingest import hl7_escape
from processors.ingest.hl7v2 import HL7Result, iter_hl7_batch, parse_oru
from processors.ingest.model import ParseError, ReportEvent

T0 = datetime(2026, 5, 4, tzinfo=UTC)
PID = "PID|1||880011^^^RIS^MR||Roe^Sam"


def header(msh7: str = "20260504093000", control: str = "M1", charset: str = "") -> str:
    msh = f"MSH|^~\\&|RIS|GEN|RADSTREAM|WH|{msh7}||ORU^R01|{control}|P|2.5"
    return msh + ("|" * 6 + charset if charset else "")


def obr(acc: str = "R100", status: str = "F", t22: str = "20260504091500", t7: str = "20260504080000",
        n: int = 1) -> str:
    fields = ["OBR", str(n), f"P{acc}", acc, "72148^MR L-SPINE^CPT", "", "", t7] + [""] * 14
    return "|".join(fields + [t22, "", "MR", status])


def obx(value: str, status: str = "F", n: int = 1, vtype: str = "TX", t14: str = "") -> str:
    return "|".join(["OBX", str(n), vtype, "RPT", "", value, "", "", "", "", "", status, "", "", t14])


def build(*segs: str, msh: str | None = None, term: str = "\r", enc: str = "utf-8") -> bytes:
    return (term.join([msh or header(), PID, *segs]) + term).encode(enc)


def result(raw: bytes, **kw: object) -> HL7Result:
    return parse_oru(raw, site="s1", received_time=T0, **kw)  # type: ignore[arg-type]


def one(raw: bytes, **kw: object) -> ReportEvent:
    [ev] = result(raw, **kw).events
    return ev


class TestEscapes:
    """A backslash the sender did not escape is text; well-formed sequences still resolve (HL7 2.7)."""

    @pytest.mark.parametrize("text", [
        "Disc protrusion C5\\C6 and L4\\L5, mild.",
        "Protrusion at L5\\S1.",
        "Ratio 2\\3 of normal",
        "Stored under \\\\pacs01\\archive",
        "Trailing backslash 4\\",
        "\\Zebra stripes\\ artefact",
    ])
    def test_stray_escape_characters_are_kept_as_text(self, text: str) -> None:
        assert one(build(obr(), obx(text))).text == text

    def test_good_sequences_resolve_next_to_a_bad_one(self) -> None:
        raw = build(obr(), obx("Level L4\\L5\\.br\\Impression:\\.sp2\\size 5\\F\\6\\.spX\\ end"))
        assert one(raw).text == "Level L4\\L5\nImpression:\n\nsize 5|6\\.spX\\ end"

    def test_formatting_and_charset_switches_drop_the_sequence_keep_the_text(self) -> None:
        raw = build(obr(), obx("\\H\\IMPRESSION\\N\\: \\C2842\\normal\\M2442\\ \\.in+4\\spine\\Z01\\."))
        assert one(raw).text == "IMPRESSION: normal spine."

    def test_repeat_counts_are_capped(self) -> None:
        text = one(build(obr(), obx("a\\.sp999999\\b\\.sk999\\c"))).text
        assert text == "a" + "\n" * hl7_escape.MAX_REPEAT + "b" + " " * hl7_escape.MAX_REPEAT + "c"

    def test_hex_bytes_decode_in_the_message_charset(self) -> None:
        value = "Sch\\XC3A4\\del, Gr\\XC3\\\\XB6\\\\XC3\\\\X9F\\e"  # one sequence, or one per byte
        raw = build(obr(), obx(value), msh=header(charset="UNICODE UTF-8"))
        assert one(raw).text == "Schädel, Größe"

    def test_hex_bytes_that_are_not_utf8_are_read_as_8859_1(self) -> None:
        raw = build(obr(), obx("caf\\XE9\\, \\X93\\quoted\\X94\\"), msh=header(charset="UNICODE UTF-8"))
        assert one(raw).text == "café, “quoted”"


class TestLineBreaksInFields:
    """A raw line break inside OBX-5 is a line of the report unless a known segment ID and the field
    separator follow it (test_hl7_r8_leftovers.py)."""

    REPORT = "FINDINGS: Lungs clear.\nIMPRESSION:\nNAD\nCXR\nMRI\nFollow-up in 6 weeks."

    def test_cr_message_keeps_short_lines_and_the_trailing_fields(self) -> None:
        ev = one(build(obr(status=""), obx(self.REPORT, status="P")))
        assert ev.text == self.REPORT and ev.status == "preliminary"

    def test_lf_only_message_needs_a_known_segment_id(self) -> None:
        raw = build(obr(status=""), obx(self.REPORT, status="P"), "ZDS|1.2.3.44^RIS", term="\n")
        ev = one(raw)
        assert ev.text == self.REPORT and ev.status == "preliminary" and ev.study_instance_uid == "1.2.3.44"


class TestBatchFiles:
    """A batch file splits lines as one message does: a raw line break in OBX-5 stays text."""

    REPORT = "IMPRESSION:\nNAD\nMRI\nNo change."

    @pytest.mark.parametrize("term", ["\r", "\n"])
    def test_short_lines_stay_in_the_report(self, term: str) -> None:
        one_msg = build(obr(status=""), obx(self.REPORT, status="P"), term=term)
        data = b"\xef\xbb\xbfFHS|^~\\&" + term.encode() + one_msg + one_msg.replace(b"R100", b"R101")
        out = [ev for _, ev in iter_hl7_batch(data, site="s1")]
        assert [(e.accession, e.text, e.status) for e in out if isinstance(e, ReportEvent)] == [
            ("R100", self.REPORT, "preliminary"), ("R101", self.REPORT, "preliminary")]


class TestCharsets:
    def test_windows_1252_declared_as_8859_1(self) -> None:
        raw = build(obr(), obx("“Nodule” 5–7 mm … ok"), msh=header(charset="8859/1"), enc="cp1252")
        assert one(raw).text == "“Nodule” 5–7 mm … ok"

    def test_bytes_cp1252_does_not_define_stay_latin_1(self) -> None:
        raw = build(obr(), obx("x"), msh=header(charset="8859/1")).replace(b"|x|", b"|x\x81\xe9|")
        assert one(raw).text == "x\x81é"

    def test_utf8_bom_is_ignored(self) -> None:
        assert one(b"\xef\xbb\xbf" + build(obr(), obx("Kein Befund."))).text == "Kein Befund."

    @pytest.mark.parametrize("raw", [
        ("\r".join([header(charset="UNICODE UTF-16"), PID, obr(), obx("t")]) + "\r").encode("utf-16"),
        ("\r".join([header(), PID, obr(), obx("t")]) + "\r").encode("utf-16-le"),
        build(obr(), obx("t"), msh=header(charset="UNICODE UTF-16")),
    ])
    def test_utf16_is_refused_with_a_clear_reason(self, raw: bytes) -> None:
        with pytest.raises(ParseError, match="UTF-16") as ei:
            result(raw)
        assert ei.value.code == "AR"


class TestLineStatuses:
    """OBX-11 (table 0085) is per line: it never retracts or finalises a whole report on its own."""

    def test_deleted_line_leaves_the_text_and_does_not_retract(self) -> None:
        ev = one(build(obr(status=""), obx("Keep this.", "F", 1), obx("Deleted sentence.", "D", 2)))
        assert ev.status == "corrected" and ev.text == "Keep this."

    def test_deleted_line_leaves_the_text_when_obr25_governs(self) -> None:
        ev = one(build(obr(status="F"), obx("Keep this.", "F", 1), obx("Deleted sentence.", "D", 2)))
        assert ev.status == "final" and ev.text == "Keep this."

    def test_one_preliminary_line_keeps_the_report_preliminary(self) -> None:
        ev = one(build(obr(status=""), obx("Signed part.", "F", 1), obx("Pending part.", "P", 2)))
        assert ev.status == "preliminary"

    def test_one_unobtainable_line_does_not_cancel_the_report(self) -> None:
        ev = one(build(obr(status=""), obx("Body.", "F", 1), obx("Views not obtained.", "X", 2)))
        assert ev.status == "final"

    def test_all_lines_deleted_retracts(self) -> None:
        ev = one(build(obr(status=""), obx("Gone.", "D", 1), obx("Also gone.", "W", 2)))
        assert ev.status == "entered_in_error" and ev.text == ""


class TestLinkedExams:
    """One report for several orders: the OBX lines follow the last OBR."""

    def test_each_accession_gets_the_shared_text(self) -> None:
        # linked by the same ORC-4 placer group under one PID (tests/.../test_hl7v2_linked_exams.py)
        raw = build("ORC|RE|PCT1|CT1|G1", obr("CT1", n=1), "ORC|RE|PCT2|CT2|G1", obr("CT2", n=2),
                    obx("Chest and abdomen: no acute findings."), "ZDS|1.2.840.9^RIS")
        res = result(raw)
        text = "Chest and abdomen: no acute findings."
        assert [(e.accession, e.text) for e in res.events] == [("CT1", text), ("CT2", text)]
        assert res.events[0].event_id != res.events[1].event_id
        assert "OBR #1 shares the text of OBR #2" in res.notes

    def test_a_trailing_order_without_text_refuses_the_message_as_before_linked_exams(self) -> None:
        with pytest.raises(ParseError, match="OBR #2 has no report text"):
            result(build(obr("CT1", n=1), obx("Head: normal."), obr("CT2", n=2)))


class TestVersionsWithoutObr22:
    """Without OBR-22 the version is MSH-7: one kind of time (test_hl7v2_version_order.py)."""

    def test_resend_with_the_same_msh7_and_control_id_is_the_same_event(self) -> None:
        first = one(build(obr(t22=""), obx("No fracture."), msh=header("20260504093000", "A1")))
        again = one(build(obr(t22=""), obx("No fracture."), msh=header("20260504093000", "A1")))
        assert (again.event_id, again.version) == (first.event_id, first.version)

    def test_a_correction_sent_later_supersedes_the_final(self) -> None:
        final = one(build(obr(t22=""), obx("No fracture."), msh=header("20260504093000", "A1")))
        corr = one(build(obr(status="C", t22=""), obx("Subtle radius fracture.", "C"),
                         msh=header("20260504120000", "A2")))
        assert final.version < corr.version

    def test_msh7_not_obx14_orders_two_corrections(self) -> None:
        c1 = one(build(obr(status="C", t22=""), obx("First fix.", "C", t14="20260504110000"),
                       msh=header("20260504100000")))
        c2 = one(build(obr(status="C", t22=""), obx("Second fix.", "C", t14="20260504100000"),
                       msh=header("20260504110000")))
        assert c1.version < c2.version

    def test_a_bad_obx14_does_not_refuse_the_report(self) -> None:
        assert one(build(obr(t22=""), obx("Body.", t14="not a time"))).text == "Body."


class TestAttachments:
    PDF = base64.b64encode(b"%PDF-1.4 " + bytes(range(256)) * 4096).decode()  # about 1.4 MB of base64

    def test_an_embedded_pdf_does_not_count_against_the_size_limit(self) -> None:
        value = f"RIS^Application^PDF^Base64^{self.PDF}"
        ed = obx(value, n=2, vtype="ED")
        res = result(build(obr(), obx("Impression: normal."), ed), max_bytes=64 * 1024)
        [ev] = res.events
        assert ev.text == "Impression: normal."
        assert ev.extra["attachments_not_kept"] == f"ED Application/PDF, {len(value)} bytes"
        assert res.notes == [f"attachment not kept: ED Application/PDF, {len(value)} bytes"]

    def test_attachment_only_says_so_in_the_reason(self) -> None:
        with pytest.raises(ParseError, match="attachment not read: ED Application/PDF"):
            result(build(obr(), obx("RIS^Application^PDF^Base64^JVBERi0=", vtype="ED")))
