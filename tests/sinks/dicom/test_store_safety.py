"""The research store's safety (issue 12): registered projects (unknown ones refused, de-identified by
default, identified only with an IRB reference), quarantine with reasons (release/purge via the CLI),
durable writes whose failures the PACS sees, UIDs checked before they become paths.

Real Orthanc, real storage SCP (our own, on a real association), real Kafka for the CLI and the worker."""

from __future__ import annotations

import http.client
import io
import json
import os
from pathlib import Path
from typing import Any

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from radstream.cli import main
from radstream.config import Settings
from sinks.dicom import synth
from sinks.dicom.expect import Registry
from sinks.dicom.find import Pacs
from sinks.dicom.move import c_move_study
from sinks.dicom.projects import (
    Project,
    ProjectError,
    ProjectRegistry,
    StaticProjects,
    StoreOptions,
    validate,
)
from sinks.dicom.scp import ResearchStore, ScpConfig
from streams import serde

from .conftest import spec
from .helpers import TEST_PROJECTS, audit_events, final_of, project, request, role_env, statuses, stored_sops
from .test_dicom_worker import research_scp, run_worker

pytestmark = pytest.mark.integration
KEY = b"s" * 32
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def upload(settings: Settings, datasets: list[Dataset]) -> None:
    conn = http.client.HTTPConnection(settings.pacs.host, settings.pacs.http_port, timeout=60)
    try:
        for ds in datasets:
            buf = io.BytesIO()
            dcmwrite(buf, ds, enforce_file_format=True)
            conn.request("POST", "/instances", body=buf.getvalue(),
                         headers={"Content-Type": "application/dicom"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
    finally:
        conn.close()


def mixed_study(accession: str) -> tuple[synth.StudySpec, list[Dataset]]:
    """A CT image, an ultrasound image with BurnedInAnnotation=YES, and a CT image flagged YES too."""
    s = synth.StudySpec(accession, f"{accession}PAT", "SAFETY^TEST", "20240505", 3, rows=16, cols=16)
    dss = [synth.instance(s, i) for i in range(3)]
    us = dss[1]
    us.SOPClassUID = us.file_meta.MediaStorageSOPClassUID = US_IMAGE
    us.Modality, us.BurnedInAnnotation = "US", "YES"
    dss[2].BurnedInAnnotation = "YES"
    return s, dss


def store_for(settings: Settings, projects: StaticProjects = TEST_PROJECTS, **changes: Any) -> ResearchStore:
    cfg = ScpConfig.of(settings.research, settings.ingest)
    cfg.deid_key = KEY
    for k, v in changes.items():
        setattr(cfg, k, v)
    return ResearchStore(cfg, projects=projects)


def move(settings: Settings, store: ResearchStore, study_uid: str, project_id: str, rid: str = "r1",
         options: dict[str, Any] | None = None) -> Any:
    store.registry.register(study_uid, project_id, rid, "RESEARCH", options=options)
    return c_move_study(Pacs.of(settings.pacs), "RESEARCH", study_uid)


# -- projects ------------------------------------------------------------------------------------------
def test_identified_only_with_an_irb_reference_and_ids_follow_the_grammar() -> None:
    with pytest.raises(ProjectError, match="IRB"):
        validate(Project("P-1", "RESEARCH", "ana", "bob", identified=True))
    irb = Project("P-1", "RESEARCH", "ana", "bob", identified=True, irb_reference="IRB-42")
    assert validate(irb).identified
    for bad in ("", "..", "a/b", "../x", ".hidden", "x" * 65, "P 1"):
        with pytest.raises(ProjectError, match="not valid"):
            validate(Project(bad, "RESEARCH", "ana", "bob"))
    with pytest.raises(ProjectError, match="allow-list"):
        validate(Project("P-1", "ELSEWHERE", "ana", "bob"), allowed_destinations=("RESEARCH",))
    default = Project("P-2", "RESEARCH", "ana", "bob")
    assert not default.identified and not default.store_options.identified  # de-identified by default
    assert StoreOptions.from_dict(None) == StoreOptions() and not StoreOptions().identified
    assert StoreOptions.from_dict(default.store_options.to_dict()) == default.store_options


def test_project_cli_registers_lists_and_refuses_identified_without_irb(dicom_settings: Settings) -> None:
    env = role_env(dicom_settings, "steward1", "steward")
    runner = CliRunner()
    analyst = runner.invoke(main, ["project", "add", "ID-9", "--destination", "RESEARCH", "--owner", "ana",
                                   "--identified", "--irb", "IRB-2026-17"],
                            env=role_env(dicom_settings, "ana", "analyst"))
    assert analyst.exit_code != 0 and "not allowed" in analyst.output and "steward" in analyst.output
    no_irb = runner.invoke(main, ["project", "add", "ID-1", "--destination", "RESEARCH", "--owner", "ana",
                                  "--identified"], env=env)
    assert no_irb.exit_code != 0 and "IRB" in no_irb.output
    ok = runner.invoke(main, ["project", "add", "ID-1", "--destination", "RESEARCH", "--owner", "ana",
                              "--identified", "--irb", "IRB-2026-17"], env=env)
    assert ok.exit_code == 0, ok.output
    plain = runner.invoke(main, ["project", "add", "DE-1", "--destination", "RESEARCH", "--owner", "ana",
                                 "--clean-descriptors"], env=env)
    assert plain.exit_code == 0, plain.output
    again = runner.invoke(main, ["project", "add", "DE-1", "--destination", "RESEARCH", "--owner", "x"],
                          env=env)
    assert again.exit_code != 0 and "registered already" in again.output
    shown = json.loads(runner.invoke(main, ["project", "show", "DE-1"], env=env).output)
    assert (shown["identified"], shown["clean_descriptors"], shown["retain_modified_dates"]) == (
        False, True, True)
    listed = runner.invoke(main, ["project", "list"], env=env).output
    assert "ID-1\tidentified (IRB IRB-2026-17)" in listed and "DE-1\tde-identified" in listed
    registry = ProjectRegistry(dicom_settings.kafka, dicom_settings.topics)
    try:
        got = registry.get("ID-1")
        assert got is not None and got.identified and got.registered_by == "steward1"
    finally:
        registry.stop()
    # (the audit topic is keyed by actor: no order across actors)
    audited = sorted((e["actor"], e["action"], e["project"], e["allowed"])
                     for e in audit_events(dicom_settings, 5))
    assert audited == [("ana", "project.register", "ID-9", False),
                       ("steward1", "project.register", "DE-1", False),  # registered already
                       ("steward1", "project.register", "DE-1", True),
                       ("steward1", "project.register", "ID-1", False),  # no IRB
                       ("steward1", "project.register", "ID-1", True)]


def test_worker_refuses_an_unknown_project_with_a_clear_reason(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "A2", project="NO-SUCH-PROJECT")
    with research_scp(dicom_settings):
        run_worker(dicom_settings)
    final = final_of(statuses(dicom_settings, {rid}), rid)
    assert final["state"] == "failed" and "'NO-SUCH-PROJECT' is not registered" in final["error"]
    assert not stored_sops(dicom_settings.research_store_dir)


def test_scp_refuses_an_unregistered_project_and_an_unregistered_default(pacs_settings: Settings) -> None:
    a4 = spec("A", 4)
    store = store_for(pacs_settings, default_project="NOT-REGISTERED")
    store.start()
    try:
        unknown = move(pacs_settings, store, a4.study_uid, "TYPO-1")
        store.registry.release(a4.study_uid, "r1")
        default = c_move_study(Pacs.of(pacs_settings.pacs), "RESEARCH", a4.study_uid)
    finally:
        store.stop()
    assert unknown.outcome == "failed" and unknown.completed == 0
    assert default.outcome == "failed" and default.completed == 0
    assert not list(pacs_settings.research_store_dir.rglob("*.dcm"))


def test_deidentified_by_default_and_never_identified_unless_registered_so(pacs_settings: Settings) -> None:
    """A plain registration is de-identified; an expectation file that claims 'identified' for a project
    the SCP knows as de-identified does not make it identified."""
    a3 = spec("A", 3)
    projects = StaticProjects([project("PLAIN", identified=False)])
    store = store_for(pacs_settings, projects)
    store.start()
    try:
        result = move(pacs_settings, store, a3.study_uid, "PLAIN", options={"identified": True})
    finally:
        store.stop()
    assert result.outcome == "completed"
    files = list((pacs_settings.research_store_dir / "PLAIN").rglob("*.dcm"))
    assert len(files) == a3.images
    for p in files:
        ds = pydicom.dcmread(p)
        assert ds.PatientID != a3.patient_id and ds.AccessionNumber != "A3"
        assert ds.SOPInstanceUID not in a3.sop_uids() and ds.PatientIdentityRemoved == "YES"
    manifest = Registry(pacs_settings.research_store_dir).received(a3.study_uid, "r1")
    assert set(manifest) == set(a3.sop_uids()) and set(manifest.values()) == {("stored", "")}
    # the owner and the store's group only: no other user of the host reads a file or lists a directory
    project_dir = pacs_settings.research_store_dir / "PLAIN"
    for p in [*files, *{f.parent for f in files}, *{f.parent.parent for f in files}, project_dir]:
        assert p.stat().st_mode & 0o007 == 0, (p, oct(p.stat().st_mode))


# -- quarantine ----------------------------------------------------------------------------------------
def test_burned_in_instances_are_quarantined_with_reasons_then_released_and_purged_via_the_cli(
        dicom_settings: Settings) -> None:
    from streams.producer import make_producer
    from tests.streams.helpers import consume

    s, dss = mixed_study("Q1")
    upload(dicom_settings, dss)
    settings = dicom_settings.replace(ingest={"pseudonym_key": KEY.decode()})
    cfg = ScpConfig.of(settings.research, settings.ingest)
    store = ResearchStore(cfg, make_producer(settings.kafka), settings.topics, TEST_PROJECTS)
    store.start()
    try:
        result = move(settings, store, s.study_uid, "IRB-9", rid="rq")
    finally:
        store.stop()
    # quarantined instances are stored (in the quarantine): the PACS counts them as done
    assert result.outcome == "completed" and result.completed == 3
    manifest = Registry(settings.research_store_dir).received(s.study_uid, "rq")
    assert manifest == {s.sop_uid(0): ("stored", ""),
                        s.sop_uid(1): ("quarantined", "BurnedInAnnotation=YES"),
                        s.sop_uid(2): ("quarantined", "BurnedInAnnotation=YES")}
    in_project = list((settings.research_store_dir / "IRB-9").rglob("*.dcm"))
    assert len(in_project) == 1 and pydicom.dcmread(in_project[0]).Modality == "CT"
    qdir = Path(settings.research.quarantine_dir)
    assert not qdir.is_relative_to(settings.research_store_dir)
    quarantined = sorted(qdir.rglob("*.dcm"))
    assert sorted(p.stem for p in quarantined) == sorted([s.sop_uid(1), s.sop_uid(2)])
    for p in quarantined:  # as received, owner-only
        assert pydicom.dcmread(p).PatientID == s.patient_id and (p.stat().st_mode & 0o077) == 0
        for d in (p.parent, p.parent.parent, qdir):  # every level: study, project, the quarantine itself
            assert (d.stat().st_mode & 0o077) == 0, (d, oct(d.stat().st_mode))

    env = role_env(settings, "steward1", "steward")
    runner = CliRunner()
    listed = runner.invoke(main, ["dicom", "quarantine", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"IRB-9/{s.sop_uid(1)}\tUS\tBurnedInAnnotation=YES" in listed.output
    listed_by_analyst = runner.invoke(main, ["dicom", "quarantine", "list"],
                                      env=role_env(settings, "ana", "analyst"))
    assert listed_by_analyst.exit_code != 0 and s.sop_uid(1) not in listed_by_analyst.output
    no_reason = runner.invoke(main, ["dicom", "quarantine", "release", f"IRB-9/{s.sop_uid(1)}"], env=env)
    assert no_reason.exit_code != 0  # a release says why
    by_analyst = runner.invoke(main, ["dicom", "quarantine", "release", f"IRB-9/{s.sop_uid(1)}",
                                      "--reason", "looks fine"], env=role_env(settings, "ana", "analyst"))
    assert by_analyst.exit_code != 0 and "not allowed" in by_analyst.output
    released = runner.invoke(main, ["dicom", "quarantine", "release", f"IRB-9/{s.sop_uid(1)}",
                                    "--reason", "pixels checked: no text"], env=env)
    assert released.exit_code == 0, released.output
    purged = runner.invoke(main, ["dicom", "quarantine", "purge", s.sop_uid(2), "--reason", "name in pixels"],
                           env=env)
    assert purged.exit_code == 0, purged.output
    assert not list(qdir.rglob("*.dcm")) and not list(qdir.rglob("*.json"))
    now_in_project = [pydicom.dcmread(p) for p in (settings.research_store_dir / "IRB-9").rglob("*.dcm")]
    assert len(now_in_project) == 2
    us = next(ds for ds in now_in_project if ds.Modality == "US")  # released: de-identified per the project
    assert us.PatientID != s.patient_id and us.SOPInstanceUID != s.sop_uid(1)
    assert us.PatientIdentityRemoved == "YES"
    # the release's received_instance event routes the instance to analysts only as remapped (v4 flag)
    decoded = [serde.decode("received_instance", m.value())
               for m in consume(settings, settings.topics.received_instances, 2)]
    received = {r["sop_instance_uid"]: r for r in decoded}
    assert received[us.SOPInstanceUID]["deidentified"] is True
    assert received[us.SOPInstanceUID]["uids_retained"] is False

    events = [serde.decode("quarantine_event", m.value())
              for m in consume(settings, settings.topics.quarantine, 4)]
    got = sorted((e["action"], e["sop_instance_uid"], e["actor"], e["note"]) for e in events)
    assert got == sorted([("quarantined", s.sop_uid(1), "ORTHANC", None),
                          ("quarantined", s.sop_uid(2), "ORTHANC", None),
                          ("released", s.sop_uid(1), "steward1", "pixels checked: no text"),
                          ("purged", s.sop_uid(2), "steward1", "name in pixels")])
    assert all(e["reason"] == "BurnedInAnnotation=YES" for e in events)
    audited = sorted((e["actor"], e["action"], e["allowed"]) for e in audit_events(settings, 5))
    assert audited == [("ana", "quarantine.list", False), ("ana", "quarantine.release", False),
                       ("steward1", "quarantine.list", True), ("steward1", "quarantine.purge", True),
                       ("steward1", "quarantine.release", True)]


def test_a_stewards_quarantine_action_that_fails_is_audited_with_the_reason(dicom_settings: Settings) -> None:
    """Past the role check, a missing entry or a release that fails (here: its project is no longer
    registered) is still an attempt on the hospital's images: audited, allowed=False, with the reason."""
    from sinks.dicom.quarantine import Entry, Quarantine

    study, sop = "1.2.826.0.1.3680043.10.1337.81", "1.2.826.0.1.3680043.10.1337.81.1"
    buf = io.BytesIO()
    dcmwrite(buf, _dataset(study, "1.2.3", sop), enforce_file_format=True)
    Quarantine(dicom_settings.research.quarantine_dir).put(
        Entry("GONE-1", "rq", study, "1.2.3", sop, str(synth.CTImageStorage), "CT", "BurnedInAnnotation=YES",
              "ORTHANC", 0.0), buf.getvalue())
    env = role_env(dicom_settings, "steward2", "steward")
    runner = CliRunner()
    missing = runner.invoke(main, ["dicom", "quarantine", "purge", "IRB-9/9.9.9", "--reason", "gone"],
                            env=env)
    assert missing.exit_code != 0 and "no single quarantined instance" in missing.output
    refused = runner.invoke(main, ["dicom", "quarantine", "release", f"GONE-1/{sop}", "--reason", "checked"],
                            env=env)
    assert refused.exit_code != 0 and "not released" in refused.output
    events = sorted(audit_events(dicom_settings, 2), key=lambda e: str(e["action"]))
    assert [(e["actor"], e["action"], e["allowed"]) for e in events] == [
        ("steward2", "quarantine.purge", False), ("steward2", "quarantine.release", False)]
    details = [json.loads(e["detail"]) for e in events]
    assert "no single quarantined instance" in details[0]["reason"]
    assert details[0]["instance"] == "IRB-9/9.9.9"
    assert "GONE-1" in details[1]["reason"] and events[1]["project"] == "GONE-1"
    assert Quarantine(dicom_settings.research.quarantine_dir).find(sop) is not None  # still there


def test_a_burned_in_risk_modality_is_stored_when_the_project_allows_it(pacs_settings: Settings) -> None:
    s = synth.StudySpec("Q2", "Q2PAT", "RISK^TEST", "20240506", 1, rows=16, cols=16)
    ds = synth.instance(s, 0)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_IMAGE
    ds.Modality = "US"
    upload(pacs_settings, [ds])
    allowed = StaticProjects([project("US-OK", identified=False, allow_burned_in_risk=True),
                              project("US-NO", identified=False)])
    store = store_for(pacs_settings, allowed)
    store.start()
    try:
        assert move(pacs_settings, store, s.study_uid, "US-NO", rid="no").outcome == "completed"
        store.registry.release(s.study_uid, "no")
        assert move(pacs_settings, store, s.study_uid, "US-OK", rid="ok").outcome == "completed"
    finally:
        store.stop()
    reg = Registry(pacs_settings.research_store_dir)
    assert reg.received(s.study_uid, "no") == {
        s.sop_uid(0): ("quarantined", "burned-in risk: Ultrasound Image Storage")}
    assert reg.received(s.study_uid, "ok") == {s.sop_uid(0): ("stored", "")}
    assert len(list((pacs_settings.research_store_dir / "US-OK").rglob("*.dcm"))) == 1
    assert not (pacs_settings.research_store_dir / "US-NO").exists()


# -- durable, failing loudly ---------------------------------------------------------------------------
def test_a_write_failure_is_a_failed_sub_operation_and_the_request_is_not_completed(
        dicom_settings: Settings) -> None:
    """The study's directory cannot be made (a file is in its place: works as root too, unlike chmod)."""
    a1 = spec("A", 1)
    blocker = dicom_settings.research_store_dir / "P1" / a1.study_uid
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a directory")
    rid = request(dicom_settings, "A1", project="P1")
    with research_scp(dicom_settings) as store:
        run_worker(dicom_settings)
    final = final_of(statuses(dicom_settings, {rid}), rid)
    assert final["state"] in ("failed", "partial") and final["state"] != "completed"
    assert not final["completed"] and final["error"]  # Orthanc gives up the move at the first failure
    assert store.stats.write_errors >= 1 and store.stats.written == 0
    # reconciled against what the SCP recorded (failed): every instance is named missing; the manifest
    # itself is gone with the final status
    assert set(final["missing_sop_instance_uids"]) == set(a1.sop_uids()) and final["missing"] == a1.images
    assert not Registry(dicom_settings.research_store_dir).received(a1.study_uid, rid)


def _dataset(study: str, series: str, sop: str) -> Dataset:
    ds = synth.instance(synth.StudySpec("T1", "TPAT", "T^T", "20240101", 1, rows=8, cols=8), 0)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    return ds


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the point of the test
@pytest.mark.parametrize("fast_path", [True, False])
def test_traversal_uids_are_refused_and_nothing_is_written_outside_the_root(
        tmp_path: Path, pacs_settings: Settings, fast_path: bool) -> None:
    """C-STORE over a real association (our SCU as the PACS) with crafted UIDs."""
    from pydicom import config as pydicom_config

    root = tmp_path / "deep" / "store"
    settings = pacs_settings.replace(research={"store_dir": str(root)})
    store = store_for(settings, fast_path=fast_path)
    port = store.start()
    good_study = "1.2.826.0.1.3680043.10.1337.99"
    store.registry.register(good_study, "P1", "rt", "RESEARCH")
    cases = [(good_study, "1.2/../../x", "1.2.826.0.1.3680043.10.1337.99.1"),
             (good_study, "..", "1.2.826.0.1.3680043.10.1337.99.2"),
             (good_study, "1.2.3", "1.2.826.0.1.3680043.10.1337.99.03"),  # a leading zero: not a UID
             ("..", "1.2.3", "1.2.826.0.1.3680043.10.1337.99.4"),
             (good_study, "1.2.3", "1.2.826.0.1.3680043.10.1337.99.5")]  # the one good instance
    statuses_: list[int] = []
    old_mode = pydicom_config.settings.writing_validation_mode
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE  # let the bad UIDs be sent
    try:
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(synth.CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", port, ae_title="RESEARCH")
        assert assoc.is_established
        for study, series, sop in cases:
            statuses_.append(int(assoc.send_c_store(_dataset(study, series, sop)).Status))
        assoc.release()
    finally:
        pydicom_config.settings.writing_validation_mode = old_mode
        store.stop()
    assert statuses_[:4] == [0xC000] * 4 and statuses_[4] == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not {".expected", ".journal"} & set(p.parts)]
    assert [p.name for p in written] == ["1.2.826.0.1.3680043.10.1337.99.5.dcm"]
    assert written[0].is_relative_to(root / "P1" / good_study / "1.2.3")
    manifest = store.registry.received(good_study, "rt")
    assert manifest["1.2.826.0.1.3680043.10.1337.99.1"][0] == "failed"
    assert "invalid" in manifest["1.2.826.0.1.3680043.10.1337.99.1"][1]
    assert manifest["1.2.826.0.1.3680043.10.1337.99.5"] == ("stored", "")


def test_expectations_and_manifests_refuse_unsafe_names(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    for bad in ("..", "../../etc/x", "1.2/3", "01.2"):
        with pytest.raises(ValueError, match="not a valid DICOM UID"):
            reg.register(bad, "P1", "r1", "RESEARCH")
    reg.record("1.2.3", "../../evil", "1.2.3.4", "stored")  # an odd request id becomes a safe name
    assert reg.received("1.2.3", "../../evil") == {"1.2.3.4": ("stored", "")}
    assert sorted(p.parent for p in tmp_path.rglob("*.received")) == [tmp_path / ".expected"]
    assert os.listdir(tmp_path) == [".expected"]


def test_the_scp_command_without_a_pseudonym_key_refuses_deidentified_projects_and_keys_nothing_itself(
        dicom_settings: Settings, tmp_path: Path) -> None:
    """``radstream dicom scp`` as a real process with no ``ingest.pseudonym_key(_file)``: it does not
    de-identify with a key of its own making (pseudonyms of one host's random key join nothing
    elsewhere); a de-identified project's instance is refused 0xC000, an identified one's stored."""
    import time

    from tests.streams.helpers import radstream_process

    settings = dicom_settings.replace(state_dir=str(tmp_path / "scp-state"))
    reg = Registry(settings.research_store_dir)
    deid_study, ident_study = "1.2.826.0.1.3680043.10.1337.71", "1.2.826.0.1.3680043.10.1337.72"
    reg.register(deid_study, "IRB-D", "rd", "RESEARCH")
    reg.register(ident_study, "P1", "ri", "RESEARCH")
    log = tmp_path / "scp.log"
    with radstream_process(settings, log, "dicom", "scp", "--processes", "1", "--metrics-port", "-1"):
        deadline = time.monotonic() + 60
        while b"listening" not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        ae = AE(ae_title="ORTHANC")
        ae.add_requested_context(synth.CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", settings.research.port, ae_title="RESEARCH")
        assert assoc.is_established
        refused = int(assoc.send_c_store(_dataset(deid_study, "1.2.3", deid_study + ".1")).Status)
        stored = int(assoc.send_c_store(_dataset(ident_study, "1.2.3", ident_study + ".1")).Status)
        assoc.release()
    assert (refused, stored) == (0xC000, 0x0000)
    assert "no pseudonym key" in log.read_text()
    assert not (tmp_path / "scp-state" / "text_deid.key").exists()
    assert not (settings.research_store_dir / "IRB-D").exists()
    assert reg.received(deid_study, "rd")[deid_study + ".1"][0] == "failed"
    assert len(list((settings.research_store_dir / "P1").rglob("*.dcm"))) == 1
