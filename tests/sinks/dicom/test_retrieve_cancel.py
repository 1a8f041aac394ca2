"""``radstream retrieve cancel``: the request's own project, destination and requester from the
warehouse; a steward cancels any request, anyone else only their own; an unknown, finished or cancelled
request refused; every decision audited (``retrieval.cancel``); the cancel record as the DICOM worker
reads it, delivery confirmed. Real Kafka, embedded ClickHouse, Orthanc and the DICOM worker."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings
from sinks.dicom.worker import WorkerOptions
from streams import serde
from streams.producer import make_producer, produce_sync

from .helpers import FINAL, from_start, role_env, stored_sops
from .test_dicom_worker import new_worker, research_scp

pytestmark = pytest.mark.integration


def _requests(settings: Settings, *reqs: tuple[str, str, str, str | None]) -> list[str]:
    """Produce each (accession, project, requester, roles) as a request, and write it to the warehouse
    as the sink does (the command reads requests there); their ids."""
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.query import close_readonly_clients
    from sinks.clickhouse.sink import write_records

    records = [{"request_id": str(uuid.uuid4()), "action": "request", "project_id": project,
                "requester": requester, "requester_roles": [roles] if roles else None, "accession": acc,
                "destination_ae": "RESEARCH", "requested_time": datetime.now(UTC)}
               for acc, project, requester, roles in reqs]
    producer = make_producer(settings.kafka)
    for rec in records:
        produce_sync(producer, settings.topics.retrieval_requests, "retrieval_requested",
                     str(rec["request_id"]), rec)
    client = open_client(settings.clickhouse)
    try:
        migrate(client, settings.clickhouse.database)
        write_records(client, "retrieval_requested", records)
    finally:
        client.close()
        close_readonly_clients()
    return [str(r["request_id"]) for r in records]


def _status_records(settings: Settings, rid: str, state: str) -> None:
    """A final status of ``rid`` in the warehouse, as the sink writes the worker's."""
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.query import close_readonly_clients
    from sinks.clickhouse.sink import write_records

    client = open_client(settings.clickhouse)
    try:
        write_records(client, "retrieval_status", [{
            "request_id": rid, "project_id": "IRB-7", "state": state, "attempt": 1,
            "destination_ae": "RESEARCH", "time": datetime.now(UTC)}])
    finally:
        client.close()
        close_readonly_clients()


def _states(settings: Settings, until: Any, timeout: float = 60.0) -> dict[str, list[str]]:
    """request id -> its states on the status topic, read until ``until(states)`` holds."""
    c = from_start(settings, settings.topics.retrieval_status)
    out: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout
    try:
        while not until(out):
            assert time.monotonic() < deadline, f"status events so far: {out}"
            for msg in c.consume(100, timeout=0.3):
                if msg.error() is None:
                    ev = serde.decode("retrieval_status", msg.value())
                    out.setdefault(ev["request_id"], []).append(ev["state"])
    finally:
        c.close()
    return out


def _cancels(settings: Settings) -> list[dict[str, Any]]:
    c = from_start(settings, settings.topics.retrieval_requests)
    out: list[dict[str, Any]] = []
    try:
        for _ in range(10):
            for msg in c.consume(100, timeout=0.3):
                if msg.error() is None:
                    rec = serde.decode("retrieval_requested", msg.value())
                    if rec["action"] == "cancel":
                        out.append({**rec, "key": (msg.key() or b"").decode()})
    finally:
        c.close()
    return out


def _audited(settings: Settings) -> list[tuple[str, bool, str, str]]:
    """(actor, allowed, request id, reason) of the command's ``retrieval.cancel`` decisions."""
    path = Path(settings.auth.audit_log)
    entries = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return sorted((e["actor"], e["allowed"], json.loads(e["detail"]).get("request_id", ""),
                   json.loads(e["detail"]).get("reason", ""))
                  for e in entries if e["action"] == "retrieval.cancel")


@pytest.fixture
def s(dicom_settings: Settings) -> Settings:
    # no worker serves the store on this port: the command opens the embedded store itself
    return dicom_settings.replace(worker={"web_port": 1})


def test_cancelled_behind_a_closed_window_ends_cancelled_and_moves_nothing(s: Settings) -> None:
    ana, stew = role_env(s, "ana", "analyst"), role_env(s, "stew", "steward")
    mine, theirs, stewards = _requests(s, ("A1", "IRB-7", "ana", None), ("A2", "IRB-7", "bo", None),
                                       ("A3", "P2", "pytest", "steward"))
    # the transfer window opens in an hour: each request waits, queued, until it is cancelled
    opens = (datetime.now() + timedelta(hours=1)).replace(microsecond=0)
    w = new_worker(s, WorkerOptions(windows=f"* {opens:%H:%M:%S}-{opens + timedelta(hours=1):%H:%M:%S}"))
    with research_scp(s):
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        try:
            _states(s, lambda st: all("waiting_for_window" in st.get(r, [])
                                      for r in (mine, theirs, stewards)))
            run = CliRunner().invoke
            own = run(main, ["retrieve", "cancel", mine], env=ana)
            assert own.exit_code == 0, own.output
            sent = f"cancel sent for {mine} (project IRB-7, destination RESEARCH, requested by ana)"
            assert sent in own.output
            other = run(main, ["retrieve", "cancel", theirs], env=ana)
            assert other.exit_code == 1, other.output
            assert "made by 'bo': only they or a steward" in other.output
            unknown = run(main, ["retrieve", "cancel", "no-such-request", stewards], env=stew)
            assert unknown.exit_code == 1, unknown.output
            assert "'no-such-request' is not in the warehouse" in unknown.output
            assert f"cancel sent for {stewards} (project P2" in unknown.output  # the known one all the same
            states = _states(s, lambda st: all(set(st.get(r, [])) & FINAL for r in (mine, stewards)))
        finally:
            w.stop_event.set()
            t.join(timeout=60)
    assert states[mine][-1] == "cancelled" and states[stewards][-1] == "cancelled"
    assert not set(states[theirs]) & FINAL  # bo's still waits for the window
    assert stored_sops(s.research_store_dir) == []  # no study moved
    assert not any(e["state"] == "resolving" for e in w.log)
    # the records as the worker read them: the request's id as key, its project and destination, the
    # canceller as requester
    assert sorted((c["key"], c["request_id"], c["project_id"], c["destination_ae"], c["requester"])
                  for c in _cancels(s)) == sorted([(mine, mine, "IRB-7", "RESEARCH", "ana"),
                                                   (stewards, stewards, "P2", "RESEARCH", "stew")])
    got = [(a, ok, rid) for a, ok, rid, _ in _audited(s)]
    assert got == sorted([("ana", True, mine), ("ana", False, theirs), ("stew", False, "no-such-request"),
                          ("stew", True, stewards)])


def test_a_finished_or_cancelled_request_is_refused_and_project_cancels_only_ones_own(
        topic_settings: Settings, tmp_path: Path) -> None:
    from tests.sinks.dicom.helpers import register_projects

    s = topic_settings.replace(state_dir=str(tmp_path), worker={"web_port": 1},
                               research={"allowed_destinations": ("RESEARCH",)})
    register_projects(s)
    ana, stew = role_env(s, "ana", "analyst"), role_env(s, "stew", "steward")
    done, open1, open2, bos = _requests(s, ("A1", "IRB-7", "ana", None), ("A2", "IRB-7", "ana", None),
                                        ("A3", "IRB-7", "ana", None), ("A4", "IRB-7", "bo", None))
    _status_records(s, done, "completed")
    run = CliRunner().invoke
    finished = run(main, ["retrieve", "cancel", done], env=ana)
    assert finished.exit_code == 1 and "is completed already" in finished.output, finished.output
    someone = run(main, ["retrieve", "cancel", "--requester", "bo"], env=ana)
    assert someone.exit_code == 1 and "only a steward may cancel the requests of 'bo'" in someone.output
    # an analyst's --project: their own open requests only (not the finished one, not bo's)
    mine = run(main, ["retrieve", "cancel", "--project", "IRB-7"], env=ana)
    assert mine.exit_code == 0, mine.output
    assert sorted(line.split()[3] for line in mine.output.splitlines()) == sorted([open1, open2])
    # the sink writes the cancels to the warehouse: then they are refused as cancelled already
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.query import close_readonly_clients
    from sinks.clickhouse.sink import write_records

    client = open_client(s.clickhouse)
    try:
        write_records(client, "retrieval_requested", [{k: v for k, v in c.items() if k != "key"}
                                                      for c in _cancels(s)])
    finally:
        client.close()
        close_readonly_clients()
    again = run(main, ["retrieve", "cancel", open1], env=stew)
    assert again.exit_code == 1 and "was cancelled by 'ana' already" in again.output, again.output
    rest = run(main, ["retrieve", "cancel", "--project", "IRB-7"], env=stew)  # a steward's: bo's too
    assert rest.exit_code == 0, rest.output
    assert [line.split()[3] for line in rest.output.splitlines()] == [bos]
    audited = [(a, ok) for a, ok, _, _ in _audited(s)]
    assert sorted(audited) == sorted([("ana", False), ("ana", False), ("ana", True), ("ana", True),
                                      ("stew", False), ("stew", True)])


def test_a_cancel_the_broker_refuses_is_an_error_and_claims_nothing(topic_settings: Settings,
                                                                    tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    from tests.sinks.dicom.helpers import register_projects

    s = topic_settings.replace(state_dir=str(tmp_path), worker={"web_port": 1},
                               research={"allowed_destinations": ("RESEARCH",)})
    register_projects(s)
    (rid,) = _requests(s, ("A1", "IRB-7", "ana", None))
    # a topic that takes no record refuses the cancel as a missing write ACL would
    admin = AdminClient({"bootstrap.servers": s.kafka.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, s.topics.retrieval_requests, incremental_configs=[
        ConfigEntry("max.message.bytes", "1", incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(30)
    out = CliRunner().invoke(main, ["retrieve", "cancel", rid], env=role_env(s, "ana", "analyst"))
    assert out.exit_code == 1, out.output
    assert "Kafka did not confirm 1 of 1 cancel(s)" in out.output and "cancel sent" not in out.output
    assert [(a, ok) for a, ok, _, _ in _audited(s)] == [("ana", False)]


def test_retrieve_without_a_subcommand_still_requests(topic_settings: Settings, tmp_path: Path) -> None:
    from tests.sinks.dicom.helpers import register_projects

    s = topic_settings.replace(state_dir=str(tmp_path), research={"allowed_destinations": ("RESEARCH",)})
    register_projects(s)
    run = CliRunner().invoke
    env = role_env(s, "ana", "analyst")
    res = run(main, ["retrieve", "--accession", "A1", "--project", "IRB-7", "--destination", "RESEARCH"],
              env=env)
    assert res.exit_code == 0 and res.output.startswith("retrieval requested: "), res.output
    missing = run(main, ["retrieve", "--accession", "A1", "--destination", "RESEARCH"], env=env)
    assert missing.exit_code == 2 and "--project" in missing.output, missing.output
    mixed = run(main, ["retrieve", "--project", "IRB-7", "cancel", "x"], env=env)
    assert mixed.exit_code == 2 and "do not go with" in mixed.output, mixed.output
