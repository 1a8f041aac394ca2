"""Completeness: what the PACS lists (C-FIND at IMAGE level) against what the research store recorded.

Real Orthanc, our real SCP, real Kafka. The studies here are uploaded by the tests themselves (accessions
RC1..RC3), so that deleting an instance from the PACS disturbs no other test; each test puts back what
it deleted.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from radstream.config import Settings
from sinks.dicom.expect import Registry
from sinks.dicom.find import Pacs, StudyMatch, c_find_instances
from sinks.dicom.move import c_move_instances
from sinks.dicom.scp import ResearchStore, ScpConfig
from sinks.dicom.seed import upload
from sinks.dicom.synth import StudySpec
from sinks.dicom.worker import Request, Worker, WorkerOptions

from .helpers import TEST_PROJECTS, final_of, request, statuses, stored_sops
from .test_dicom_worker import research_scp

pytestmark = pytest.mark.integration

# two series each, so that a retry groups its IMAGE-level C-MOVEs by series
LOST = StudySpec("RC1", "RCPAT1", "TEST^RC1", "20240601", 4, rows=16, cols=16, series=2)
WHOLE = StudySpec("RC2", "RCPAT2", "TEST^RC2", "20240602", 4, rows=16, cols=16, series=2)
BLOCKED = StudySpec("RC3", "RCPAT3", "TEST^RC3", "20240603", 4, rows=16, cols=16, series=2)


@pytest.fixture(scope="module")
def rc_studies(orthanc_state: tuple[Settings, Path]) -> list[StudySpec]:
    settings, _ = orthanc_state
    upload(settings.pacs.host, settings.pacs.http_port, [LOST, WHOLE, BLOCKED])
    return [LOST, WHOLE, BLOCKED]


def orthanc_rest(settings: Settings, method: str, path: str, body: bytes | None = None) -> Any:
    conn = http.client.HTTPConnection(settings.pacs.host, settings.pacs.http_port, timeout=30)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, (method, path, resp.status, data[:200])
        return json.loads(data) if data else None
    finally:
        conn.close()


def delete_from_pacs(settings: Settings, sop_uid: str) -> None:
    """Orthanc's REST API: look the SOP Instance UID up, delete that instance."""
    hits = orthanc_rest(settings, "POST", "/tools/lookup", sop_uid.encode())
    [hit] = [h for h in hits if h["Type"] == "Instance"]
    orthanc_rest(settings, "DELETE", f"/instances/{hit['ID']}")


def series_of(spec: StudySpec) -> dict[str, str]:
    return {spec.sop_uid(i): spec.series_uid(i * spec.series // spec.images) for i in range(spec.images)}


def run(worker: Worker, idle: float = 1.0) -> Worker:
    t = threading.Thread(target=worker.run, kwargs={"until_idle": idle}, daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "worker did not become idle"
    return worker


def make_worker(settings: Settings, cls: type[Worker] = Worker, **options: Any) -> Worker:
    return cls(settings.kafka, settings.topics, settings.pacs, settings.research, settings.state_dir,
               WorkerOptions(**options), group_id=settings.kafka.consumer_group)


# -- the DIMSE pieces (no Kafka) ---------------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["direct", "pynetdicom"])
def test_find_instances_lists_every_instance_study_wide_and_series_by_series(
        pacs_settings: Settings, rc_studies: list[StudySpec], fast: bool) -> None:
    pacs = replace(Pacs.of(pacs_settings.pacs), fast_move=fast)
    want = series_of(WHOLE)
    assert c_find_instances(pacs, WHOLE.study_uid) == want  # one study-wide IMAGE-level query
    # the PACS announcing more instances than it lists: listed again series by series (same answer here)
    assert c_find_instances(pacs, WHOLE.study_uid, expected=WHOLE.images + 1) == want
    assert c_find_instances(pacs, "1.2.826.0.1.3680043.10.1337.404") == {}


@pytest.mark.parametrize("fast", [True, False], ids=["direct", "pynetdicom"])
def test_image_level_move_brings_only_the_listed_instances(
        pacs_settings: Settings, rc_studies: list[StudySpec], fast: bool) -> None:
    pacs = replace(Pacs.of(pacs_settings.pacs), fast_move=fast)
    cfg = ScpConfig.of(pacs_settings.research, pacs_settings.ingest)
    store = ResearchStore(cfg, projects=TEST_PROJECTS)
    Registry(cfg.store_dir).register(WHOLE.study_uid, "P1", "r1", "RESEARCH")
    second_series = [WHOLE.sop_uid(2), WHOLE.sop_uid(3)]
    store.start()
    try:
        result = c_move_instances(pacs, "RESEARCH", WHOLE.study_uid, WHOLE.series_uid(1), second_series)
        store.drain()
    finally:
        store.stop()
    assert result.outcome == "completed" and result.completed == 2
    assert sorted(stored_sops(cfg.store_dir)) == sorted(second_series)
    assert set(Registry(cfg.store_dir).received(WHOLE.study_uid, "r1")) == set(second_series)


# -- the worker ------------------------------------------------------------------------------------------
def test_a_study_whose_instances_all_arrive_completes_with_the_counts(
        dicom_settings: Settings, rc_studies: list[StudySpec]) -> None:
    rid = request(dicom_settings, WHOLE.accession)
    with research_scp(dicom_settings):
        w = run(make_worker(dicom_settings))
    final = final_of(statuses(dicom_settings, {rid}), rid)
    assert final["state"] == "completed" and final["attempt"] == 1
    assert (final["stored"], final["quarantined"], final["missing"]) == (WHOLE.images, 0, 0)
    assert final["missing_sop_instance_uids"] == [] and final["expected_instances"] == WHOLE.images
    assert (final["completed"], final["failed"]) == (WHOLE.images, 0)
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P1")) == sorted(WHOLE.sop_uids())
    assert not w.registry.manifest(WHOLE.study_uid, rid).exists()  # forgotten once final


class LosingPacs(Worker):
    """The PACS loses an instance after it listed the study and before the C-MOVE."""

    settings: Settings
    lose: str = ""  # the SOP Instance UID to delete from the PACS, once

    def list_instances(self, req: Request, study: StudyMatch) -> dict[str, str]:
        listed = super().list_instances(req, study)
        if self.lose:
            delete_from_pacs(self.settings, self.lose)
            self.lose = ""
        return listed


def test_instance_lost_between_listing_and_move_ends_partial_then_a_retry_completes(
        dicom_settings: Settings, rc_studies: list[StudySpec]) -> None:
    lost = LOST.sop_uid(1)
    first = request(dicom_settings, LOST.accession)
    try:
        with research_scp(dicom_settings) as store:
            w = make_worker(dicom_settings, LosingPacs)
            assert isinstance(w, LosingPacs)
            w.settings, w.lose = dicom_settings, lost
            run(w)
            received_first = store.stats.received
    finally:
        upload(dicom_settings.pacs.host, dicom_settings.pacs.http_port, [LOST])  # the instance is back
    events = [e for e in statuses(dicom_settings, {first}) if e["request_id"] == first]
    final = events[-1]
    assert final["state"] == "partial" and final["attempt"] == dicom_settings.pacs.max_attempts
    assert final["missing_sop_instance_uids"] == [lost] and lost in final["error"]
    assert (final["stored"], final["missing"]) == (LOST.images - 1, 1)
    assert final["expected_instances"] == LOST.images
    assert (final["completed"], final["failed"]) == (LOST.images - 1, 1)
    retries = [e for e in events if e["state"] == "queued" and e["attempt"] >= 2]
    assert len(retries) == dicom_settings.pacs.max_attempts - 1
    assert all(e["missing_sop_instance_uids"] == [lost] for e in retries)
    assert received_first == LOST.images - 1  # the retries asked only for the lost one: nothing came

    again = request(dicom_settings, LOST.accession)  # the instance re-added: the request once more
    with research_scp(dicom_settings):
        run(make_worker(dicom_settings))
    final = final_of(statuses(dicom_settings, {again}), again)
    assert final["state"] == "completed" and (final["stored"], final["missing"]) == (LOST.images, 0)
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P1")) == sorted(LOST.sop_uids())


def test_pacs_success_with_a_failed_write_retries_only_that_instance_at_image_level(
        dicom_settings: Settings, rc_studies: list[StudySpec]) -> None:
    """The SCP records "failed" for an instance it could not write while the PACS counts the sub-operation
    as completed: the worker sees it missing and moves that one again (IMAGE level) on the next attempt."""
    settings = dicom_settings.replace(pacs={"backoff_s": 1.0})
    blocked = BLOCKED.sop_uid(BLOCKED.images - 1)
    rid = request(settings, BLOCKED.accession)
    # a directory where the file goes: the rename into place fails, the SCP records "failed"
    target = (settings.research_store_dir / "P1" / BLOCKED.study_uid / series_of(BLOCKED)[blocked]
              / f"{blocked}.dcm")
    target.mkdir(parents=True)
    registry = Registry(settings.research_store_dir)
    stop = threading.Event()
    saw_failed: list[bool] = []

    def unblock() -> None:  # once the failure is recorded, the disk "recovers"
        while not stop.wait(0.01):
            if registry.received(BLOCKED.study_uid, rid).get(blocked, ("",))[0] == "failed":
                saw_failed.append(True)
                target.rmdir()
                return

    watcher = threading.Thread(target=unblock, daemon=True)
    watcher.start()
    try:
        with research_scp(settings) as store:
            run(make_worker(settings))
            received = store.stats.received
    finally:
        stop.set()
        watcher.join(5)
    events = [e for e in statuses(settings, {rid}) if e["request_id"] == rid]
    final = events[-1]
    assert saw_failed and final["state"] == "completed" and final["attempt"] >= 2
    assert (final["stored"], final["missing"], final["missing_sop_instance_uids"]) == (BLOCKED.images, 0, [])
    retries = [e for e in events if e["state"] == "queued" and e["attempt"] >= 2]
    assert retries and blocked in retries[0]["missing_sop_instance_uids"]
    # each retry moved the missing instances only (today one of four), not the study again
    assert received <= BLOCKED.images + sum(e["missing"] for e in retries)
    assert sorted(stored_sops(settings.research_store_dir / "P1")) == sorted(BLOCKED.sop_uids())
