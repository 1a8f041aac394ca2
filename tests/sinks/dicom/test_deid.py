"""sinks.dicom.deid: the PS3.15 E.1-1 profile, its options, the keyed values and the fast encoding."""

from __future__ import annotations

import io
import struct
from datetime import date, timedelta

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from processors.ingest.pseudonym import date_shift_days, pseudonym
from sinks.dicom import deid, synth
from sinks.dicom.deid import table

from . import leak_corpus

KEY = b"secret-key-of-32-bytes----------"


def _ds() -> Dataset:
    spec = synth.specs(1, 1)[0]
    ds = synth.instance(spec, 0)
    ds.add_new(0x00091001, "LO", "private secret")
    ds.OtherPatientIDs = "X123"
    return ds


def _bytes(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _shift(day: str, patient_id: str = "APAT1") -> str:
    days = date_shift_days(KEY, pseudonym(KEY, "default", patient_id))
    d = date(int(day[:4]), int(day[4:6]), int(day[6:8])) - timedelta(days=days)
    return d.strftime("%Y%m%d")


def _codes(ds: Dataset) -> list[str]:
    return [str(c.CodeValue) for c in ds.DeidentificationMethodCodeSequence]


# -- the table -----------------------------------------------------------------------------------
def test_our_table_is_the_librarys_table() -> None:
    """Every row of dicom-anonymizer's E.1-1 table, with its action (composites resolved), except the rows
    of additions.tsv; the option rows name only attributes of that table."""
    lib_tags, lib_masks = table.library_table()
    compiled = table.compile_table(frozenset())
    additions = {int(r["tag"], 16): r["action"] for r in table._rows("additions.tsv") if "x" not in r["tag"]}
    assert len(lib_tags) > 600
    for tag, group in lib_tags.items():
        want = additions.get(tag, table.GROUPS[group])
        assert compiled.actions[tag] == want, f"{tag:08X}"
    # and, without Modified Dates, the dictionary's dates and times the table does not list: removed
    unlisted = {t for t, _ in leak_corpus.unlisted_temporal()}
    assert unlisted and all(compiled.actions[t] == "X" for t in unlisted)
    # and the rules by VR of unlisted.tsv on the rest of the dictionary (UIDs keyed, names dummy, URLs and
    # free text gone), but for the free-text exceptions of unlisted_text.tsv (kept, dummied or emptied)
    by_vr = {r["vr"]: r["action"] for r in table._rows("unlisted.tsv")}
    text = table.unlisted_text()
    rest = {t: vr for t, vr in table.unlisted(frozenset(lib_tags) | set(additions) | unlisted, lib_masks)}
    ruled = {t for t, vr in rest.items() if vr in by_vr}
    assert {rest[t] for t in ruled} == {"UI", "PN", "UR", "ST", "LT", "UT", "UC"}
    assert set(text) <= ruled
    assert all(compiled.actions[t] == text.get(t, by_vr[rest[t]]) for t in ruled)
    assert set(compiled.actions) == set(lib_tags) | set(additions) | unlisted | ruled
    with_dates = table.compile_table(frozenset({"modified_dates"}))
    assert set(with_dates.actions).isdisjoint(unlisted - set(additions))
    assert {(m.value, m.mask) for m in lib_masks} <= {(m.value, m.mask) for m in compiled.masks}
    for option, rows in table.option_rows().items():
        assert rows and set(rows) <= set(lib_tags), option


def test_option_columns_change_only_their_rows() -> None:
    base = table.compile_table(frozenset())
    for option, rows in table.option_rows().items():
        with_it = table.compile_table(frozenset({option}))
        changed = {t for t in base.actions if base.actions[t] != with_it.actions.get(t)}
        # Modified Dates also drops the removal of the unlisted dates (the walk shifts those)
        unlisted = {t for t, _ in leak_corpus.unlisted_temporal()} if option == "modified_dates" else set()
        if option == "uids":  # Retain UIDs also keeps the UIDs the table does not list (unlisted.tsv)
            unlisted = {t for t, a in base.actions.items() if a == "V"}
        assert changed and changed <= set(rows) | unlisted, option


# -- each action ------------------------------------------------------------------------------------
def test_each_action_type() -> None:
    ds = _ds()
    ds.StudyID = "S-77"  # Z
    ds.PersonName = "DOE^JOHN"  # D (PN)
    ds.AnnotationGroupUID = "1.2.3.4"  # D on a UID: keyed
    ds.ConsultingPhysicianName = "DR^WHO"  # Z
    ds.DeviceUID = "1.2.3.99"  # U
    ds.AcquisitionDateTime = "20240115093000.5+0100"  # shifted with Modified Dates
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = synth.CTImageStorage, "1.2.3.5"
    ds.ReferencedImageSequence = Sequence([ref])  # X/Z/U*: kept, UIDs in it replaced
    obs = Dataset()
    obs.VerifyingObserverName, obs.VerifyingOrganization = "SMITH^ANNA", "HOSPITAL X"
    obs.VerifyingObserverIdentificationCodeSequence = Sequence([Dataset()])  # Z: emptied
    ds.VerifyingObserverSequence = Sequence([obs])  # D on a sequence: every value a dummy
    ds.OperatorsName = "OPERATOR^ONE"  # X/Z/D -> D
    ds.RequestAttributesSequence = Sequence([Dataset()])  # X
    deid.Deidentifier(KEY).apply(ds, "P1")
    assert "OtherPatientIDs" not in ds and "RequestAttributesSequence" not in ds  # X
    assert ds.StudyID == "" and ds.ConsultingPhysicianName == ""  # Z
    assert ds.PersonName == "ANONYMIZED" and ds.OperatorsName == "ANONYMIZED"  # D
    assert ds.AnnotationGroupUID == deid.remap_uid(KEY, "1.2.3.4")
    assert ds.DeviceUID == deid.remap_uid(KEY, "1.2.3.99")  # U
    assert ds.AcquisitionDateTime == _shift("20240115") + "093000.5+0100"
    [kept] = ds.ReferencedImageSequence
    assert kept.ReferencedSOPClassUID == synth.CTImageStorage
    assert kept.ReferencedSOPInstanceUID == deid.remap_uid(KEY, "1.2.3.5")
    [dummy] = ds.VerifyingObserverSequence
    assert dummy.VerifyingObserverName == dummy.VerifyingOrganization == "ANONYMIZED"
    assert len(dummy.VerifyingObserverIdentificationCodeSequence) == 1  # D replaces inside, keeps items
    assert ds.StudyTime == "120000"  # a whole-day shift keeps the time of day


def test_nested_sequences_and_private_attributes_at_every_level() -> None:
    inner = Dataset()
    inner.PatientName, inner.PatientID, inner.InstitutionName = "INNER^NAME", "OTHER-PAT", "INNER HOSP"
    inner.add_new(0x00191001, "LO", "private inner")
    middle = Dataset()
    middle.AnatomicRegionSequence = Sequence([inner])  # not in the table: kept, walked
    middle.AcquisitionDate = "20240110"
    ds = _ds()
    ds.ProcedureCodeSequence = Sequence([middle])  # not in the table
    deid.Deidentifier(KEY).apply(ds)
    [m] = ds.ProcedureCodeSequence
    [i] = m.AnatomicRegionSequence
    assert m.AcquisitionDate == _shift("20240110")
    assert i.PatientName == "" and i.InstitutionName == "ANONYMIZED"
    assert i.PatientID == pseudonym(KEY, "default", "OTHER-PAT")  # that patient's pseudonym
    assert not any(e.tag.is_private for e in i) and not any(e.tag.is_private for e in ds)


def test_curves_and_overlays_are_removed() -> None:
    ds = leak_corpus.build().instances[0]
    deid.Deidentifier(KEY).apply(ds)
    assert not [e for e in ds if e.tag.group >> 8 in (0x50, 0x60)]


# -- private safe list ------------------------------------------------------------------------------
def test_private_safe_list_keeps_only_what_it_names() -> None:
    ds = leak_corpus.build().instances[0]
    safe = deid.DeidOptions(private_safe_list=(leak_corpus.SAFE_ENTRY,))
    out = deid.Deidentifier(KEY).apply(ds, options=safe)
    private = {int(e.tag): e.value for e in out if e.tag.is_private}
    assert private == {0x00190010: leak_corpus.SAFE_CREATOR, 0x00191010: 2.5}
    assert "113111" in _codes(out)
    plain = deid.Deidentifier(KEY).apply(leak_corpus.build().instances[0])
    assert not [e for e in plain if e.tag.is_private] and "113111" not in _codes(plain)


def test_a_bad_safe_list_entry_is_an_error() -> None:
    with pytest.raises(deid.DeidError):
        deid.Deidentifier(KEY).apply(_ds(), options=deid.DeidOptions(private_safe_list=("(0010,0010) X",)))


# -- options ------------------------------------------------------------------------------------------
def _hits(options: deid.DeidOptions, tokens: tuple[bytes, ...] = leak_corpus.TOKENS) -> set[int]:
    """The tags (last of each path) whose traceable values survive de-identification with ``options``."""
    raw = leak_corpus.encode(leak_corpus.build().instances[0])
    out, _ = deid.Deidentifier(KEY).apply_file(raw, "P1", options)
    return {int(h.rsplit("(", 1)[1][:9].replace(",", ""), 16)
            for h in leak_corpus.element_hits(leak_corpus.read(out), tokens)}


@pytest.mark.parametrize(("option", "column"), [
    ("retain_device_identity", "device_identity"),
    ("retain_patient_characteristics", "patient_characteristics"),
    ("retain_uids", "uids"),
])
def test_a_retain_option_keeps_exactly_its_attributes(option: str, column: str) -> None:
    keeps = {t for t, a in table.option_rows()[column].items() if a == "K"}
    assert _hits(deid.DeidOptions()) == set()
    if column == "uids":  # and the UIDs the table does not list (unlisted.tsv), the file meta's SOP UID
        base = table.compile_table(frozenset())
        keeps |= {t for t, a in base.actions.items() if a == "V"} | {0x00020003}
    hits = _hits(deid.DeidOptions(**{option: True}))  # type: ignore[arg-type]
    assert hits and hits <= keeps


def test_clean_descriptors_cleans_and_never_keeps_unknown_words() -> None:
    assert _hits(deid.DeidOptions(clean_descriptors=True)) == set()
    ds = _ds()
    ds.SeriesDescription = "AX T1 post CONTRAST Smith 2024-01-15 MRN12345 3 mm"
    ds.ProtocolName = "Dr Jones special"
    ds.ImageComments = "Patient John Doe, left knee"
    out = deid.Deidentifier(KEY).apply(ds, options=deid.DeidOptions(clean_descriptors=True))
    assert out.SeriesDescription == "AX T1 post CONTRAST mm"
    assert out.ProtocolName == "" and out.ImageComments == "left knee"
    assert out.StudyDescription == "SYNTHETIC CT CHEST"  # every word is in the vocabulary
    assert "113105" in _codes(out)
    off = deid.Deidentifier(KEY).apply(_ds())
    assert "SeriesDescription" not in off and "113105" not in _codes(off)


def test_without_modified_dates_dates_are_removed_not_shifted() -> None:
    ds = _ds()
    ds.AcquisitionDate, ds.AcquisitionTime = "20240101", "101010"
    out = deid.Deidentifier(KEY).apply(ds, options=deid.DeidOptions(retain_modified_dates=False))
    assert out.StudyDate == "" and out.StudyTime == "" and out.SeriesDate == "19000101"
    assert out.AcquisitionDate == "" and out.AcquisitionTime == ""  # X/Z -> Z
    assert out.LongitudinalTemporalInformationModified == "REMOVED" and "113107" not in _codes(out)
    assert _hits(deid.DeidOptions(retain_modified_dates=False), (leak_corpus.TIME.encode(),)) == set()


@pytest.mark.parametrize("fast_path", [True, False])
def test_dates_the_table_does_not_list_are_removed_or_shifted_like_the_listed_ones(fast_path: bool) -> None:
    """StudyUpdateDateTime, ExpiryDate, SecondaryReviewTime ... have no row in E.1-1: without Modified Dates
    they are removed (the file says REMOVED), with it their dates are shifted as the listed ones are."""
    ds = _ds()
    ds.StudyUpdateDateTime, ds.ExpiryDate, ds.SecondaryReviewTime = "20240101101010", "20240102", "101010"
    inner = Dataset()
    inner.ExpiryDate = "20240103"
    ds.ProcedureCodeSequence = Sequence([inner])  # not in the table either: its items are walked
    data = _bytes(ds)
    d = deid.Deidentifier(KEY)
    apply = d.apply_file if fast_path else d.apply_file_pydicom
    _, off = apply(data, "P1", deid.DeidOptions(retain_modified_dates=False))
    assert off.LongitudinalTemporalInformationModified == "REMOVED"
    for kw in ("StudyUpdateDateTime", "ExpiryDate", "SecondaryReviewTime"):
        assert kw not in off, kw
    assert "ExpiryDate" not in off.ProcedureCodeSequence[0]
    _, on = apply(data, "P1", deid.DeidOptions(retain_modified_dates=True))
    assert on.LongitudinalTemporalInformationModified == "MODIFIED"
    assert on.StudyUpdateDateTime == _shift("20240101") + "101010" and on.ExpiryDate == _shift("20240102")
    assert on.ProcedureCodeSequence[0].ExpiryDate == _shift("20240103")
    assert on.SecondaryReviewTime == "101010"  # times of day are kept, as the listed ones'


@pytest.mark.parametrize("fast_path", [True, False])
def test_each_side_of_a_date_range_is_shifted_and_an_unreadable_date_removed(fast_path: bool) -> None:
    """A DT or DA range (``a-b``) has a date on each side: both are shifted (the second one was kept as
    received); a DT's UTC offset is not a range; a value that is no date is removed, not kept."""
    ds = _ds()
    ds.AcquisitionDateTime = "20240105120000-20240106120000"  # listed (shifted by the option)
    ds.StudyUpdateDateTime = "20240105120000.5+0100"  # unlisted, with an offset
    ds.ExpiryDate = "20240102-20240103"  # unlisted DA range
    ds.InstanceCreationDate = "-20240104"  # an open range
    ds.ContentDate = "2024-01-04"  # not a DICOM date
    d = deid.Deidentifier(KEY)
    apply = d.apply_file if fast_path else d.apply_file_pydicom
    _, on = apply(_bytes(ds), "P1", deid.DeidOptions(retain_modified_dates=True))
    assert on.AcquisitionDateTime == f"{_shift('20240105')}120000-{_shift('20240106')}120000"
    assert on.StudyUpdateDateTime == _shift("20240105") + "120000.5+0100"
    assert on.ExpiryDate == f"{_shift('20240102')}-{_shift('20240103')}"
    assert on.InstanceCreationDate == "-" + _shift("20240104")
    assert on.ContentDate == ""


@pytest.mark.parametrize("fast_path", [True, False])
def test_attributes_the_table_does_not_list_are_ruled_by_their_vr(fast_path: bool) -> None:
    """E.1.1 keeps what E.1-1 does not list; unlisted.tsv: every other UID keyed as the listed ones are
    (a well-known one kept), every person's name a dummy, URLs removed, a public attribute the dictionary
    does not know removed (even a UN value holding a Patient's Name)."""
    ds = _ds()
    sop, sop2 = str(ds.SOPInstanceUID), "1.2.3.4.5.6.7"
    ds.SOPInstanceUIDOfConcatenationSource = sop  # (0020,0242)
    ds.MultiFrameSourceSOPInstanceUID = sop2  # (0008,1167)
    ds.VolumeFrameOfReferenceUID = str(ds.FrameOfReferenceUID)  # (0020,9312)
    ds.EquipmentFrameOfReferenceUID = "1.2.840.10008.1.4.1.1"  # well-known (Talairach): kept
    ds.SOPClassesInStudy = [str(ds.SOPClassUID), "1.3.12.2.1107.5.9.1"]  # classes (a vendor's): kept
    ds.EvaluatorName, ds.SecondaryReviewerName = "DOE^JANE", "ROE^RICHARD"  # (0014,2006), (0014,0104)
    ds.ContactDisplayName, ds.ContactURI = "Dr Jane Doe, ward 7", "tel:+41-44-000-0000"
    ds.RetrieveURL = f"https://pacs.hospital.invalid/wado/studies/{ds.StudyInstanceUID}"
    inner = Dataset()
    inner.EvaluatorName = "NESTED^EVALUATOR"
    inner.MultiFrameSourceSOPInstanceUID = sop
    ds.ProcedureCodeSequence = Sequence([inner])  # not in the table: its items walked
    ds._dict[BaseTag(leak_corpus.UNKNOWN_PUBLIC)] = leak_corpus.unknown_public_un()
    ds.add_new(0x00221FF2, "LO", "UNKNOWN PUBLIC TEXT")
    d = deid.Deidentifier(KEY)
    apply = d.apply_file if fast_path else d.apply_file_pydicom
    data, out = apply(_bytes(ds), "P1")
    assert out.SOPInstanceUIDOfConcatenationSource == out.SOPInstanceUID == deid.remap_uid(KEY, sop)
    assert out.MultiFrameSourceSOPInstanceUID == deid.remap_uid(KEY, sop2)
    assert out.ProcedureCodeSequence[0].MultiFrameSourceSOPInstanceUID == out.SOPInstanceUID
    assert out.VolumeFrameOfReferenceUID == out.FrameOfReferenceUID != ds.FrameOfReferenceUID
    assert out.EquipmentFrameOfReferenceUID == "1.2.840.10008.1.4.1.1"
    assert out.SOPClassesInStudy == ds.SOPClassesInStudy and out.SOPClassUID == ds.SOPClassUID
    assert out.EvaluatorName == out.SecondaryReviewerName == "ANONYMIZED"
    assert out.ProcedureCodeSequence[0].EvaluatorName == "ANONYMIZED"
    for kw in ("ContactDisplayName", "ContactURI", "RetrieveURL"):
        assert kw not in out, kw
    assert leak_corpus.UNKNOWN_PUBLIC not in out and 0x00221FF2 not in out
    for secret in (sop, sop2, "DOE", "ROE", "NESTED", "Jane", "+41", "hospital", "ZQXL", "UNKNOWN PUBLIC"):
        assert secret.encode() not in data, secret
    assert "113110" not in _codes(out)  # not retained: and true now
    # Retain UIDs keeps the unlisted ones too (and says so)
    _, kept = apply(_bytes(ds), "P1", deid.DeidOptions(retain_uids=True))
    assert kept.SOPInstanceUIDOfConcatenationSource == sop and kept.MultiFrameSourceSOPInstanceUID == sop2
    assert "113110" in _codes(kept)


def test_code_sequence_names_each_applied_option_only() -> None:
    every = deid.DeidOptions(retain_modified_dates=True, retain_patient_characteristics=True,
                             retain_device_identity=True, retain_uids=True, clean_descriptors=True,
                             private_safe_list=(leak_corpus.SAFE_ENTRY,))
    out = deid.Deidentifier(KEY).apply(_ds(), options=every)
    assert _codes(out) == ["113100", "113105", "113107", "113108", "113109", "113110", "113111"]
    assert {str(c.CodingSchemeDesignator) for c in out.DeidentificationMethodCodeSequence} == {"DCM"}
    none = deid.Deidentifier(KEY).apply(_ds(), options=deid.DeidOptions(retain_modified_dates=False))
    assert _codes(none) == ["113100"]
    assert none.PatientIdentityRemoved == "YES" and "pixel data not cleaned" in none.DeidentificationMethod
    assert len(deid.METHOD) <= 64


# -- keyed and consistent ---------------------------------------------------------------------------
def test_deid_is_consistent_and_keyed() -> None:
    a, b = _ds(), _ds()
    orig_study, orig_date = str(a.StudyInstanceUID), str(a.StudyDate)
    d = deid.Deidentifier(KEY)
    d.apply(a, "P1")
    out, b2 = d.apply_file(_bytes(b), "P1")
    assert a.StudyInstanceUID == b2.StudyInstanceUID == deid.remap_uid(KEY, orig_study) != orig_study
    assert deid.remap_uid(b"another key", orig_study) != a.StudyInstanceUID
    assert len(a.StudyInstanceUID) <= 64 and a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.StudyDate == b2.StudyDate == _shift(orig_date)
    assert "OtherPatientIDs" not in a and "StudyDescription" not in a
    assert a.PatientBirthDate == "" and a.ReferringPhysicianName == ""
    assert a.AccessionNumber == deid.pseudonym(KEY, "accession", "A1")
    # the warehouse's pseudonym of the patient (ingest pseudonymisation with the same key and site)
    assert a.PatientID == a.PatientName == b2.PatientID == pseudonym(KEY, "default", "APAT1")
    assert a.SOPClassUID == synth.CTImageStorage  # standard UIDs are kept
    # no Clinical Trial Subject module of ours: the project id alone would leave it incomplete (Type 1)
    trial = ("ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
             "ClinicalTrialSiteID", "ClinicalTrialSiteName", "ClinicalTrialSubjectID",
             "ClinicalTrialSubjectReadingID")
    assert not [kw for ds in (a, b2) for kw in trial if kw in ds]


def test_deid_needs_a_key() -> None:
    with pytest.raises(ValueError):
        deid.Deidentifier(b"")


# -- errors ---------------------------------------------------------------------------------------------
def test_a_failure_raises_deid_error_and_claims_nothing() -> None:
    ds = _ds()
    ds.PatientIdentityRemoved = "YES"  # an upstream claim must not survive a failed run
    # a Procedure Code Sequence whose item holds a sequence that never ends: pydicom fails when the walk
    # opens it (pydicom reads most broken items leniently)
    item = struct.pack("<HH2sHI", 0x0008, 0x2218, b"SQ", 0, 0xFFFFFFFF) + b"gar\x00"
    raw = _bytes(ds) + struct.pack("<HH2sHI", 0x0008, 0x1032, b"SQ", 0, 24) + b"\xfe\xff\x00\xe0" \
        + struct.pack("<I", 16) + item
    d = deid.Deidentifier(KEY)
    parsed = dcmread(io.BytesIO(raw))
    with pytest.raises(deid.DeidError, match=r"\(0008,1032\)") as err:
        d.apply(parsed)
    assert "gar" not in str(err.value)  # the reason names the attribute, never its value
    assert "PatientIdentityRemoved" not in parsed
    with pytest.raises(deid.DeidError):
        d.apply_file(raw)
    with pytest.raises(deid.DeidError):
        d.apply_file(b"not dicom at all")


def test_burned_in_annotation_is_refused() -> None:
    ds = _ds()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(deid.DeidError, match="Burned In Annotation"):
        deid.Deidentifier(KEY).apply_file(_bytes(ds))
    ds.BurnedInAnnotation = "NO"
    assert deid.Deidentifier(KEY).apply(ds).PatientIdentityRemoved == "YES"


# -- encoding ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                DeflatedExplicitVRLittleEndian])
def test_apply_file_reads_and_writes_what_pydicom_would(ts: str) -> None:
    raw = _bytes(_ds(), ts)
    assert deid.read_file(raw) == dcmread(io.BytesIO(raw))
    out, ds = deid.Deidentifier(KEY).apply_file(raw, "P1")
    mine = dcmread(io.BytesIO(out))
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    theirs = dcmread(io.BytesIO(buf.getvalue()))
    assert mine == theirs and mine.file_meta.TransferSyntaxUID == ts
    assert mine.PixelData == _ds().PixelData


def test_apply_file_keeps_encapsulated_pixel_data() -> None:
    ds = _ds()
    frame = b"\xff\xd8" + b"\x11" * 100 + b"\xff\xd9"
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = "YBR_FULL_422", 8, 8, 7
    out, _ = deid.Deidentifier(KEY).apply_file(_bytes(ds, JPEGBaseline8Bit))
    back = dcmread(io.BytesIO(out))
    assert back.file_meta.TransferSyntaxUID == JPEGBaseline8Bit and back.PixelData == ds.PixelData


def test_burned_in_annotation_needs_a_pixel_review() -> None:
    """Burned In Annotation YES: no clean claim without a steward's review of the pixels (a release)."""
    d = deid.Deidentifier(b"secret-key-of-32-bytes----------")
    ds = _ds()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(deid.DeidError, match="Burned In Annotation"):
        d.apply(ds, "P1")
    again = _ds()
    again.BurnedInAnnotation = "YES"
    reviewed = d.apply(again, "P1", pixels_reviewed=True)
    assert reviewed.PatientIdentityRemoved == "YES" and reviewed.BurnedInAnnotation == "YES"
