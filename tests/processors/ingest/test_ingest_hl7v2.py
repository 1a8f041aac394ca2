"""HL7 v2 ORU^R01 -> report events (pure), ACKs, batch files, and property-based robustness."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.ingest.hl7v2 import (
    build_ack,
    iter_hl7_batch,
    parse_ack,
    parse_oru,
    sniff_header,
    tables,
)
from processors.ingest.model import NoReport, ParseError, ReportEvent
from processors.ingest.records import Rejected
from streams import serde

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "hl7"
T0 = datetime(2026, 3, 10, tzinfo=UTC)


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def parse(raw: bytes, **kw: object) -> list[ReportEvent]:
    return parse_oru(raw, site="s1", received_time=T0, **kw).events  # type: ignore[arg-type]


def msg(*segments: str, charset: str = "", enc: str = "utf-8") -> bytes:
    msh = "MSH|^~\\&|RIS|HOSP|RADSTREAM|RES|20260301120000||ORU^R01|CTL1|P|2.5"
    if charset:
        msh += "|" * 6 + charset
    return ("\r".join([msh, *segments]) + "\r").encode(enc)


PID = "PID|1||12345^^^H^MR||Doe^Jane"


def obr(status: str = "F", acc: str = "A1", t22: str = "20260301110000", obr18: str = "") -> str:
    fields = ["OBR", "1", "P1", acc, "71046^XR CHEST 2V^CPT", "", "", "20260301100000"] + [""] * 10
    fields += [obr18, "", "", "", t22, "", "CR", status]
    return "|".join(fields)


def test_vendor_a_obx_per_line() -> None:
    [ev] = parse(sample("vendor_a_obx_per_line.hl7"))
    assert ev.accession == "ACC20260302001" and ev.status == "final" and ev.source_format == "hl7v2"
    assert ev.patient_id == "7301445"  # the MR identifier, not the SSN repetition
    assert ev.patient_class == "emergency" and ev.author == "Thomas Nguyen"
    assert ev.procedure_code == "71046" and ev.procedure_description == "XR CHEST 2 VIEWS"
    assert ev.text.splitlines()[0] == "EXAM: XR CHEST PA AND LATERAL"
    assert ev.text.splitlines()[-1] == "IMPRESSION: Right lower lobe pneumonia."
    assert len(ev.text.splitlines()) == 5
    assert ev.observation_time == datetime(2026, 3, 2, 8, 15, tzinfo=UTC)
    assert ev.version == int(datetime(2026, 3, 2, 9, 12, tzinfo=UTC).timestamp()) * 1_000_000
    assert ev.source_message_id == "A000123"
    serde.decode("report_finalized", serde.encode("report_finalized", ev.to_avro()))


def test_vendor_b_ft_blob_latin1_escapes_zds_and_obr18() -> None:
    [ev] = parse(sample("vendor_b_ft_blob_latin1.hl7"), accession_field="OBR-18")
    assert ev.accession == "RIS20260303-0042" and ev.report_id == "F9981"
    assert ev.author == "Anna Schäfer"  # MSH-18 8859/1 decoded
    assert ev.study_instance_uid == "1.2.826.0.1.3680043.8.498.10200301"
    assert ev.modality == "CT" and ev.patient_class == "inpatient" and ev.visit_number == "4455-2026"
    lines = ev.text.split("\n")
    assert lines[0] == "FINDINGS:" and "" in lines  # \.br\ -> line breaks, blank line kept
    assert "nodule in the left upper lobe & adjacent" in ev.text  # \T\
    assert "ratio 18|14 mm lesions^nodes" in ev.text  # \F\ and \S\
    # +0100 in MSH-7; OBR-22 has no zone: taken as UTC by default
    assert ev.status_time == datetime(2026, 3, 3, 10, 9, tzinfo=UTC)


def test_vendor_c_lifecycle_versions_increase_and_ids_differ() -> None:
    evs = [parse(sample(f"vendor_c_{n}.hl7"))[0] for n in ("1_preliminary", "2_final", "3_corrected")]
    assert [e.status for e in evs] == ["preliminary", "final", "corrected"]
    assert evs[0].version < evs[1].version < evs[2].version
    assert len({e.event_id for e in evs}) == 3
    assert {e.accession for e in evs} == {"ACC-C-5001"}
    assert "greater tuberosity" in evs[2].text


def test_addendum_as_b_lines_with_nte() -> None:
    [ev] = parse(sample("vendor_d_addendum_b.hl7"))
    assert ev.status == "addendum"
    assert ev.text.splitlines()[2].startswith("ADDENDUM:")
    assert ev.text.splitlines()[-1].startswith("Addendum signed by")


def test_several_obr_groups_give_several_reports() -> None:
    evs = parse(sample("multi_obr_two_reports.hl7"))
    assert [e.accession for e in evs] == ["ACC-M-1", "ACC-M-2"]
    assert [e.source_message_id for e in evs] == ["M-9001#1", "M-9001#2"]
    assert "pulmonary embolism" in evs[0].text and "Diverticulosis" in evs[1].text
    assert "Diverticulosis" not in evs[0].text


def test_cancelled_retracts_without_text() -> None:
    [ev] = parse(sample("cancelled.hl7"))
    assert ev.status == "cancelled" and ev.retracts and ev.text == ""


def test_same_message_twice_same_event_id_even_with_new_control_id() -> None:
    raw = sample("vendor_a_obx_per_line.hl7")
    a = parse(raw)[0]
    b = parse_oru(raw, site="s1", received_time=datetime(2027, 1, 1, tzinfo=UTC)).events[0]
    c = parse(raw.replace(b"|A000123|", b"|A000999|"))[0]
    assert a.event_id == b.event_id == c.event_id


@pytest.mark.parametrize(("name", "code", "reason"), [
    ("bad_missing_obr.hl7", "AE", "no OBR segment"),
    ("bad_unknown_status.hl7", "AE", "unknown report status 'Q'"),
    ("bad_empty_text.hl7", "AE", "empty report text"),
    ("bad_wrong_encoding.hl7", "AR", "not valid utf-8"),
])
def test_bad_samples(name: str, code: str, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as ei:
        parse(sample(name))
    assert ei.value.code == code


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "does not start with an MSH"),
    (b"hello world", "does not start with an MSH"),
    (b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.5\rPID|1||1\r", "unsupported message type 'ADT\\^A01'"),
    (msg(PID, obr(), "OBX|1|TX|X||t||||||F", charset="KLINGON"), "unsupported character set"),
    (b"MSH|abcd|X|Y\r", "invalid encoding characters"),
])
def test_rejects_with_ar(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as ei:
        parse(raw)
    assert ei.value.code == "AR"


def test_obx11_statuses_and_escape_sequences() -> None:
    raw = msg(PID, obr(status=""), "OBX|1|FT|X||a\\E\\b\\.br\\c \\X41\\||||||P")
    [ev] = parse(raw)
    assert ev.status == "preliminary" and ev.text == "a\\b\nc A"


def test_raw_newlines_inside_a_field_are_kept_as_text() -> None:
    raw = msg(PID, obr(), "OBX|1|TX|X||first line\nsecond line\nthird||||||F").replace(b"\r", b"\n")
    [ev] = parse(raw)
    assert ev.text == "first line\nsecond line\nthird"


def test_status_without_report_is_skipped_and_alone_is_no_report() -> None:
    raw = msg(PID, obr(status="S", acc="A1"), obr(status="F", acc="A2"), "OBX|1|TX|X||done||||||F")
    res = parse_oru(raw, site="s")
    assert [e.accession for e in res.events] == ["A2"] and "scheduled" in res.skipped[0]
    with pytest.raises(NoReport):
        parse(msg(PID, obr(status="I")))


def test_accession_field_obr18_missing() -> None:
    with pytest.raises(ParseError, match="no accession number in OBR-18"):
        parse(msg(PID, obr(), "OBX|1|TX|X||t||||||F"), accession_field="OBR-18")


def test_bad_times_and_huge_message() -> None:
    with pytest.raises(ParseError, match="OBR-22"):
        parse(msg(PID, obr(t22="2026133"), "OBX|1|TX|X||t||||||F"))
    with pytest.raises(ParseError, match="exceeds the limit") as ei:
        parse(msg(PID, obr(), "OBX|1|TX|X||" + "x" * 2000 + "||||||F"), max_bytes=1000)
    assert ei.value.code == "AR"


def test_ack_roundtrip_and_error_segment() -> None:
    raw = sample("vendor_a_obx_per_line.hl7")
    h = sniff_header(raw)
    ok = build_ack(h, "AA", control_id="ACK1")
    assert parse_ack(ok) == ("AA", "A000123", "")
    assert ok.startswith(b"MSH|^~\\&|RADSTREAM||RADIS|STMARY|") and b"ACK^R01^ACK|ACK1|P|2.3.1" in ok
    err = ParseError("unknown report status 'Q' (hl7_0123)", field="OBR-25")
    ae = build_ack(h, "AE", err.reason, err)
    code, ctl, text = parse_ack(ae)
    assert (code, ctl) == ("AE", "A000123") and "unknown report status" in text
    assert b"\rERR||OBR^25|103^" in ae


def test_batch_file_with_junk_and_frames() -> None:
    data = (b"FHS|^~\\&\rBHS|^~\\&\r" + sample("vendor_a_obx_per_line.hl7") + b"\x0b"
            + sample("multi_obr_two_reports.hl7") + b"\x1c\r" + sample("bad_missing_obr.hl7")
            + b"BTS|3\rFTS|1\r")
    out = list(iter_hl7_batch(data, site="s", name="b.hl7"))
    assert [(no, type(x).__name__) for no, x in out] == [
        (1, "ReportEvent"), (2, "ReportEvent"), (2, "ReportEvent"), (3, "Rejected")]
    rej = out[-1][1]
    assert isinstance(rej, Rejected) and rej.where == "b.hl7:3" and "no OBR" in rej.reason
    assert [no for no, _ in iter_hl7_batch(data, site="s", skip=2)] == [3]


# --- property-based ------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_parse_error(data: bytes) -> None:
    for raw in (data, b"MSH|^~\\&|" + data, msg(PID) + data):
        with contextlib.suppress(ParseError):
            parse_oru(raw, site="s")


line_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80).filter(
    lambda s: s.strip() != "")


def hl7_escape(s: str) -> str:
    return (s.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
            .replace("~", "\\R\\").replace("&", "\\T\\"))


@settings(max_examples=200, deadline=None)
@given(st.lists(line_text, min_size=1, max_size=12), st.sampled_from(["P", "F", "C"]),
       st.booleans(), st.sampled_from(["UNICODE UTF-8", "8859/1", ""]))
@example(["Addendum: added note"], "C", False, "UNICODE UTF-8")  # a correction read as an addendum
def test_random_hl7_nothing_accepted_is_lost(lines: list[str], status: str, blob: bool, charset: str) -> None:
    if charset == "8859/1":
        lines = [ln.encode("latin-1", "replace").decode("latin-1") for ln in lines]
    lines = [ln.strip() or "x" for ln in lines]
    if blob:
        obx = ["OBX|1|FT|GDT||" + "\\.br\\".join(hl7_escape(ln) for ln in lines) + f"||||||{status}"]
    else:
        obx = [f"OBX|{i}|TX|GDT||{hl7_escape(ln)}||||||{status}" for i, ln in enumerate(lines, 1)]
    enc = "latin-1" if charset == "8859/1" else "utf-8"
    raw = msg(PID, obr(status=status), *obx, charset=charset, enc=enc)
    try:
        [ev] = parse(raw)
    except ParseError as exc:  # only a documented rejection is allowed, never a silent loss
        pytest.fail(f"valid message rejected: {exc.reason}")
    assert ev.text == "\n".join(lines)
    expected = {"P": "preliminary", "F": "final", "C": "corrected"}[status]
    # the documented vendor rule: a correction whose text has a line opening with an addendum marker
    # (hl7_tables.json) is an addendum; random text can produce one ("ADDENDUM")
    markers = tuple(tables()["addendum_markers"])
    if status == "C" and any(ln.lstrip().upper().startswith(markers) for ln in lines):
        expected = "addendum"
    assert ev.status == expected


def test_addendum_sent_as_correction_with_full_text() -> None:
    [ev] = parse(sample("vendor_e_addendum_as_c.hl7"))
    assert ev.status == "addendum" and ev.accession == "NC-ACC-5501"
    lines = ev.text.split("\n")
    assert lines[0].startswith("FINDINGS:") and lines[2] == "" and lines[3].startswith("ADDENDUM:")
    # a plain correction (no addendum line) stays a correction
    assert parse(sample("vendor_c_3_corrected.hl7"))[0].status == "corrected"


# --- placer / filler order numbers -----------------------------------------------------------------

def _blank_order_numbers(fields: list[str]) -> str:
    fields[2] = fields[3] = ""
    return "|".join(fields)


def test_placer_from_obr2_filler_from_obr3_and_on_the_contract() -> None:
    [ev] = parse(sample("vendor_a_obx_per_line.hl7"))
    assert (ev.placer_order_number, ev.filler_order_number, ev.report_id) == (
        "PL5521", "ACC20260302001", "ACC20260302001")
    back = serde.decode("report_finalized", serde.encode("report_finalized", ev.to_avro()))
    assert (back["placer_order_number"], back["filler_order_number"]) == ("PL5521", "ACC20260302001")
    # OBR-18 as the accession: the filler number stays OBR-3, the placer OBR-2
    [b] = parse(sample("vendor_b_ft_blob_latin1.hl7"), accession_field="OBR-18")
    assert (b.accession, b.placer_order_number, b.filler_order_number) == ("RIS20260303-0042", "ORD9981",
                                                                           "F9981")


def test_order_numbers_fall_back_to_orc_and_are_per_group() -> None:
    bare = _blank_order_numbers(obr().split("|"))  # OBR-2 and OBR-3 empty
    [ev] = parse(msg(PID, "ORC|RE|ORC-PL-7^EPIC|ORC-FL-7^RIS", bare, "OBX|1|TX|||Lungs clear.||||||F"),
                 accession_field="ORC-3")
    assert (ev.accession, ev.placer_order_number, ev.filler_order_number, ev.report_id) == (
        "ORC-FL-7", "ORC-PL-7", "ORC-FL-7", "ORC-FL-7")
    # OBR-2 wins over ORC-2; an ORC belongs to the OBR after it only
    [a, b] = parse(msg(PID, "ORC|RE|ORC-PL-1|A1", obr(acc="A1"), "OBX|1|TX|||one||||||F",
                       obr(acc="A2").replace("|P1|", "||"), "OBX|1|TX|||two||||||F"))
    assert (a.placer_order_number, a.filler_order_number) == ("P1", "A1")
    assert (b.placer_order_number, b.filler_order_number) == (None, "A2")
    evs = parse(sample("multi_obr_two_reports.hl7"))
    assert [e.placer_order_number for e in evs] == ["PL1", "PL2"]
    [c] = parse(sample("vendor_c_2_final.hl7"))
    assert c.placer_order_number is None and c.filler_order_number == "ACC-C-5001"
