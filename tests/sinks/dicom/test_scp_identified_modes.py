"""An identified project's tree is the SCP user's alone (directories 0700, files 0600); a de-identified
project's is the owner's and the store's group's (0750, 0640), never other users'. Every writer into a
project tree: the C-STORE (journaled and fsync'd paths), a steward's quarantine release, and the
journal's replay after a crash.

Real Orthanc and our real storage SCP on a real association (C-MOVE), as ``test_store_safety``."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID

from radstream.config import Settings
from sinks.dicom import synth
from sinks.dicom.journal import Journal
from sinks.dicom.projects import StaticProjects
from sinks.dicom.scp import ResearchStore, ScpConfig, header_of

from .conftest import spec
from .helpers import project
from .test_scp import ASSOC, _received
from .test_store_safety import US_IMAGE, move, store_for, upload

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The usual umask: what the store does not restrict itself shows as group/other bits."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def modes_below(project_dir: Path) -> tuple[set[int], set[int]]:
    """(modes of the directories from the project's down, modes of its files)."""
    dirs = {mode(project_dir)} | {mode(p) for p in project_dir.rglob("*") if p.is_dir()}
    files = {mode(p) for p in project_dir.rglob("*") if p.is_file()}
    return dirs, files


@pytest.mark.parametrize("journal_mb", [64, 0], ids=["journaled", "fsynced"])
def test_an_identified_projects_tree_is_owner_only_and_a_deidentified_ones_owner_and_group(
        pacs_settings: Settings, journal_mb: int) -> None:
    a1, a2 = spec("A", 1), spec("A", 2)
    projects = StaticProjects([project("ID-1"), project("DE-1", identified=False)])
    store = store_for(pacs_settings, projects, journal_mb=journal_mb)
    store.start()
    try:
        assert move(pacs_settings, store, a1.study_uid, "ID-1", rid="i").outcome == "completed"
        assert move(pacs_settings, store, a2.study_uid, "DE-1", rid="d").outcome == "completed"
    finally:
        store.stop()
    root = pacs_settings.research_store_dir
    files = list((root / "ID-1").rglob("*.dcm"))
    assert len(files) == a1.images and pydicom.dcmread(files[0]).PatientID == a1.patient_id  # identified
    assert modes_below(root / "ID-1") == ({0o700}, {0o600})
    assert len(list((root / "DE-1").rglob("*.dcm"))) == a2.images
    assert modes_below(root / "DE-1") == ({0o750}, {0o640})


def test_a_tree_made_while_de_identified_is_closed_when_the_project_becomes_identified(
        pacs_settings: Settings) -> None:
    """The project's directory already exists 0750 (de-identified files in it); re-registered identified,
    its next instance closes every level it passes to the group, from the project's directory down."""
    c1, c2 = spec("C", 1), spec("C", 2)
    projects = StaticProjects([project("TURN-1", identified=False)])
    store = store_for(pacs_settings, projects)
    store.start()
    try:
        assert move(pacs_settings, store, c1.study_uid, "TURN-1", rid="before").outcome == "completed"
        project_dir = pacs_settings.research_store_dir / "TURN-1"
        assert mode(project_dir) == 0o750
        projects.projects["TURN-1"] = project("TURN-1")  # identified now (IRB reference given)
        assert move(pacs_settings, store, c2.study_uid, "TURN-1", rid="after").outcome == "completed"
    finally:
        store.stop()
    assert mode(project_dir) == 0o700  # nothing below it reachable by the group any more
    identified = [p for p in project_dir.rglob("*.dcm") if pydicom.dcmread(p).PatientID == c2.patient_id]
    assert len(identified) == c2.images
    for p in identified:
        assert mode(p) == 0o600 and mode(p.parent) == 0o700 and mode(p.parent.parent) == 0o700


def test_a_release_into_an_identified_project_is_owner_only(pacs_settings: Settings) -> None:
    """An ultrasound image quarantined while the project was de-identified; the project is then
    registered identified and a steward releases the image: written as received, owner only."""
    s = synth.StudySpec("M1", "M1PAT", "MODES^TEST", "20240508", 1, rows=16, cols=16)
    ds = synth.instance(s, 0)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(US_IMAGE)
    ds.Modality = "US"
    upload(pacs_settings, [ds])
    projects = StaticProjects([project("REL-1", identified=False)])
    store = store_for(pacs_settings, projects)
    store.start()
    try:
        assert move(pacs_settings, store, s.study_uid, "REL-1").outcome == "completed"
        (entry,) = list(store.quarantine.entries())
        projects.projects["REL-1"] = dataclasses.replace(project("REL-1"), registered_by="steward1")
        target = Path(store.release(entry, "steward1", "reviewed: no burned-in text"))
    finally:
        store.stop()
    assert pydicom.dcmread(target).PatientID == s.patient_id  # as received
    assert modes_below(pacs_settings.research_store_dir / "REL-1") == ({0o700}, {0o600})


def _crashed_journal_store(tmp_path: Path, projects: StaticProjects, project_id: str) -> Path:
    """A journaled store answers an instance of ``project_id`` and dies before writing its file; the
    file's directories are gone with the crash (the journal's path does not fsync them). Returns the
    path the file will have."""
    store = ResearchStore(ScpConfig("RESEARCH", 0, "127.0.0.1", tmp_path, ("ORTHANC",), journal_mb=1,
                                    deid_key=b"k" * 32), projects=projects)
    store.start()
    raw, ts, sop_class, sop = _received()
    store.registry.register(header_of(raw, UID(ts)).study, project_id, "r1", "RESEARCH")
    hold = threading.Event()
    written: list[str] = []

    def never(item: object) -> None:
        written.append(item.target)  # type: ignore[attr-defined]
        hold.wait(10)

    store._materialise = never  # type: ignore[method-assign]
    assert store.store(raw, ts, sop_class, sop, ASSOC) == 0x0000
    assert store.journal is not None and store._server is not None
    os.close(store.journal._fd)  # the process dies: no checkpoint
    store.journal._fd = -1
    store._server.shutdown()
    hold.set()
    target = Path(written[0])
    for d in (target.parent, target.parent.parent, target.parent.parent.parent):
        d.rmdir()  # lost with the crash
    return target


@pytest.mark.parametrize("identified", [True, False])
def test_a_replayed_instance_gets_its_projects_modes(tmp_path: Path, identified: bool) -> None:
    projects = StaticProjects([project("RP-1", identified=identified)])
    target = _crashed_journal_store(tmp_path, projects, "RP-1")
    again = ResearchStore(ScpConfig("RESEARCH", 0, "127.0.0.1", tmp_path, ("ORTHANC",), journal_mb=1,
                                    deid_key=b"k" * 32), projects=StaticProjects())  # nothing loaded yet
    again.start()
    try:
        assert again.journal is not None and again.journal.replayed == 1
    finally:
        again.stop()
    assert target.exists()
    want = ({0o700}, {0o600}) if identified else ({0o750}, {0o640})
    assert modes_below(tmp_path / "RP-1") == want


def test_a_record_of_an_older_journal_is_replayed_owner_only(tmp_path: Path) -> None:
    """A note without the project's kind (written before the modes rode along): owner only."""
    j = Journal(str(tmp_path), 1 << 20)
    j.open()
    j.append("RP-2/1.2/1.2.3/1.2.3.4.dcm", b"image", json.dumps(["1.2", "r1", "1.2.3.4"]).encode())
    os.close(j._fd)
    j._fd = -1
    again = ResearchStore(ScpConfig("RESEARCH", 0, "127.0.0.1", tmp_path, ("ORTHANC",), journal_mb=1))
    again.start()
    again.stop()
    assert (tmp_path / "RP-2/1.2/1.2.3/1.2.3.4.dcm").read_bytes() == b"image"
    assert modes_below(tmp_path / "RP-2") == ({0o700}, {0o600})
