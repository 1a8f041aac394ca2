"""Crashes: the PACS killed mid-move, the worker killed (-9) mid-move. Real processes, real Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from radstream.config import Settings
from radstream.stack import orthanc
from sinks.dicom.scp import ResearchStore, ScpConfig

from .conftest import BIG, spec
from .helpers import TEST_PROJECTS, final_of, request, statuses, stored_sops
from .test_dicom_worker import run_worker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


class SlowStore(ResearchStore):
    """Our SCP, 25 ms slower per instance, so that a 40-image move lasts long enough to interrupt.

    ``store`` is what both receive paths call (the direct C-STORE loop and pynetdicom's handler);
    slowing only ``handle_store`` missed the direct loop and let the move finish before the kill.
    """

    def store(self, raw: bytes, ts: str, sop_class: str, sop_instance: str, assoc: Any,
              deflated: Dataset | None = None, deflated_meta: FileMetaDataset | None = None) -> int:
        time.sleep(0.025)
        return super().store(raw, ts, sop_class, sop_instance, assoc, deflated, deflated_meta)


def slow_store(settings: Settings) -> SlowStore:
    store = SlowStore(ScpConfig.of(settings.research, settings.ingest), projects=TEST_PROJECTS)
    store.start()
    return store


def wait_for(cond: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def assert_study_intact(store_dir: Path) -> None:
    b1 = spec("B", 1, BIG)
    files = list(store_dir.rglob("*.dcm"))
    assert sorted(p.stem for p in files) == sorted(b1.sop_uids())  # all there, each exactly once
    for p in files:
        ds = pydicom.dcmread(p)
        assert ds.SOPInstanceUID == p.stem and len(ds.PixelData) == 16 * 16 * 2
    assert not list(store_dir.rglob("*.tmp"))


def test_pacs_killed_mid_move_and_restarted_completes_after_retry(
        dicom_settings: Settings, orthanc_state: tuple[Settings, Path]) -> None:
    base, state_dir = orthanc_state
    settings = dicom_settings.replace(pacs={"max_attempts": 6, "backoff_s": 0.5})
    rid = request(settings, "B1")
    store = slow_store(settings)
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(w=run_worker(settings)), daemon=True)
    try:
        t.start()
        wait_for(lambda: store.stats.received >= 5)
        orthanc.kill(state_dir)
        time.sleep(1.0)
        orthanc.restart_same_ports(base, state_dir)
        t.join(timeout=120)
    finally:
        orthanc.restart_same_ports(base, state_dir)  # later tests need the PACS whatever happened
        store.stop()
    events = [e for e in statuses(settings, {rid}) if e["request_id"] == rid]
    final = events[-1]
    assert final["state"] == "completed" and final["completed"] == BIG and final["attempt"] >= 2
    assert any(e["state"] == "queued" and e["attempt"] >= 2 for e in events)  # the retry is visible
    assert_study_intact(settings.research_store_dir)


def _env(settings: Settings) -> dict[str, str]:
    t, p, r = settings.topics, settings.pacs, settings.research
    return dict(
        os.environ, PYTHONPATH=str(ROOT), RADSTREAM_STATE_DIR=settings.state_dir,
        RADSTREAM_KAFKA_BOOTSTRAP=settings.kafka.bootstrap,
        RADSTREAM_KAFKA_CONSUMER_GROUP=settings.kafka.consumer_group,
        RADSTREAM_TOPICS_RETRIEVAL_REQUESTS=t.retrieval_requests,
        RADSTREAM_TOPICS_RETRIEVAL_STATUS=t.retrieval_status,
        RADSTREAM_TOPICS_DEAD_LETTER=t.dead_letter, RADSTREAM_TOPICS_PROJECTS=t.projects,
        RADSTREAM_PACS_PORT=str(p.port),
        RADSTREAM_PACS_HTTP_PORT=str(p.http_port), RADSTREAM_PACS_MAX_ATTEMPTS=str(p.max_attempts),
        RADSTREAM_PACS_BACKOFF_S=str(p.backoff_s), RADSTREAM_RESEARCH_STORE_DIR=str(r.store_dir),
        RADSTREAM_RESEARCH_ALLOWED_DESTINATIONS=",".join(r.allowed_destinations),
        RADSTREAM_RESEARCH_COORDINATION=r.coordination,  # the in-process SCP here shares the store
    )


def test_worker_killed_mid_move_and_restarted_loses_nothing_and_duplicates_nothing(
        dicom_settings: Settings) -> None:
    rid = request(dicom_settings, "B1")
    store = slow_store(dicom_settings)
    try:
        cmd = [sys.executable, "-m", "radstream", "dicom", "worker"]
        proc = subprocess.Popen(cmd, env=_env(dicom_settings), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: store.stats.received >= 5, timeout=60)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # the request is not final: nothing says so on the status topic
        w = run_worker(dicom_settings)  # a new worker in the same consumer group picks it up again
        store.drain()
        events = [e for e in statuses(dicom_settings, {rid}) if e["request_id"] == rid]
    finally:
        store.stop()
    finals = [e for e in events if e["state"] in ("completed", "partial", "failed")]
    assert [e["state"] for e in finals] == ["completed"]  # exactly one final state, from the second worker
    assert any(e["state"] == "moving" for e in w.log if e["request_id"] == rid)
    assert final_of(events, rid)["completed"] == BIG
    assert_study_intact(dicom_settings.research_store_dir)
    assert len(stored_sops(dicom_settings.research_store_dir)) == BIG
