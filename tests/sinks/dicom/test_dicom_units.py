"""Pure parts: windows, throttle, de-identification rules, synthetic data."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydicom.dataset import Dataset

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
    assert a.PatientID == a.PatientName == deid.pseudonym(key, "patient", "APAT1")
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
