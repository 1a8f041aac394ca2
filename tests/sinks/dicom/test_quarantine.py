"""sinks.dicom.quarantine: the reasons (data-driven), and a de-identification error quarantines the
instance (the SCP's store path, called directly)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from sinks.dicom import synth
from sinks.dicom.deid import DeidError, fast
from sinks.dicom.quarantine import reason_for, rules
from sinks.dicom.scp import ResearchStore, ScpConfig

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
