"""Shared nothing: two DICOM workers (one consumer group) and two SCP processes, each with its own
directories, coordinating only through Kafka (``research.coordination = "kafka"``).

Real Kafka, real Orthanc, our real SCP and worker as ``radstream dicom ...`` processes. The two SCP
processes accept on one listening socket (what a load balancer in front of two SCP hosts under one AE
title does); each writes its own store root. The workers' state directories are their own too; their
``research.store_dir`` points at a path that must never appear.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from processors.ingest.pseudonym import keyed_uid
from radstream.config import Settings
from sinks.dicom.expect import ExpectedStudies
from streams import serde
from streams.producer import make_producer
from tests.streams.helpers import radstream_process

from .conftest import spec
from .helpers import FINAL, statuses
from .test_dicom_reconcile import series_of

pytestmark = pytest.mark.integration

KEY = "shared-nothing-test-key-" + "k" * 16


def wait_for(what: str, check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def group_members(settings: Settings, group: str) -> int:
    """Members of a consumer group once it is stable (0 while it rebalances)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return len(desc.members) if str(desc.state).endswith("STABLE") else 0


def test_two_workers_two_scps_share_nothing_and_still_reconcile(dicom_settings: Settings,
                                                                tmp_path: Path) -> None:
    settings = dicom_settings.replace(
        research={"coordination": "kafka", "store_dir": str(tmp_path / "no-store-here")},
        ingest={"pseudonym_key": KEY}, pacs={"max_attempts": 2, "backoff_s": 0.2, "max_associations": 1})
    stores = [tmp_path / "scp1" / "store", tmp_path / "scp2" / "store"]
    # one instance neither store can write (a directory where its file goes): the PACS counts it as
    # moved, the SCPs answered success (journaled) and then fail to place it; no event says "stored"
    blocked_spec = spec("C", 3)
    blocked = blocked_spec.sop_uid(blocked_spec.images - 1)
    for root in stores:
        (root / "P2" / blocked_spec.study_uid / series_of(blocked_spec)[blocked] / f"{blocked}.dcm").mkdir(
            parents=True)
    wanted = [("A1", "P1"), ("A2", "P1"), ("A3", "P1"), ("C1", "IRB-7"), ("C2", "P2"), ("C3", "P2")]

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", settings.research.port))
    listener.listen(64)
    fd = listener.fileno()
    logs = tmp_path / "logs"
    logs.mkdir()
    group = f"{settings.kafka.consumer_group}.dicom-worker"
    with ExitStack() as es:
        for i, root in enumerate(stores, 1):
            s = settings.replace(state_dir=str(tmp_path / f"scp{i}"), research={"store_dir": str(root)})
            es.enter_context(radstream_process(s, logs / f"scp{i}.log", "dicom", "scp", "--listen-fd",
                                               str(fd), "--metrics-port", "-1", pass_fds=(fd,)))
        listener.close()  # the SCP processes hold it now
        for i in (1, 2):
            s = settings.replace(state_dir=str(tmp_path / f"worker{i}"))
            es.enter_context(radstream_process(s, logs / f"worker{i}.log", "dicom", "worker",
                                               "--metrics-port", "-1", "-v"))
        wait_for("both SCPs listening", lambda: all(
            b"listening" in (logs / f"scp{i}.log").read_bytes() for i in (1, 2)))
        wait_for("both workers in the consumer group", lambda: group_members(settings, group) == 2)

        # three requests on each partition of the requests topic: each worker has work
        producer = make_producer(settings.kafka)
        rids: dict[str, str] = {}
        for n, (accession, project_id) in enumerate(wanted):
            rid = str(uuid.uuid4())
            rids[accession] = rid
            producer.produce(settings.topics.retrieval_requests, key=rid, partition=n % 2,
                             value=serde.encode("retrieval_requested", {
                                 "request_id": rid, "project_id": project_id, "requester": "pytest",
                                 "requester_roles": ["steward"], "accession": accession,
                                 "destination_ae": "RESEARCH",
                                 "requested_time": datetime.now(UTC)}))
        assert producer.flush(30) == 0
        events = statuses(settings, set(rids.values()), timeout=180)
        worker_logs = [(logs / f"worker{i}.log").read_text() for i in (1, 2)]

    finals = {e["request_id"]: e for e in events if e["state"] in FINAL}
    for accession, rid in rids.items():
        assert sum(1 for e in events if e["request_id"] == rid and e["state"] in FINAL) == 1, accession
    for accession, _ in wanted[:-1]:
        final = finals[rids[accession]]
        assert final["state"] == "completed", (accession, final["error"])
        assert (final["stored"], final["missing"]) == (spec(accession[0], int(accession[1:])).images, 0)
    final = finals[rids["C3"]]
    assert final["state"] == "partial" and final["attempt"] == 2
    assert final["missing_sop_instance_uids"] == [blocked] and blocked in final["error"]
    assert (final["stored"], final["missing"]) == (blocked_spec.images - 1, 1)

    # every instance stored once, in one of the two stores (de-identified ones under their keyed UIDs)
    files = [p.stem for root in stores for p in root.rglob("*.dcm") if p.is_file()]
    want: list[str] = []
    for accession, project_id in wanted:
        st = spec(accession[0], int(accession[1:]))
        sops = [s for s in st.sop_uids() if s != blocked]
        want += [keyed_uid(KEY.encode(), s) for s in sops] if project_id.startswith("IRB") else sops
    assert sorted(files) == sorted(want), (Counter(files) - Counter(want), Counter(want) - Counter(files))
    assert not Path(settings.research.store_dir).exists()  # the workers never touched a store
    # both workers moved studies (each holds one partition); each request was worked on by one of them
    for rid in rids.values():
        assert sum(rid in log for log in worker_logs) >= 1
    assert all(any(rid in log for rid in rids.values()) for log in worker_logs)
    # every expectation was withdrawn once final (tombstones on the compacted topic)
    seen = ExpectedStudies(settings.kafka, settings.topics, wait_s=0.0)
    seen.start()
    try:
        assert seen.loaded.wait(30)
        assert seen._by_study == {}
    finally:
        seen.stop()
