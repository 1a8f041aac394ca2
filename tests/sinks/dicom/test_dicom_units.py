"""Pure parts: windows, throttle, de-identification rules, synthetic data."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from processors.ingest.pseudonym import pseudonym
from sinks.dicom import deid, schedule, synth


def test_overnight_and_weekend_windows() -> None:
    w = schedule.parse_windows("mon-fri 19:00-07:00; sat-sun 00:00-24:00")
    tue = datetime(2026, 11, 24)  # a Tuesday
    assert not schedule.is_open(w, tue.replace(hour=12))
    assert schedule.is_open(w, tue.replace(hour=20))
    assert schedule.is_open(w, tue.replace(hour=6, minute=59))
    assert not schedule.is_open(w, tue.replace(hour=7))
    assert schedule.is_open(w, datetime(2026, 11, 28, 13))  # Saturday
    assert schedule.next_open(w, tue.replace(hour=12)) == tue.replace(hour=19)
    # Monday 06:00 would be the tail of a Sunday-night window, and "mon-fri 19:00-07:00" has none
    assert not schedule.is_open(w, datetime(2026, 11, 30, 6))
    assert schedule.parse_windows("") == [] and schedule.is_open([], tue)


def test_monday_early_morning_belongs_to_sunday_only_if_configured() -> None:
    w = schedule.parse_windows("mon-fri 19:00-07:00")
    assert not schedule.is_open(w, datetime(2026, 11, 30, 6))  # Monday 06:00, Sunday had no window
    assert schedule.is_open(w, datetime(2026, 11, 29, 6)) is False  # Sunday 06:00
    assert schedule.is_open(w, datetime(2026, 11, 28, 6))  # Saturday 06:00: Friday night's window


def test_bad_window_spec_is_an_error() -> None:
    with pytest.raises(ValueError):
        schedule.parse_windows("mon 25:00-07:00")


def test_pacer_spaces_starts_by_images_and_studies() -> None:
    p = schedule.Pacer(images_per_minute=600)  # 10 images/s
    assert p.reserve(20, now=0.0) == 0.0
    assert p.reserve(5, now=0.0) == pytest.approx(2.0)  # after the 20 images of the first study
    assert p.reserve(5, now=10.0) == 0.0
    s = schedule.Pacer(studies_per_hour=120)  # one every 30 s
    assert s.reserve(1, now=0.0) == 0.0 and s.reserve(1, now=1.0) == pytest.approx(29.0)
    assert schedule.Pacer().reserve(100) == 0.0


def _ds() -> Dataset:
    spec = synth.specs(1, 1)[0]
    ds = synth.instance(spec, 0)
    ds.add_new(0x00091001, "LO", "private secret")
    ds.OtherPatientIDs = "X123"
    return ds


def test_deid_is_consistent_and_keyed() -> None:
    key = b"secret-key-of-32-bytes----------"
    a, b = _ds(), _ds()
    orig_study, orig_date = str(a.StudyInstanceUID), str(a.StudyDate)
    d = deid.Deidentifier(key)
    d.apply(a, "P1")
    d.apply(b, "P1")
    assert a.StudyInstanceUID == b.StudyInstanceUID != orig_study
    assert a.StudyInstanceUID == deid.remap_uid(key, orig_study)
    assert deid.remap_uid(b"another key", orig_study) != a.StudyInstanceUID
    assert len(a.StudyInstanceUID) <= 64
    shift = timedelta(days=deid.date_shift_days(key, "APAT1"))
    assert a.StudyDate == (datetime.strptime(orig_date, "%Y%m%d") - shift).strftime("%Y%m%d")
    assert "OtherPatientIDs" not in a and "InstitutionName" not in a and "StudyDescription" not in a
    assert a.PatientBirthDate == "" and a.ReferringPhysicianName == ""
    assert not any(e.tag.is_private for e in a)
    assert a.AccessionNumber == deid.pseudonym(key, "accession", "A1")
    # the warehouse's pseudonym of the patient (ingest pseudonymisation with the same key and site)
    assert a.PatientID == a.PatientName == pseudonym(key, "default", "APAT1")
    assert a.SOPClassUID == synth.CTImageStorage  # standard UIDs are kept
    assert a.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


def test_deid_needs_a_key() -> None:
    with pytest.raises(ValueError):
        deid.Deidentifier(b"")


def test_synthetic_uids_are_deterministic_and_sizes_as_asked() -> None:
    a, b = synth.specs(2, 3), synth.specs(2, 3)
    assert [s.sop_uids() for s in a] == [s.sop_uids() for s in b]
    assert a[0].study_uid != a[1].study_uid and a[0].accession == "A1" and a[1].accession == "A2"
    rows = synth.rows_for_kb(128)
    assert abs(rows * rows * 2 - 128 * 1024) < 2 * rows * 2 + 2
    assert len(synth.instance_bytes(synth.specs(1, 1, rows=rows, cols=rows)[0], 0)) > 128 * 1024


def test_hand_encoded_file_meta_reads_back_with_pydicom() -> None:
    import io

    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from sinks.dicom.scp import file_meta_bytes

    ds = synth.instance(synth.specs(1, 1)[0], 0)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)  # explicit VR little endian, as received over the network
    for ae in ("ORTHANC", "PACS1"):  # odd and even lengths are padded
        data = file_meta_bytes(str(ds.SOPClassUID), str(ds.SOPInstanceUID), synth.ExplicitVRLittleEndian, ae)
        back = dcmread(io.BytesIO(data + body.getvalue()))
        assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert back.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert back.file_meta.TransferSyntaxUID == synth.ExplicitVRLittleEndian
        assert back.file_meta.SourceApplicationEntityTitle == ae
        assert back.file_meta.FileMetaInformationGroupLength == len(data) - 128 - 4 - 12
        assert back.PixelData == ds.PixelData and back.PatientID == ds.PatientID


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xB000])
def test_pre_encoded_store_response_equals_pynetdicoms(status: int) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    from sinks.dicom.net import store_rsp_command

    for sop in ("1.2.3.4", "1.2.3.45"):  # odd and even lengths
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = 7
        rsp.AffectedSOPClassUID = synth.CTImageStorage
        rsp.AffectedSOPInstanceUID = sop
        rsp.Status = status
        msg = C_STORE_RSP()
        msg.primitive_to_message(rsp)
        want = encode(msg.command_set, True, True)
        assert store_rsp_command(7, synth.CTImageStorage, sop, status) == want


def _store_rq_command(sop: str, message_id: int = 11, move: bool = True) -> bytes:
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    rq = C_STORE()
    rq.MessageID = message_id
    rq.AffectedSOPClassUID = synth.CTImageStorage
    rq.AffectedSOPInstanceUID = sop
    rq.Priority = 0
    if move:
        rq.MoveOriginatorApplicationEntityTitle = "RADSTREAM"
        rq.MoveOriginatorMessageID = 3
    rq.DataSet = __import__("io").BytesIO(b"\x08\x00\x18\x00")
    msg = C_STORE_RQ()
    msg.primitive_to_message(rq)
    out = encode(msg.command_set, True, True)
    assert out is not None
    return out


@pytest.mark.parametrize("sop", ["1.2.3.4", "1.2.3.45"])
def test_direct_command_decoding_agrees_with_pydicom(sop: str) -> None:
    from pydicom.filereader import read_dataset

    from sinks.dicom.fastpath import decode_command, parse_store_rq

    for move in (True, False):
        raw = _store_rq_command(sop, move=move)
        ours = decode_command(raw)
        ref = read_dataset(io.BytesIO(raw), True, True)
        tags = sorted(ref.keys())
        assert sorted(ours) == [t.element for t in tags]
        for tag in tags:
            assert ours[tag.element] == ref.get_item(tag).value  # the raw, undecoded value bytes
        assert str(ref.AffectedSOPInstanceUID) == sop
        assert parse_store_rq(raw) == (11, synth.CTImageStorage, sop)


def test_direct_command_decoding_refuses_other_messages() -> None:
    from pynetdicom.dimse_messages import C_ECHO_RQ
    from pynetdicom.dimse_primitives import C_ECHO
    from pynetdicom.dsutils import encode

    from sinks.dicom.fastpath import decode_command, parse_store_rq

    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    msg = C_ECHO_RQ()
    msg.primitive_to_message(echo)
    raw = encode(msg.command_set, True, True)
    assert raw is not None
    assert parse_store_rq(raw) is None
    assert parse_store_rq(raw[:-3]) is None  # truncated
    with pytest.raises(ValueError):
        decode_command(b"\x08\x00\x10\x00\x02\x00\x00\x00AB")  # not group 0000


def test_pdata_pdus_equal_pynetdicoms_and_parse_back() -> None:
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    from sinks.dicom.fastpath import pdata_pdu, pdvs
    from sinks.dicom.net import store_rsp_command

    items: list[tuple[int, int, bytes | memoryview]] = [
        (1, 0x03, store_rsp_command(5, synth.CTImageStorage, "1.2.3", 0)), (3, 0x00, b"\x01" * 9),
        (3, 0x02, b"")]
    prim = P_DATA()
    # pynetdicom wants [ID, PDV] lists at run time (its annotation says tuples)
    prim.presentation_data_value_list = [[cx, bytes([hdr]) + bytes(data)]  # type: ignore[misc]
                                         for cx, hdr, data in items]
    pdu = P_DATA_TF()
    pdu.from_primitive(prim)
    want = pdu.encode()
    assert pdata_pdu(items) == want
    assert [(cx, hdr, bytes(d)) for cx, hdr, d in pdvs(memoryview(want)[6:])] == items
    with pytest.raises(ValueError):
        pdvs(memoryview(want)[6:-1])


def test_storage_scp_takes_its_options_from_the_one_config(tmp_path: Path) -> None:
    from radstream.config import load_settings
    from sinks.dicom.scp import ScpConfig

    env = {"RADSTREAM_STATE_DIR": str(tmp_path), "RADSTREAM_RESEARCH_DEFAULT_PROJECT": "IRB-0",
           "RADSTREAM_RESEARCH_MIN_FREE_MB": "7", "RADSTREAM_RESEARCH_WRITERS": "3",
           "RADSTREAM_RESEARCH_DEID_PROJECTS": "IRB-1, IRB-2", "RADSTREAM_RESEARCH_FAST_PATH": "0",
           "RADSTREAM_INGEST_PSEUDONYM_KEY": "secret", "RADSTREAM_RESEARCH_EVENT_BATCH_MS": "120"}
    settings = load_settings(env=env)
    cfg = ScpConfig.of(settings.research, settings.ingest)
    assert (cfg.default_project, cfg.min_free_mb, cfg.writers, cfg.deid_projects, cfg.fast_path,
            cfg.deid_key, cfg.event_batch_ms) == ("IRB-0", 7, 3, ("IRB-1", "IRB-2"), False, b"secret", 120.0)
    assert cfg.store_dir == tmp_path / "research"
    default = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)})
    assert ScpConfig.of(default.research, default.ingest).fast_path


def _encoded(ds: Dataset, implicit: bool) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, ds)
    return bytes(buf.getvalue())


def _with_sequences(undefined: bool) -> Dataset:
    """A synthetic instance with nested sequences before the study UID (undefined lengths if asked)."""
    from pydicom.sequence import Sequence

    ds = synth.instance(synth.specs(1, 1)[0], 0)
    inner = Dataset()
    inner.ReferencedSOPClassUID = synth.CTImageStorage
    inner.ReferencedSOPInstanceUID = "1.2.3.4.5"
    outer = Dataset()
    outer.ReferencedSOPClassUID = synth.CTImageStorage
    outer.ReferencedSOPInstanceUID = "1.2.3.4.6"
    outer.ReferencedImageSequence = Sequence([inner, inner])
    ds.ReferencedStudySequence = Sequence([outer])  # (0008,1110)
    ds.ReferencedImageSequence = Sequence([])  # (0008,1140), empty
    ds.add_new(0x00091010, "LO", "private")
    ds.add_new(0x00091011, "UN", b"\x01\x02")
    if undefined:
        for elem in (ds["ReferencedStudySequence"], ds["ReferencedImageSequence"],
                     outer["ReferencedImageSequence"]):
            elem.is_undefined_length = True
        for item in (outer, inner):
            item.is_undefined_length_sequence_item = True
    return ds


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("undefined", [True, False])
def test_direct_header_reading_agrees_with_pydicom(implicit: bool, undefined: bool) -> None:
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from sinks.dicom.header import read_header
    from sinks.dicom.scp import _header_from, _stop_after_series

    ds = _with_sequences(undefined)
    for accession, patient, modality in (("A1", "APAT1", "CT"), ("ACC-12345", "P 7 ", "MR"), ("", "", "")):
        ds.AccessionNumber, ds.PatientID, ds.Modality = accession, patient, modality
        raw = _encoded(ds, implicit)
        if undefined:
            assert b"\xfe\xff\xdd\xe0" in raw and b"\xfe\xff\x0d\xe0" in raw  # delimiters really written
        from pydicom.filereader import read_dataset

        ref = _header_from(read_dataset(io.BytesIO(raw), implicit, True, stop_when=_stop_after_series))
        ours = read_header(raw, implicit)
        assert ours == ref
        assert ours is not None and ours.study == ds.StudyInstanceUID and ours.series == ds.SeriesInstanceUID
        assert ours.sop_instance == ds.SOPInstanceUID and ours.patient_id == patient.rstrip()
    ts = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    assert ts.is_implicit_VR == implicit


def test_direct_header_reading_leaves_hard_cases_to_pydicom() -> None:
    from pydicom.uid import ExplicitVRLittleEndian

    from sinks.dicom.header import read_header
    from sinks.dicom.scp import header_of

    ds = synth.instance(synth.specs(1, 1)[0], 0)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientID = "Müller"  # non-ASCII: the character set matters
    raw = _encoded(ds, False)
    assert read_header(raw, False) is None
    assert header_of(raw, ExplicitVRLittleEndian).patient_id == "Müller"  # pydicom read it
    ds.PatientID = "A\\B"  # two values
    assert read_header(_encoded(ds, False), False) is None
    ds.PatientID = "APAT1"
    raw = _encoded(ds, False)
    assert read_header(raw, False) is not None
    assert read_header(raw[:40], False) is None  # truncated inside an element
    assert read_header(b"\xfe\xff\x00\xe0\x00\x00\x00\x00", True) is None  # an item at the top level


@pytest.mark.parametrize("dest", ["RESEARCH", "ORTHANC", "A"])  # even, odd and short AE titles
def test_direct_move_request_equals_pynetdicoms(dest: str) -> None:
    from pynetdicom.dimse_messages import C_MOVE_RQ
    from pynetdicom.dimse_primitives import C_MOVE
    from pynetdicom.dsutils import encode
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as Move  # type: ignore[attr-defined]

    from sinks.dicom.movefast import move_rq_command

    for msg_id, priority in ((1, 2), (513, 0)):
        req = C_MOVE()
        req.MessageID = msg_id
        req.AffectedSOPClassUID = Move
        req.Priority = priority
        req.MoveDestination = dest
        req.Identifier = io.BytesIO(b"\x08\x00\x52\x00")
        msg = C_MOVE_RQ()
        msg.primitive_to_message(req)
        assert move_rq_command(msg_id, str(Move), dest, priority) == encode(msg.command_set, True, True)


def _move_rsp_command(status: int, counts: tuple[int | None, ...], identifier: bool = False,
                      msg_id: int = 1) -> bytes:
    from pynetdicom.dimse_messages import C_MOVE_RSP
    from pynetdicom.dimse_primitives import C_MOVE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as Move  # type: ignore[attr-defined]

    rsp = C_MOVE()
    rsp.MessageIDBeingRespondedTo = msg_id
    rsp.AffectedSOPClassUID = Move
    rsp.Status = status
    (rsp.NumberOfRemainingSuboperations, rsp.NumberOfCompletedSuboperations,
     rsp.NumberOfFailedSuboperations, rsp.NumberOfWarningSuboperations) = counts
    if identifier:
        rsp.Identifier = io.BytesIO(b"\x08\x00\x58\x11\x04\x00\x00\x001.2\x00")
    msg = C_MOVE_RSP()
    msg.primitive_to_message(rsp)
    from pynetdicom.dsutils import encode

    out = encode(msg.command_set, True, True)
    assert out is not None
    return out


@pytest.mark.parametrize(("status", "counts", "identifier"), [
    (0xFF00, (47, 3, 0, 0), False),  # pending
    (0x0000, (None, 50, 0, 0), False),  # success: no remaining count
    (0xB000, (None, 40, 9, 1), True),  # warning, with a Failed SOP Instance UID List
    (0xA702, (0, 0, 0, 0), True),  # Orthanc after a refused image: zero counters
    (0xC000, (None, None, None, None), False),  # failure without counts
])
def test_direct_move_response_parsing_agrees_with_pynetdicom(
        status: int, counts: tuple[int | None, ...], identifier: bool) -> None:
    from pynetdicom.dimse_messages import C_MOVE_RSP as Msg
    from pynetdicom.dimse_primitives import C_MOVE
    from pynetdicom.dsutils import decode

    from sinks.dicom.movefast import MoveRsp, parse_move_rsp

    raw = _move_rsp_command(status, counts, identifier, msg_id=9)
    # what pynetdicom's own decoder makes of the same command set
    msg = Msg()
    msg.command_set = decode(io.BytesIO(raw), True, True)
    msg.data_set = io.BytesIO(b"\x00" if identifier else b"")
    prim = msg.message_to_primitive()
    assert isinstance(prim, C_MOVE)
    ref = MoveRsp(prim.Status, prim.NumberOfRemainingSuboperations, prim.NumberOfCompletedSuboperations,
                  prim.NumberOfFailedSuboperations, prim.NumberOfWarningSuboperations)
    assert parse_move_rsp(raw) == (9, ref, identifier)
    assert ref == MoveRsp(status, counts[0], counts[1], counts[2], counts[3])


def test_direct_move_response_parsing_refuses_other_messages() -> None:
    from sinks.dicom.movefast import parse_move_rsp

    assert parse_move_rsp(_store_rq_command("1.2.3")) is None  # a C-STORE-RQ
    raw = _move_rsp_command(0xFF00, (1, 2, 0, 0))
    assert parse_move_rsp(raw[:-1]) is None  # truncated
    assert parse_move_rsp(b"") is None


def test_direct_find_request_equals_pynetdicoms() -> None:
    from pynetdicom.dimse_messages import C_FIND_RQ
    from pynetdicom.dimse_primitives import C_FIND
    from pynetdicom.dsutils import encode
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find  # type: ignore[attr-defined]

    from sinks.dicom.movefast import C_FIND_RSP, find_rq_command, parse_rsp

    for msg_id, priority in ((1, 2), (65535, 1)):
        req = C_FIND()
        req.MessageID = msg_id
        req.AffectedSOPClassUID = Find
        req.Priority = priority
        req.Identifier = io.BytesIO(b"\x08\x00\x52\x00")
        msg = C_FIND_RQ()
        msg.primitive_to_message(req)
        assert find_rq_command(msg_id, str(Find), priority) == encode(msg.command_set, True, True)
    # a C-MOVE response is not a C-FIND response
    assert parse_rsp(_move_rsp_command(0xFF00, (1, 2, 0, 0)), C_FIND_RSP) is None


class _FakeDul:
    """Only what the gate touches: the DUL's socket-reading method (here it blocks until released)."""

    def __init__(self) -> None:
        import threading

        self.reading = threading.Event()
        self.release = threading.Event()
        self.reads = 0

    def _is_transport_event(self) -> bool:
        self.reads += 1
        self.reading.set()
        self.release.wait(5)
        return True


def test_direct_exchange_gate_waits_for_a_dul_read_in_progress_and_blocks_new_ones() -> None:
    import threading
    import time

    from sinks.dicom.movefast import _Gate

    dul = _FakeDul()
    gate = _Gate.of(dul)
    assert _Gate.of(dul) is gate  # installed once per association, not per exchange
    reader = threading.Thread(target=dul._is_transport_event)  # the DUL thread, mid-read
    reader.start()
    assert dul.reading.wait(5)
    took = threading.Event()
    taker = threading.Thread(target=lambda: (gate.take(), took.set()))
    taker.start()
    time.sleep(0.05)
    assert not took.is_set()  # the exchange may not start while the DUL is reading the socket
    dul.release.set()
    reader.join(5)
    assert took.wait(5)
    taker.join(5)
    reads = dul.reads
    assert dul._is_transport_event() is False  # owned by the exchange: the DUL reads nothing
    assert dul.reads == reads
    gate.give_back()
    assert dul._is_transport_event() is True
    assert dul.reads == reads + 1


def _store(tmp_path: Path) -> object:
    from sinks.dicom.scp import ResearchStore, ScpConfig

    return ResearchStore(ScpConfig(ae_title="RESEARCH", port=0, host="127.0.0.1", store_dir=tmp_path,
                                   allowed_calling_aes=("ORTHANC",)))


def test_verified_write_stores_exactly_the_bytes_and_overwrites_by_sop_uid(tmp_path: Path) -> None:
    store: Any = _store(tmp_path)
    parent = str(tmp_path / "P" / "1.2" / "1.2.3")
    target = parent + "/1.2.3.4.dcm"
    store._write_verified(parent, target, "1.2.3.4", b"first version, longer than the second")
    store._write_verified(parent, target, "1.2.3.4", b"second")
    assert Path(target).read_bytes() == b"second"  # replaced, not appended to or kept
    assert sorted(p.name for p in Path(parent).iterdir()) == ["1.2.3.4.dcm"]  # no temporary file left


def test_a_write_that_reads_back_differently_fails_and_keeps_the_stored_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    store: Any = _store(tmp_path)
    parent = str(tmp_path / "P" / "1.2" / "1.2.3")
    target = parent + "/1.2.3.4.dcm"
    store._write_verified(parent, target, "1.2.3.4", b"good copy")
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: real_pread(fd, n, off)[:-1] + b"?")  # a bad medium
    with pytest.raises(OSError, match="verification failed"):
        store._write_verified(parent, target, "1.2.3.4", b"new copy")
    assert Path(target).read_bytes() == b"good copy"
    assert sorted(p.name for p in Path(parent).iterdir()) == ["1.2.3.4.dcm"]
