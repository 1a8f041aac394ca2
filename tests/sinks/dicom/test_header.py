"""sinks.dicom.header: the filing values read straight from the bytes, against pydicom."""

from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset

from sinks.dicom import synth


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
