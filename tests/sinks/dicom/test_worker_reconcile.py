"""The worker's reconciliation of a listing with the SCP's manifest, on the real registry files (no PACS,
no Kafka): how long it waits for the SCP's last records, and what counts as done."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from processors.ingest.research import StudyRef
from sinks.dicom.config import PacsConfig, ResearchConfig
from sinks.dicom.move import MoveResult
from sinks.dicom.worker import Request, Worker, WorkerOptions
from streams.config import KafkaConfig, TopicsConfig

from .test_dicom_worker_loop import FakeProducer

STUDY = "1.2.3"
LISTED = {f"1.2.3.{i}": "1.2.3.9" for i in range(4)}


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    monkeypatch.setattr("sinks.dicom.worker.make_producer", FakeProducer)
    return Worker(KafkaConfig(bootstrap="127.0.0.1:1"), TopicsConfig(), PacsConfig(),
                  ResearchConfig(store_dir=str(tmp_path / "store"), coordination="files"),
                  tmp_path, WorkerOptions(settle_s=3.0))


def req() -> Request:
    return Request({"request_id": "r1", "project_id": "P1"}, 0, 0, 1)


def moved(n: int) -> MoveResult:
    return MoveResult("completed", status=0, completed=n, remaining=0)


def test_records_that_follow_the_final_response_are_waited_for(worker: Worker) -> None:
    r = req()
    sops = list(LISTED)
    for sop in sops[:2]:
        worker.registry.record(STUDY, "r1", sop, "stored")

    def late() -> None:  # the SCP's writer still busy with the last two after the C-MOVE ended
        time.sleep(0.3)
        for sop in sops[2:]:
            worker.registry.record(STUDY, "r1", sop, "stored")

    t = threading.Thread(target=late)
    t.start()
    start = time.monotonic()
    result = worker._reconcile(r, STUDY, LISTED, sops, moved(4), 0)
    t.join()
    assert 0.25 <= time.monotonic() - start < 2.0
    assert result.outcome == "completed" and (result.completed, result.failed) == (4, 0)
    assert r.recon[STUDY].missing == ()


def test_a_missing_instance_is_known_once_every_counted_sub_operation_has_a_record(worker: Worker) -> None:
    r = req()
    sops = list(LISTED)
    worker.registry.record(STUDY, "r1", sops[0], "stored")
    worker.registry.record(STUDY, "r1", sops[1], "quarantined", "BurnedInAnnotation=YES")
    worker.registry.record(STUDY, "r1", sops[2], "failed", "OSError: read-only file system")
    start = time.monotonic()
    result = worker._reconcile(r, STUDY, LISTED, sops, moved(3), 0)  # the PACS sent 3, not the 4th
    assert time.monotonic() - start < 1.0  # no wait for settle_s: all 3 counted ones are recorded
    assert result.outcome == "partial" and (result.completed, result.failed) == (2, 2)
    rec = r.recon[STUDY]
    assert (rec.stored, rec.quarantined, rec.missing) == (1, 1, (sops[2], sops[3]))
    assert sops[2] in (result.error or "") and result.retriable


def test_quarantined_without_a_reason_is_not_done_and_silence_ends_at_settle_s(worker: Worker) -> None:
    r = req()
    sops = list(LISTED)
    for sop in sops[:3]:
        worker.registry.record(STUDY, "r1", sop, "stored")
    worker.registry.record(STUDY, "r1", sops[3], "quarantined", "")
    lines = worker._recorded(r, STUDY)
    start = time.monotonic()
    # a retry of the 4th: the PACS counts it completed, the SCP never records it again
    result = worker._reconcile(r, STUDY, LISTED, [sops[3]], moved(1), lines)
    assert 2.9 <= time.monotonic() - start < 5.0
    assert result.outcome == "partial" and r.recon[STUDY].missing == (sops[3],)


def test_status_events_key_clinical_uids_whatever_their_form(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A request from a clinical system names a study by the PACS's values; a device's UUID-derived
    2.25 UID looks like a keyed one, yet the status event (analysts' tables) carries its keyed value. A
    research request (with its study reference) keeps its research UID as given."""
    from processors.ingest.pseudonym import keyed_identifier, keyed_uid

    monkeypatch.setattr("sinks.dicom.worker.make_producer", FakeProducer)
    key = b"status-key-0123456789abcdef0123"
    w = Worker(KafkaConfig(bootstrap="127.0.0.1:1"), TopicsConfig(), PacsConfig(),
               ResearchConfig(store_dir=str(tmp_path / "store"), coordination="files"), tmp_path,
               WorkerOptions(), key=key)
    device = "2.25.329800735698586629295641978511506172918"
    clinical = Request({"request_id": "r1", "project_id": "IRB-1", "accession": "RAD-1",
                        "study_instance_uid": device, "destination_ae": "RESEARCH"}, 0, 0, 1)
    clinical.keyed = True
    w.emit(clinical, "queued")
    event = w.log[-1]
    assert event["study_instance_uid"] == keyed_uid(key, device) != device
    assert event["accession"] == keyed_identifier(key, "accession", "RAD-1")
    research = Request({"request_id": "r2", "project_id": "IRB-1", "accession": "ACC-0123456789AB",
                        "study_instance_uid": keyed_uid(key, device), "destination_ae": "RESEARCH"}, 0, 1, 2)
    research.keyed = True
    research.ref = StudyRef("default", "RAD-1", device, None, None)
    w.emit(research, "queued")
    assert w.log[-1]["study_instance_uid"] == keyed_uid(key, device)
    assert w.log[-1]["accession"] == keyed_identifier(key, "accession", "RAD-1")
