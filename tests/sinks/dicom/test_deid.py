"""sinks.dicom.deid: the de-identification rules."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydicom.dataset import Dataset

from processors.ingest.pseudonym import date_shift_days, pseudonym
from sinks.dicom import deid, synth


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
    shift = timedelta(days=date_shift_days(key, pseudonym(key, "default", "APAT1")))
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
