"""C-FIND / C-MOVE and the research SCP against a real Orthanc (no Kafka)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radstream.config import Settings
from radstream.stack.orthanc import free_port
from sinks.dicom.expect import Registry
from sinks.dicom.find import DicomError, Pacs, c_find_studies, resolve
from sinks.dicom.move import MoveResult, c_move_study
from sinks.dicom.scp import ResearchStore, ScpConfig

from .conftest import SMALL, spec, two_studies_one_accession
from .helpers import TEST_PROJECTS

pytestmark = pytest.mark.integration


def store_for(settings: Settings, **changes: object) -> ResearchStore:
    cfg = ScpConfig.of(settings.research, settings.ingest)
    for k, v in changes.items():
        setattr(cfg, k, v)
    return ResearchStore(cfg, projects=TEST_PROJECTS)


def test_find_by_accession_and_fallback_keys(pacs_settings: Settings) -> None:
    pacs = Pacs.of(pacs_settings.pacs)
    a3 = spec("A", 3)
    [hit] = c_find_studies(pacs, accession="A3")
    assert hit.study_instance_uid == a3.study_uid and hit.instances == SMALL and hit.modalities == ("CT",)
    [by_patient] = resolve(pacs, accession=None, patient_id=a3.patient_id, study_date=a3.study_date)
    assert by_patient.study_instance_uid == a3.study_uid
    assert resolve(pacs, accession="NO-SUCH-ACC") == []
    two = resolve(pacs, accession="D1")
    want = sorted(s.study_uid for s in two_studies_one_accession())
    assert sorted(s.study_instance_uid for s in two) == want


def test_move_study_files_arrive_with_matching_sop_uids(pacs_settings: Settings) -> None:
    a2 = spec("A", 2)
    store = store_for(pacs_settings)
    Registry(store.cfg.store_dir).register(a2.study_uid, "P1", "r1", "RESEARCH")
    store.start()
    pendings: list[MoveResult] = []
    try:
        result = c_move_study(Pacs.of(pacs_settings.pacs), "RESEARCH", a2.study_uid, pendings.append)
    finally:
        store.stop()
    assert result.outcome == "completed" and result.completed == SMALL and result.status == 0
    assert pendings and pendings[-1].completed + (pendings[-1].remaining or 0) == SMALL
    files = sorted((store.cfg.store_dir / "P1" / a2.study_uid).rglob("*.dcm"))
    assert sorted(p.stem for p in files) == sorted(a2.sop_uids())
    for p in files:
        ds = pydicom.dcmread(p)
        assert ds.StudyInstanceUID == a2.study_uid and p.parent.name == ds.SeriesInstanceUID
        assert ds.AccessionNumber == "A2" and len(ds.PixelData) == 16 * 16 * 2
    assert not list(store.cfg.store_dir.rglob("*.tmp"))


def test_move_to_destination_unknown_to_the_pacs_fails(pacs_settings: Settings) -> None:
    result = c_move_study(Pacs.of(pacs_settings.pacs), "ELSEWHERE", spec("A", 1).study_uid)
    assert result.outcome == "failed"
    assert result.status is not None and result.status not in (0x0000, 0xFF00)  # Orthanc: 0xC000, std: 0xA801
    assert result.completed == 0


def test_scp_refusing_images_fails_the_move(pacs_settings: Settings) -> None:
    a1 = spec("A", 1)
    store = store_for(pacs_settings, min_free_mb=10**9)  # "disk full": every instance refused (0xA700)
    Registry(store.cfg.store_dir).register(a1.study_uid, "P1", "r1", "RESEARCH")
    store.start()
    try:
        result = c_move_study(Pacs.of(pacs_settings.pacs), "RESEARCH", a1.study_uid)
    finally:
        store.stop()
    assert result.outcome in ("failed", "partial") and result.completed == 0
    assert store.stats.refused >= 1 and store.stats.written == 0
    assert not list(store.cfg.store_dir.rglob("*.dcm"))


def test_scp_refuses_a_study_nobody_requested(pacs_settings: Settings) -> None:
    store = store_for(pacs_settings)  # no registration, no default project
    store.start()
    try:
        result = c_move_study(Pacs.of(pacs_settings.pacs), "RESEARCH", spec("A", 4).study_uid)
    finally:
        store.stop()
    assert result.outcome == "failed" and store.stats.refused >= 1
    assert not list(store.cfg.store_dir.rglob("*.dcm"))


def test_scp_rejects_calling_ae_not_allowed(pacs_settings: Settings) -> None:
    store = store_for(pacs_settings, port=free_port())
    port = store.start()
    try:
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title=store.cfg.ae_title)
        assert assoc.is_rejected and not assoc.is_established
        ok = AE(ae_title="ORTHANC")
        ok.add_requested_context(Verification)
        assoc = ok.associate("127.0.0.1", port, ae_title=store.cfg.ae_title)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        store.stop()


def test_orthanc_not_allowed_at_our_scp_makes_the_move_fail(pacs_settings: Settings) -> None:
    a3 = spec("A", 3)
    store = store_for(pacs_settings, allowed_calling_aes=("SOMEONE",))
    Registry(store.cfg.store_dir).register(a3.study_uid, "P1", "r1", "RESEARCH")
    store.start()
    try:
        result = c_move_study(Pacs.of(pacs_settings.pacs), "RESEARCH", a3.study_uid)
    finally:
        store.stop()
    assert result.outcome == "failed" and store.stats.received == 0
    assert not list(store.cfg.store_dir.rglob("*.dcm"))


def test_pacs_down(pacs_settings: Settings) -> None:
    down = Pacs("ORTHANC", "127.0.0.1", free_port(), "RADSTREAM", acse_timeout_s=2, dimse_timeout_s=2)
    with pytest.raises(DicomError) as err:
        c_find_studies(down, accession="A1")
    assert err.value.retriable
    result = c_move_study(down, "RESEARCH", spec("A", 1).study_uid)
    assert result.outcome == "failed" and result.retriable and "failed" in (result.error or "")


def test_deidentifying_project(pacs_settings: Settings, tmp_path: Path) -> None:
    a1 = spec("A", 1)
    store = store_for(pacs_settings, deid_key=b"k" * 32)  # IRB-9: registered, not identified
    Registry(store.cfg.store_dir).register(a1.study_uid, "IRB-9", "r9", "RESEARCH")
    store.start()
    try:
        result = c_move_study(Pacs.of(pacs_settings.pacs), "RESEARCH", a1.study_uid)
    finally:
        store.stop()
    assert result.outcome == "completed"
    files = list((store.cfg.store_dir / "IRB-9").rglob("*.dcm"))
    assert len(files) == SMALL
    originals = set(a1.sop_uids())
    studies = set()
    for p in files:
        ds: Dataset = pydicom.dcmread(p)
        assert ds.SOPInstanceUID not in originals and ds.SOPInstanceUID.startswith("2.25.")
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == p.stem
        assert ds.PatientID != a1.patient_id and "TEST" not in str(ds.PatientName)
        assert ds.AccessionNumber.startswith("ACC-") and ds.PatientIdentityRemoved == "YES"
        assert ds.StudyDate != a1.study_date and ds.StudyDate < a1.study_date
        # E.1-1 X/Z/D: a dummy value (the choice that keeps any IOD conformant)
        assert ds.InstitutionName == "ANONYMIZED" and not ds.get("ReferringPhysicianName")
        studies.add(ds.StudyInstanceUID)
    assert len(studies) == 1 and a1.study_uid not in studies


def test_same_study_for_two_projects_in_a_row_lands_in_both(pacs_settings: Settings) -> None:
    a2 = spec("A", 2)
    store = store_for(pacs_settings)
    reg = Registry(store.cfg.store_dir)
    pacs = Pacs.of(pacs_settings.pacs)
    store.start()
    try:
        for project in ("P1", "P2"):
            reg.register(a2.study_uid, project, f"r-{project}", "RESEARCH")
            assert c_move_study(pacs, "RESEARCH", a2.study_uid).outcome == "completed"
            store.drain()
            reg.release(a2.study_uid, f"r-{project}")
    finally:
        store.stop()
    for project in ("P1", "P2"):
        assert sorted(p.stem for p in (store.cfg.store_dir / project).rglob("*.dcm")) == sorted(a2.sop_uids())


@pytest.mark.parametrize("case", ["completed", "refused", "unknown destination"])
def test_direct_move_path_reports_what_pynetdicom_reports(pacs_settings: Settings, case: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The same move through pynetdicom's send_c_move and through the direct socket path."""
    from dataclasses import replace

    from sinks.dicom.wire import scu

    taken: list[bool] = []
    start = scu.DirectMove.start

    def spy(self: scu.DirectMove) -> bool:
        taken.append(start(self))
        return taken[-1]

    monkeypatch.setattr(scu.DirectMove, "start", spy)
    a2 = spec("A", 2)
    results: dict[bool, tuple[MoveResult, list[MoveResult], list[str]]] = {}
    for fast in (False, True):
        store = store_for(pacs_settings, min_free_mb=10**9 if case == "refused" else 1)
        store.cfg.store_dir = store.cfg.store_dir / f"fast-{fast}"
        store.registry = store.expected = Registry(store.cfg.store_dir)
        store.registry.register(a2.study_uid, "P1", "r1", "RESEARCH")
        store.start()
        pendings: list[MoveResult] = []
        try:
            pacs = replace(Pacs.of(pacs_settings.pacs), fast_move=fast)
            dest = "ELSEWHERE" if case == "unknown destination" else "RESEARCH"
            result = c_move_study(pacs, dest, a2.study_uid, pendings.append)
        finally:
            store.stop()
        results[fast] = (result, pendings, sorted(p.stem for p in store.cfg.store_dir.rglob("*.dcm")))
    assert taken == [True]  # the direct path ran (once: for fast=True)
    (slow, slow_p, slow_files), (fast_r, fast_p, fast_files) = results[False], results[True]
    assert fast_r == slow and fast_p == slow_p and fast_files == slow_files
    if case == "completed":
        assert fast_r.outcome == "completed" and fast_r.completed == SMALL
        assert fast_r.pendings == len(fast_p) > 0
        assert fast_files == sorted(a2.sop_uids())
    else:
        assert fast_r.outcome == "failed" and fast_r.status not in (None, 0x0000) and not fast_files


def test_one_session_for_finds_and_moves_with_the_direct_paths(pacs_settings: Settings,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """C-FINDs and C-MOVEs back to back on one association (the worker's PacsSession), through the direct
    paths, find and move what pynetdicom's own send_c_find/send_c_move do on their own associations."""
    from dataclasses import replace

    from sinks.dicom.find import PacsSession
    from sinks.dicom.wire import scu

    taken: list[str] = []
    start = scu.DirectExchange.start

    def spy(self: scu.DirectExchange) -> bool:
        ok = start(self)
        taken.append(self.name if ok else "pynetdicom")
        return ok

    monkeypatch.setattr(scu.DirectExchange, "start", spy)
    slow = replace(Pacs.of(pacs_settings.pacs), fast_move=False)
    session = PacsSession(Pacs.of(pacs_settings.pacs))
    a3 = spec("A", 3)
    keys: list[dict[str, str | None]] = [
        {"accession": "A3"}, {"accession": None, "patient_id": a3.patient_id, "study_date": a3.study_date},
        {"accession": "NO-SUCH-ACC"}, {"accession": "D1"}, {"accession": None, "study_uid": a3.study_uid}]
    try:
        first = session.get()
        for k in keys:
            direct = resolve(session.pacs, session=session, **k)
            assert sorted(direct, key=str) == sorted(resolve(slow, **k), key=str)  # type: ignore[arg-type]
        assert [len(resolve(session.pacs, session=session, **k)) for k in keys] == [1, 1, 0, 2, 1]
        assert taken.count("C-FIND") >= len(keys) and "pynetdicom" not in taken
        store = store_for(pacs_settings)
        for uid in (spec("A", 1).study_uid, spec("A", 2).study_uid):
            store.registry.register(uid, "P1", "r1", "RESEARCH")
        store.start()
        try:
            for uid in (spec("A", 1).study_uid, spec("A", 2).study_uid):
                r = c_move_study(session.pacs, "RESEARCH", uid, assoc=session.get())
                assert r.outcome == "completed" and r.completed == SMALL
        finally:
            store.stop()
        assert session.get() is first and first.is_established  # one association throughout
        assert taken.count("C-MOVE") == 2
    finally:
        session.close()
    assert not first.is_established and session.assoc is None
