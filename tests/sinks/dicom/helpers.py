"""Helpers for the DICOM tests: produce requests, read status events, list stored files."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from radstream.config import Settings
from sinks.dicom.projects import Project, StaticProjects
from streams import serde
from streams.producer import Deliveries, make_producer, produce_sync

FINAL = {"completed", "partial", "failed", "cancelled"}


def project(project_id: str, identified: bool = True, destination_ae: str = "RESEARCH",
            **changes: Any) -> Project:
    """A registered test project: identified (IRB reference given) unless ``identified=False``."""
    return Project(project_id, destination_ae, "pytest", "pytest", identified=identified,
                   irb_reference="IRB-TEST-1" if identified else "", **changes)


# the projects the DICOM tests use: P* identified (their files keep the PACS's UIDs), IRB-* de-identified
# (P1 may also deliver to ELSEWHERE: a destination our allow-list has and Orthanc does not know)
TEST_PROJECTS = StaticProjects([project("P1", destination_ae=""), *(project(p) for p in ("P2", "P3", "P9")),
                                *(project(p, identified=False) for p in ("IRB-7", "IRB-9", "IRB-D"))])


def role_env(settings: Settings, user: str, role: str) -> dict[str, str]:
    """The environment of a local command run by ``user`` with ``role`` (a real token of the token store)."""
    from radstream.config import settings_env
    from streams.auth import TokenStore

    store = TokenStore(settings.auth.token_file)
    if user not in store.users():
        store.add_user(user, [role])
    return {**settings_env(settings), "RADSTREAM_TOKEN": store.add_token(user, note="test")}


def audit_events(settings: Settings, n: int) -> list[dict[str, Any]]:
    """The first ``n`` events of the audit topic, decoded."""
    from tests.streams.helpers import consume

    return [serde.decode("audit_event", m.value()) for m in consume(settings, settings.topics.audit, n)]


def register_projects(settings: Settings, projects: StaticProjects = TEST_PROJECTS) -> None:
    """Publish the registrations on this test's projects topic (read by the worker and the SCP): the
    records ``publish`` writes, over one producer (a producer per record, as ``publish`` makes, took
    0.6 s each to start up), and confirmed by the broker like ``publish``'s."""
    sent = Deliveries(make_producer(settings.kafka))
    for p in projects.all():
        sent.produce(settings.topics.projects, "project_registration", p.project_id.encode(), p.record())
    assert sent.flush(30) == 0, f"registrations not confirmed: {sent.last_error}"


def request(settings: Settings, accession: str | None = None, project: str = "P1",
            destination: str = "RESEARCH", priority: str = "normal", **extra: Any) -> str:
    rid = extra.pop("request_id", None) or str(uuid.uuid4())
    # a steward's request unless the test says otherwise (the P* projects are identified: the worker
    # refuses a request for one that carries no roles); requester_roles=None: roles not recorded
    extra.setdefault("requester_roles", ["steward"])
    rec = {"request_id": rid, "project_id": project, "requester": "pytest", "accession": accession,
           "destination_ae": destination, "priority": priority, "requested_time": datetime.now(UTC), **extra}
    topic = settings.topics.retrieval_requests
    produce_sync(make_producer(settings.kafka), topic, "retrieval_requested", rid, rec)
    return rid


def from_start(settings: Settings, topic: str) -> Consumer:
    """A consumer of every partition of ``topic`` from its first record (a probe group of its own)."""
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    return c


def statuses(settings: Settings, want_final: set[str], timeout: float = 60.0) -> list[dict[str, Any]]:
    """All status events from the topic until every request id in ``want_final`` has a final one."""
    c = from_start(settings, settings.topics.retrieval_status)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in c.consume(100, timeout=0.3):
                if msg.error():
                    continue
                out.append(serde.decode("retrieval_status", msg.value()))
            done = {e["request_id"] for e in out if e["state"] in FINAL}
            if want_final <= done:
                return out
    finally:
        c.close()
    missing = want_final - {e["request_id"] for e in out if e["state"] in FINAL}
    raise TimeoutError(f"no final status for {missing}")


def final_of(events: list[dict[str, Any]], rid: str) -> dict[str, Any]:
    return next(e for e in events if e["request_id"] == rid and e["state"] in FINAL)


def stored_sops(store: Path) -> list[str]:
    return [p.stem for p in store.rglob("*.dcm")]
