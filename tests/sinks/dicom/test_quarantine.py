"""sinks.dicom.quarantine: the reasons (data-driven), and a de-identification error quarantines the
instance (the SCP's store path, called directly)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.tag import BaseTag

from sinks.dicom import synth
from sinks.dicom.deid import Deidentifier, DeidError, fast, read_file
from sinks.dicom.quarantine import reason_for, reason_of, rules
from sinks.dicom.scp import ResearchStore, ScpConfig, file_meta_bytes

from .helpers import TEST_PROJECTS

SC = "1.2.840.10008.5.1.4.1.1.7"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def ct() -> Dataset:
    return synth.instance(synth.specs(1, 1, rows=8, cols=8)[0], 0)


def text_item(text: str) -> Dataset:
    item = Dataset()
    item.ValueType, item.TextValue = "TEXT", text
    return item


def test_the_rules_are_data_and_cover_the_burned_in_risk_classes() -> None:
    r = rules()
    assert SC in r.burned_in_sop_classes and "US" in r.burned_in_modalities and PDF in r.document_sop_classes


@pytest.mark.parametrize(("change", "reason"), [
    ({}, None),
    ({"BurnedInAnnotation": "YES"}, "BurnedInAnnotation=YES"),
    ({"BurnedInAnnotation": "NO"}, None),
    ({"SOPClassUID": SC, "Modality": "OT"}, "burned-in risk: Secondary Capture Image Storage"),
    ({"Modality": "US"}, "burned-in risk: modality US (Ultrasound)"),
    ({"Modality": "DOC"}, "burned-in risk: modality DOC (Document (scanned documents))"),
    ({"SOPClassUID": PDF, "Modality": "DOC"}, "encapsulated document (Encapsulated PDF Storage)"),
])
def test_reasons(change: dict[str, str], reason: str | None) -> None:
    ds = ct()
    for k, v in change.items():
        setattr(ds, k, v)
    assert reason_for(ds) == reason


def test_a_project_may_allow_burned_in_risk_classes_but_not_annotations_documents_or_free_text() -> None:
    us = ct()
    us.Modality = "US"
    assert reason_for(us, allow_burned_in_risk=True) is None
    us.BurnedInAnnotation = "YES"
    assert reason_for(us, allow_burned_in_risk=True) == "BurnedInAnnotation=YES"
    pdf = ct()
    pdf.SOPClassUID = PDF
    assert reason_for(pdf, allow_burned_in_risk=True) is not None


def test_structured_reports_with_free_text_anywhere_in_the_tree() -> None:
    sr = ct()
    sr.SOPClassUID, sr.Modality = BASIC_TEXT_SR, "SR"
    container = Dataset()
    container.ValueType = "CONTAINER"
    code = Dataset()
    code.ValueType = "CODE"
    container.ContentSequence = [code]
    sr.ContentSequence = [container]
    assert reason_for(sr) is None  # coded content only
    container.ContentSequence.append(text_item("Dr. Lee discussed with the patient"))
    assert reason_for(sr) == "structured report with free text (TEXT content item)"


def test_a_deidentification_error_quarantines_the_instance(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = ScpConfig("RESEARCH", 0, "127.0.0.1", tmp_path / "store", ("ORTHANC",),
                    quarantine_dir=tmp_path / "q", deid_key=b"k" * 32)
    store = ResearchStore(cfg, projects=TEST_PROJECTS)
    ds = ct()
    store.registry.register(str(ds.StudyInstanceUID), "IRB-9", "r1", "RESEARCH")

    def fail(*args: object) -> None:
        raise DeidError("a value the profile cannot handle")

    store.deid.apply = fail  # type: ignore[union-attr, method-assign]
    # an instance the profile fails on is one the byte-level path hands to the pydicom path (it
    # declines on any error): that path's DeidError is the one that quarantines it
    monkeypatch.setattr(fast, "deidentify", lambda *args, **kwargs: None)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="ORTHANC"),
                            acceptor=SimpleNamespace(ae_title="RESEARCH"))
    status = store.store(body.getvalue(), synth.ExplicitVRLittleEndian, str(ds.SOPClassUID),
                         str(ds.SOPInstanceUID), assoc)
    assert status == 0  # stored: in the quarantine
    why = "de-identification failed: DeidError: a value the profile cannot handle"
    manifest = store.registry.received(str(ds.StudyInstanceUID), "r1")
    assert manifest == {str(ds.SOPInstanceUID): ("quarantined", why)}
    [entry] = list(store.quarantine.entries())
    assert entry.reason == why and entry.project_id == "IRB-9"
    assert not list((tmp_path / "store").rglob("*.dcm"))


WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
OP_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
RAW = "raw"  # a value written as these bytes (padding, several values), not as pydicom would write it


@pytest.mark.parametrize(("change", "reason"), [
    ({"Modality": (RAW, b" US ")}, "burned-in risk: modality US (Ultrasound)"),  # a CS may start with spaces
    ({"Modality": (RAW, b"CT\\US ")}, "burned-in risk: modality US (Ultrasound)"),  # any value counts
    ({"Modality": (RAW, b"us")}, "burned-in risk: modality US (Ultrasound)"),
    ({"BurnedInAnnotation": (RAW, b" YES")}, "BurnedInAnnotation=YES"),
    ({"SOPClassUID": (RAW, b" 1.2.840.10008.5.1.4.1.1.7\0")}, "burned-in risk: Secondary Capture"),
    ({"ImageType": ["DERIVED", "SECONDARY", "SCREEN SAVE"]}, "burned-in risk: image type SCREEN SAVE"),
    ({"ImageType": ["DERIVED", "SECONDARY", "MPR"]}, None),  # a reformat: stored
    ({"ImageType": (RAW, b"ORIGINAL\\PRIMARY\\ screen save")}, "burned-in risk: image type SCREEN SAVE"),
    ({"SOPClassUID": WSI, "Modality": "SM", "ImageType": ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]},
     "burned-in risk: image type LABEL"),
    ({"SOPClassUID": WSI, "Modality": "SM", "ImageType": ["DERIVED", "PRIMARY", "OVERVIEW", "NONE"]},
     "burned-in risk: image type OVERVIEW"),
    ({"SOPClassUID": WSI, "Modality": "SM", "ImageType": ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]}, None),
    ({"SOPClassUID": OP_8BIT, "Modality": "OP"}, "burned-in risk: Ophthalmic Photography 8 Bit"),
    ({"Modality": "GM"}, "burned-in risk: modality GM (General Microscopy)"),
    ({"Modality": "XC"}, "burned-in risk: modality XC"),
    ({"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]}, None),
])
def test_every_value_counts_and_both_store_paths_agree(tmp_path: Path, change: dict[str, object],
                                                       reason: str | None) -> None:
    """Modality, Image Type and Burned In Annotation: every value, without padding or case; SOP class
    without padding. The rules decide alike on the pydicom path (``reason_for``), on the byte-level
    path's values (``fast.Parsed``), and in the store (which takes the byte-level path when it can):
    quarantined with the reason, or stored."""
    ds = ct()
    for keyword, value in change.items():
        if isinstance(value, tuple) and value[0] == RAW:
            tag = BaseTag(tag_for_keyword(keyword) or 0)
            data = value[1] + b" " * (len(value[1]) % 2)
            vr = "UI" if keyword == "SOPClassUID" else "CS"
            ds._dict[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)
        else:
            setattr(ds, keyword, value)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    raw, ts, sop = body.getvalue(), str(synth.ExplicitVRLittleEndian), str(ds.SOPInstanceUID)
    meta = file_meta_bytes(synth.CTImageStorage, sop, ts, "ORTHANC")
    pydicom_reason = reason_for(read_file(meta + raw))
    parsed = fast.parse(meta, raw, ts)
    assert parsed is not None
    fast_reason = reason_of(parsed.values(0x00080016), parsed.values(0x00080060), parsed.values(0x00280301),
                            False, lambda: False, False, parsed.values(0x00080008))
    assert fast_reason == pydicom_reason
    assert (pydicom_reason or "").startswith(reason or "\0") if reason else pydicom_reason is None

    cfg = ScpConfig("RESEARCH", 0, "127.0.0.1", tmp_path / "store", ("ORTHANC",),
                    quarantine_dir=tmp_path / "q", deid_key=b"k" * 32)
    store = ResearchStore(cfg, projects=TEST_PROJECTS)
    store.registry.register(str(ds.StudyInstanceUID), "IRB-9", "r1", "RESEARCH")
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="ORTHANC"),
                            acceptor=SimpleNamespace(ae_title="RESEARCH"))
    assert store.store(raw, ts, synth.CTImageStorage, sop, assoc) == 0
    entries = list(store.quarantine.entries())
    if reason is None:
        assert not entries and len(list((tmp_path / "store" / "IRB-9").rglob("*.dcm"))) == 1
    else:
        assert len(entries) == 1 and entries[0].reason == pydicom_reason
        assert not (tmp_path / "store" / "IRB-9").exists()


def test_a_burned_in_annotation_yes_among_values_is_refused_by_the_profile_on_both_paths() -> None:
    """Burned In Annotation with a leading space or as a second value: the profile refuses it (the
    store's quarantine rule above decides first; a release without a pixel review would not)."""
    for value in (b" YES", b"NO\\YES "):
        ds = ct()
        tag = BaseTag(0x00280301)
        ds._dict[tag] = RawDataElement(tag, "CS", len(value), value, 0, False, True)
        ds.file_meta.TransferSyntaxUID = synth.ExplicitVRLittleEndian
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        d = Deidentifier(b"k" * 32)
        for apply in (d.apply_file, d.apply_file_pydicom):
            with pytest.raises(DeidError):
                apply(buf.getvalue(), "P")
