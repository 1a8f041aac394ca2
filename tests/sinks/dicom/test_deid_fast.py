"""sinks.dicom.deid.fast: de-identification straight from the received bytes writes exactly what the
pydicom path (``Deidentifier.apply_file_pydicom``) writes, byte for byte, and hands what it does not
handle to that path; the research store's de-identified instances take it."""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import ImplicitVRLittleEndian

from sinks.dicom import deid, synth
from sinks.dicom.deid import fast

from . import leak_corpus

KEY = b"fast-path-test-key-of-32-bytes--"
OPTIONS = {
    "default": deid.DeidOptions(),
    "no-dates": deid.DeidOptions(retain_modified_dates=False),
    "clean-descriptors": deid.DeidOptions(clean_descriptors=True),
    "retain-all": deid.DeidOptions(retain_uids=True, retain_device_identity=True,
                                   retain_patient_characteristics=True, clean_descriptors=True),
}


def _file(ds: Dataset, implicit: bool = False) -> bytes:
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def _nested(i: int = 0) -> Dataset:
    """A synthetic CT with nested identifying values, private attributes in and out of items, odd padding."""
    spec = synth.specs(1, 3)[0]
    ds = synth.instance(spec, i)
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ds.SOPClassUID, spec.sop_uid(i + 1)
    ds.ReferencedImageSequence = Sequence([ref])
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = "OTHER-1", "HOSP"
    other.add_new(0x00091010, "LO", "PRIVATE IN AN ITEM")
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "LO", "SECRET NOTE")
    ds.AcquisitionDateTime = spec.study_date + "120102.5"
    ds.OperatorsName = "TECH^A"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "T-1", "SRT"
    padded = RawDataElement(BaseTag(0x00080104), "LO", 8, b"CHEST   ", 0, False, True)  # more than one space
    code._dict[padded.tag] = padded
    code.ExpirationDateTime = "20240105101010"  # a date not in the table, nested: shifted
    code.StudyDate = "20240105"  # a table date (shifted), nested
    ds.AnatomicRegionSequence = Sequence([code])
    ds.DateOfGainCalibration = "20231224"  # not in the table, top level: shifted
    code.PatientID = "ANOTHER-PATIENT"  # nested: that patient's pseudonym

    ds._dict[BaseTag(0x00080050)] = RawDataElement(BaseTag(0x00080050), "SH", 4, b" A1 ", 0, False, True)
    return ds


def _with_group_length(data: bytes) -> bytes:
    """A retired group length (0010,0000) before Patient's Name (pydicom does not write one; the
    profile's output must not either)."""
    at = data.index(b"\x10\x00\x10\x00PN")
    return data[:at] + b"\x10\x00\x00\x00UL\x04\x00" + struct.pack("<I", 1234) + data[at:]


def _corpus() -> list[tuple[str, bytes]]:
    files = []
    for ds in leak_corpus.build().instances:
        data = leak_corpus.encode(ds)
        files.append((f"leak-{ds.Modality}", data))
        files.append((f"leak-{ds.Modality}-implicit", _file(dcmread(io.BytesIO(data)), True)))
    files.append(("nested", _with_group_length(_file(_nested()))))
    files.append(("nested-implicit", _file(_nested(), True)))
    return files


def _fast(d: deid.Deidentifier, data: bytes, options: deid.DeidOptions, why: list[str] | None = None,
          ) -> tuple[bytes, dict[int, str]] | None:
    parts = fast.split_file(data)
    assert parts is not None
    parsed = fast.parse(*parts)
    if parsed is None:
        if why is not None:
            why.append("not parsed")
        return None
    return fast.deidentify(d, parsed, "FAST", options, why=why)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_the_fast_path_writes_exactly_what_the_pydicom_path_writes(name: str) -> None:
    """Every E.1-1 attribute with a traceable value (the leak corpus: nested, private, curves, overlays,
    a character set), explicit and implicit VR: handled by the fast path, and the same bytes."""
    d = deid.Deidentifier(KEY)
    for what, data in _corpus():
        why: list[str] = []
        done = _fast(d, data, OPTIONS[name], why)
        assert done is not None and not why, (what, why)
        expected, ds = d.apply_file_pydicom(data, "FAST", OPTIONS[name])
        assert done[0] == expected, what
        # the values the store files it by and puts in its events, as deid.text reads them
        assert done[1] == {t: deid.text(ds, t) for t in fast.STORED_TAGS}, what
        assert d.apply_file(data, "FAST", OPTIONS[name])[0] == expected


def test_the_comparison_sees_a_changed_value() -> None:
    """The byte comparison above fails when one element differs (a UID kept instead of replaced)."""
    d = deid.Deidentifier(KEY)
    data = _file(_nested())
    done = _fast(d, data, deid.DeidOptions())
    assert done is not None
    changed, _ = d.apply_file_pydicom(data, "FAST", deid.DeidOptions(retain_uids=True))
    assert done[0] != changed


@pytest.mark.parametrize("case", ["non-ascii patient name", "safe list", "out of order", "burned in"])
def test_what_the_fast_path_does_not_handle_takes_the_pydicom_path(case: str) -> None:
    d = deid.Deidentifier(KEY)
    ds, options = _nested(), deid.DeidOptions()
    if case == "non-ascii patient name":
        ds.SpecificCharacterSet, ds.PatientName = "ISO_IR 100", "Müller^Hans"
    elif case == "safe list":
        options = deid.DeidOptions(private_safe_list=("(0009,xx01) ACME 1.0",))
    elif case == "burned in":
        ds.BurnedInAnnotation = "YES"
    data = _file(ds)
    if case == "out of order":  # two elements swapped in the encoded data set
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, False
        write_dataset(body, ds)
        raw = body.getvalue()
        a, b = raw.index(b"\x08\x00\x20\x00"), raw.index(b"\x08\x00\x30\x00")  # StudyDate, StudyTime
        swapped = raw[:a] + raw[b:b + 14] + raw[a:b] + raw[b + 14:]
        assert len(swapped) == len(raw)
        data = data[:len(data) - len(raw)] + swapped
    why: list[str] = []
    assert _fast(d, data, options, why) is None and why
    if case == "burned in":
        with pytest.raises(deid.DeidError):
            d.apply_file(data, "FAST", options)
        return
    expected, _ = d.apply_file_pydicom(data, "FAST", options)
    assert d.apply_file(data, "FAST", options)[0] == expected


def test_a_big_endian_or_deflated_file_is_not_parsed() -> None:
    meta = synth.instance(synth.specs(1, 1)[0], 0)
    data = _file(meta)
    parts = fast.split_file(data)
    assert parts is not None
    assert fast.parse(parts[0], parts[1], "1.2.840.10008.1.2.2") is None  # Explicit VR Big Endian
    assert fast.parse(parts[0], parts[1], "1.2.840.10008.1.2.1.99") is None  # Deflated


# -- the research store's path ------------------------------------------------------------------------
ASSOC = type("Assoc", (), {"requestor": type("R", (), {"ae_title": "ORTHANC"})(),
                           "acceptor": type("A", (), {"ae_title": "RESEARCH"})()})()


def _received(ds: Dataset) -> tuple[bytes, str, str, str]:
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    return body.getvalue(), str(synth.ExplicitVRLittleEndian), str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def _store(tmp_path: Path, **project: Any) -> Any:
    import queue

    from sinks.dicom.journal import Journal
    from sinks.dicom.projects import StaticProjects
    from sinks.dicom.scp import ResearchStore, ScpConfig

    from .helpers import project as project_of

    store = ResearchStore(ScpConfig(ae_title="RESEARCH", port=0, host="127.0.0.1", store_dir=tmp_path / "s",
                                    allowed_calling_aes=("ORTHANC",), deid_key=KEY, journal_mb=4,
                                    quarantine_dir=tmp_path / "q"),
                          projects=StaticProjects([project_of("IRB-F", identified=False, **project)]))
    store._root = str((tmp_path / "s").resolve())
    store.journal = Journal(store._root, 4 * 1024 * 1024, store._replayed)
    store.journal.open()
    store._writer = queue.Queue()
    return store


def test_the_store_stores_the_pydicom_paths_bytes_through_the_fast_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sinks.dicom.scp import file_meta_bytes, header_of

    store = _store(tmp_path)
    ds = _nested()
    raw, ts, sop_class, sop = _received(ds)
    store.registry.register(header_of(raw, synth.UID(ts)).study, "IRB-F", "r1", "RESEARCH")
    taken: list[bool] = []
    real = fast.deidentify

    def spy(*args: Any, **kwargs: Any) -> Any:
        taken.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(fast, "deidentify", spy)
    assert store.store_answer_first(raw, ts, sop_class, sop, ASSOC) == 0
    store.after_response()
    store.journal.close()
    assert taken == [True]
    files = list((tmp_path / "s" / "IRB-F").rglob("*.dcm"))
    assert len(files) == 1
    received = file_meta_bytes(sop_class, sop, ts, "ORTHANC") + raw
    expected, out = deid.Deidentifier(KEY).apply_file_pydicom(received, "IRB-F")
    assert files[0].read_bytes() == expected
    assert files[0].name == f"{out.SOPInstanceUID}.dcm" and files[0].parent.name == out.SeriesInstanceUID


@pytest.mark.parametrize("change, reason", [
    ({"Modality": "US"}, "burned-in risk: modality US"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "burned-in risk: Secondary Capture"),
    ({"BurnedInAnnotation": "YES "}, "BurnedInAnnotation=YES"),
    ({"EncapsulatedDocument": b"%PDF"}, "encapsulated document"),
])
def test_the_store_quarantines_from_the_fast_paths_values(tmp_path: Path, change: dict[str, Any],
                                                          reason: str) -> None:
    from sinks.dicom.scp import header_of

    store = _store(tmp_path)
    ds = _nested()
    for k, v in change.items():
        setattr(ds, k, v)
    raw, ts, sop_class, sop = _received(ds)
    store.registry.register(header_of(raw, synth.UID(ts)).study, "IRB-F", "r1", "RESEARCH")
    assert store.store_answer_first(raw, ts, sop_class, sop, ASSOC) == 0
    store.after_response()
    store.journal.close()
    entries = list(store.quarantine.entries())
    assert len(entries) == 1 and entries[0].reason.startswith(reason)
    assert not (tmp_path / "s" / "IRB-F").exists()
