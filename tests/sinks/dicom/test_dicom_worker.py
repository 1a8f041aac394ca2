"""The retrieval worker against real Kafka and a real Orthanc, with our research SCP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from radstream.config import Settings
from sinks.dicom.scp import ResearchStore, ScpConfig
from sinks.dicom.worker import Worker, WorkerOptions

from .conftest import spec
from .helpers import final_of, request, statuses, stored_sops

pytestmark = pytest.mark.integration


@contextmanager
def research_scp(settings: Settings, **cfg_changes: object) -> Iterator[ResearchStore]:
    cfg = ScpConfig.from_settings(settings, env={})
    for k, v in cfg_changes.items():
        setattr(cfg, k, v)
    store = ResearchStore(cfg)
    store.start()
    try:
        yield store
    finally:
        store.stop()


def run_worker(settings: Settings, options: WorkerOptions | None = None, idle: float = 1.0) -> Worker:
    w = Worker(settings, options or WorkerOptions(), group_id=settings.kafka.consumer_group)
    t = threading.Thread(target=w.run, kwargs={"until_idle": idle}, daemon=True)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive(), "worker did not become idle"
    return w


def test_retrieve_one_accession_completed_and_sop_uids_match(dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "A1")
    with research_scp(dicom_settings) as store:
        run_worker(dicom_settings)
    events = statuses(dicom_settings, {rid})
    states = [e["state"] for e in events if e["request_id"] == rid]
    assert states[0] == "queued" and states[-1] == "completed"
    assert "resolving" in states and "moving" in states
    final = final_of(events, rid)
    assert final["completed"] == 3 and final["failed"] == 0 and final["expected_instances"] == 3
    assert final["study_instance_uids"] == [spec("A", 1).study_uid]
    assert sorted(stored_sops(dicom_settings.research_store_dir / "P1")) == sorted(spec("A", 1).sop_uids())
    assert store.stats.written == 3
