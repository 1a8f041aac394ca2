"""A steward who tightens a project's options reaches the retrievals already under way: the SCP combines
the options the worker copied into the study's expectation at request time with the project's current
registration, keeping the stricter of each field (``sinks.dicom.scp.stricter``).

Real Orthanc and our real storage SCP on a real association (C-MOVE), as ``test_store_safety``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from radstream.config import Settings
from sinks.dicom import synth
from sinks.dicom.deid import DeidOptions
from sinks.dicom.deid.table import OPTIONS, compile_table
from sinks.dicom.expect import Registry
from sinks.dicom.projects import StaticProjects, StoreOptions
from sinks.dicom.scp import ResearchStore, ScpConfig, stricter

from .helpers import project
from .test_store_safety import US_IMAGE, move, store_for, upload

SAFE = "(0019,xx01) ACME 1.0"
OTHER_SAFE = "(0021,xx07) OTHER VENDOR"

# every option field: (its loosest value, its strictest value). A field the test does not list fails
# ``test_every_option_field_is_listed_here``: a new option must say how it tightens, here and in scp.py.
LOOSE_STRICT: dict[str, tuple[Any, Any]] = {
    "identified": (True, False),
    "allow_burned_in_risk": (True, False),
    "deid.retain_modified_dates": (True, False),
    "deid.retain_patient_characteristics": (True, False),
    "deid.retain_device_identity": (True, False),
    "deid.retain_uids": (True, False),
    "deid.clean_descriptors": (True, False),
    "deid.private_safe_list": ((SAFE, OTHER_SAFE), ()),
}


def _with(name: str, value: Any, base: StoreOptions | None = None) -> StoreOptions:
    base = base or StoreOptions()
    if name.startswith("deid."):
        return dataclasses.replace(base, deid=dataclasses.replace(base.deid, **{name[5:]: value}))
    return dataclasses.replace(base, **{name: value})


def _get(opts: StoreOptions, name: str) -> Any:
    return getattr(opts.deid, name[5:]) if name.startswith("deid.") else getattr(opts, name)


def test_every_option_field_is_listed_here() -> None:
    fields = {f.name for f in dataclasses.fields(StoreOptions) if f.name != "deid"}
    fields |= {f"deid.{f.name}" for f in dataclasses.fields(DeidOptions)}
    assert fields == set(LOOSE_STRICT)


def test_an_option_field_scp_does_not_handle_stops_the_import() -> None:
    """The check ``sinks.dicom.scp`` runs when imported: a field without a rule is named."""
    from sinks.dicom import scp

    rule = scp._DEID_COMBINE.pop("clean_descriptors")
    try:
        with pytest.raises(RuntimeError, match="clean_descriptors"):
            scp._check_combined()
    finally:
        scp._DEID_COMBINE["clean_descriptors"] = rule
    scp._check_combined()


@pytest.mark.parametrize("name", sorted(LOOSE_STRICT))
def test_each_field_takes_the_stricter_value_whichever_side_has_it(name: str) -> None:
    loose_value, strict_value = LOOSE_STRICT[name]
    loosest = StoreOptions()
    for other, (lv, _sv) in LOOSE_STRICT.items():
        loosest = _with(other, lv, loosest)
    tightened = _with(name, strict_value, loosest)
    for a, b in ((loosest, tightened), (tightened, loosest)):
        combined = stricter(a, b)
        assert _get(combined, name) == strict_value
        for other in LOOSE_STRICT:  # the other fields stay as both had them
            if other != name:
                assert _get(combined, other) == _get(loosest, other), other
    assert stricter(loosest, loosest) == loosest


def test_safe_lists_intersect_as_parsed_entries() -> None:
    a = _with("deid.private_safe_list", (SAFE, OTHER_SAFE, "not an entry"))
    b = _with("deid.private_safe_list", ("(0019,XX01) ACME 1.0", "(0023,xx01) THIRD"))
    assert stricter(a, b).deid.private_safe_list == (SAFE,)
    assert stricter(b, a).deid.private_safe_list == ("(0019,XX01) ACME 1.0",)


def test_every_deid_flag_keeps_more_when_on_so_and_is_the_stricter() -> None:
    """Why every DeidOptions flag combines with AND (Clean Descriptors included): each option only ever
    moves an attribute from removed/emptied/dummy/keyed towards kept, cleaned or shifted in the compiled
    PS3.15 E.1-1 table, never the other way."""
    keeps = {"X": 0, "Z": 0, "D": 0, "U": 1, "V": 1, "P": 1, "A": 1, "S": 2, "C": 2, "K": 3}
    base = compile_table(frozenset()).actions
    columns = {"uids": "retain_uids", "device_identity": "retain_device_identity",
               "patient_characteristics": "retain_patient_characteristics",
               "modified_dates": "retain_modified_dates", "clean_descriptors": "clean_descriptors"}
    assert set(columns.values()) == {n[5:] for n in LOOSE_STRICT if n.startswith("deid.")} - {
        "private_safe_list"}
    for option in OPTIONS:
        with_it = compile_table(frozenset([option])).actions
        changed = 0
        for tag in set(base) & set(with_it):
            if base[tag] != with_it[tag]:
                changed += 1
                assert keeps[with_it[tag]] > keeps[base[tag]], (option, hex(tag), base[tag], with_it[tag])
        # a tag the option drops from the table falls to the rule for unlisted attributes: UIDs kept as
        # received (Retain UIDs), dates shifted by the walk instead of removed (Modified Dates)
        for tag in set(base) - set(with_it):
            assert (option, base[tag]) in (("uids", "V"), ("modified_dates", "X")), (option, hex(tag))
        assert changed, option
        assert LOOSE_STRICT[f"deid.{columns[option]}"] == (True, False)


# -- through the real SCP --------------------------------------------------------------------------------
LOOSE = project("TIGHT-1", identified=False, allow_burned_in_risk=True, deid=DeidOptions(
    retain_modified_dates=True, retain_patient_characteristics=True, retain_device_identity=True,
    retain_uids=True, clean_descriptors=True, private_safe_list=(SAFE,)))
STRICT = dataclasses.replace(LOOSE, allow_burned_in_risk=False, registered_by="steward2",
                             deid=DeidOptions(retain_modified_dates=False))


def _study(accession: str) -> tuple[synth.StudySpec, list[Dataset]]:
    """A CT image with a device serial number, a patient's weight and a (safe-listed) private attribute,
    and an ultrasound image (a burned-in risk)."""
    s = synth.StudySpec(accession, f"{accession}PAT", "TIGHT^TEST", "20240507", 2, rows=16, cols=16)
    dss = [synth.instance(s, i) for i in range(2)]
    for ds in dss:
        ds.DeviceSerialNumber = "SN-4711"
        ds.PatientWeight = "81"
        ds.add_new(0x00190010, "LO", "ACME 1.0")
        ds.add_new(0x00191001, "LO", "VENDOR VALUE")
    us = dss[1]
    us.SOPClassUID = us.file_meta.MediaStorageSOPClassUID = UID(US_IMAGE)
    us.Modality = "US"
    return s, dss


def _codes(ds: Dataset) -> set[str]:
    return {str(item.CodeValue) for item in ds.DeidentificationMethodCodeSequence}


def test_a_project_tightened_after_the_request_is_stored_with_the_tighter_options(
        pacs_settings: Settings) -> None:
    """The worker registered the study with the loose options; the steward re-registers the project with
    every option off before the instances arrive: the CT image is stored with the Basic Profile alone,
    the ultrasound image is quarantined."""
    s, dss = _study("T1")
    upload(pacs_settings, dss)
    projects = StaticProjects([LOOSE])
    store = store_for(pacs_settings, projects)
    store.start()
    try:
        projects.projects[LOOSE.project_id] = STRICT  # after the request copied the loose options ...
        result = move(pacs_settings, store, s.study_uid, LOOSE.project_id,
                      options=LOOSE.store_options.to_dict())  # ... which is what the worker registers
    finally:
        store.stop()
    assert result.outcome == "completed"
    received = Registry(pacs_settings.research_store_dir).received(s.study_uid, "r1")
    assert received == {s.sop_uid(0): ("stored", ""),
                        s.sop_uid(1): ("quarantined", "burned-in risk: Ultrasound Image Storage")}
    files = list((pacs_settings.research_store_dir / LOOSE.project_id).rglob("*.dcm"))
    assert len(files) == 1
    assert s.study_uid not in str(files[0])  # UIDs remapped
    ds = pydicom.dcmread(files[0])
    assert ds.SOPInstanceUID != s.sop_uid(0) and ds.StudyInstanceUID != s.study_uid
    assert _codes(ds) == {"113100"}  # the Basic Profile and no option
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    # removed or a dummy value, never the received one nor its cleaned words
    assert ds.get("DeviceSerialNumber") in (None, "", "ANONYMIZED") and not ds.get("PatientWeight")
    assert "CHEST" not in str(ds.get("StudyDescription", ""))
    assert (0x0019, 0x1001) not in ds and (0x0019, 0x0010) not in ds


def test_a_project_loosened_after_the_request_keeps_the_requests_options(pacs_settings: Settings) -> None:
    """The other way round: a registration made looser applies to later requests, not to this one."""
    s, dss = _study("T2")
    upload(pacs_settings, dss[:1])
    projects = StaticProjects([STRICT])
    store = store_for(pacs_settings, projects)
    store.start()
    try:
        projects.projects[LOOSE.project_id] = LOOSE
        result = move(pacs_settings, store, s.study_uid, LOOSE.project_id,
                      options=STRICT.store_options.to_dict())
    finally:
        store.stop()
    assert result.outcome == "completed"
    (file,) = (pacs_settings.research_store_dir / LOOSE.project_id).rglob("*.dcm")
    ds = pydicom.dcmread(file)
    assert _codes(ds) == {"113100"} and ds.StudyInstanceUID != s.study_uid
    assert ds.DeviceSerialNumber == "ANONYMIZED"


def test_a_study_under_way_follows_the_tightening_from_its_next_instance(tmp_path: Path) -> None:
    """The SCP keeps a study's policy between its instances: the re-registration (a new registration
    object) makes the next instance decide again, with the tighter options."""
    projects = StaticProjects([LOOSE])
    store = ResearchStore(ScpConfig("RESEARCH", 0, "127.0.0.1", tmp_path / "store", ("ORTHANC",),
                                    quarantine_dir=tmp_path / "q", deid_key=b"k" * 32), projects=projects)
    s, dss = _study("T3")
    store.registry.register(s.study_uid, LOOSE.project_id, "r1", "RESEARCH",
                            options=LOOSE.store_options.to_dict())
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="ORTHANC"),
                            acceptor=SimpleNamespace(ae_title="RESEARCH"))

    def send(ds: Dataset) -> int:
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, False
        write_dataset(body, ds)
        return store.store(body.getvalue(), synth.ExplicitVRLittleEndian, str(ds.SOPClassUID),
                           str(ds.SOPInstanceUID), assoc)

    first = dss[0]
    second = synth.instance(s, 1)  # a second CT image of the study
    second.DeviceSerialNumber = "SN-4711"
    assert send(first) == 0
    projects.projects[LOOSE.project_id] = STRICT
    assert send(second) == 0
    stored = {str(ds.InstanceNumber): ds for ds in (
        pydicom.dcmread(p) for p in (tmp_path / "store" / LOOSE.project_id).rglob("*.dcm"))}
    assert stored["1"].SOPInstanceUID == s.sop_uid(0)  # before: the loose options (UIDs retained)
    assert stored["1"].DeviceSerialNumber == "SN-4711"
    assert stored["2"].SOPInstanceUID != s.sop_uid(1) and stored["2"].DeviceSerialNumber == "ANONYMIZED"
    assert _codes(stored["2"]) == {"113100"}
    assert send(dss[1]) == 0 and store.stats.quarantined == 1  # the ultrasound image: quarantined now
