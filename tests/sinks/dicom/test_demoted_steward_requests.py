"""A steward demoted (``auth add-user`` without steward) or revoked (``auth revoke USER``) leaves no open
request behind that would still send identified images: the DICOM worker trusts the roles a request
carries, so the command cancels the user's open requests for identified projects (the records the worker
reads), audited; de-identified projects' requests, finished ones and other stewards' stand. It looks them
up in the warehouse only once the warehouse's sink has taken every request on the topic, and says so
when it has not. Real Kafka (projects and requests topics), the real sink and the embedded warehouse."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from radstream.cli import auth as auth_cli
from radstream.cli import main
from radstream.config import Settings, settings_env
from sinks.clickhouse.service import SinkService
from streams.auth import local_user
from streams.producer import make_producer, produce_sync
from streams.topics import group_lag

from .helpers import register_projects
from .test_retrieve_cancel import _cancels, _status_records

pytestmark = pytest.mark.integration


def _produce(s: Settings, *reqs: tuple[str, str, str, str | None]) -> list[str]:
    """Each (accession, project, requester, role) as a request on the topic; their ids."""
    producer = make_producer(s.kafka)
    ids = []
    for acc, project, requester, role in reqs:
        rid = str(uuid.uuid4())
        produce_sync(producer, s.topics.retrieval_requests, "retrieval_requested", rid, {
            "request_id": rid, "action": "request", "project_id": project, "requester": requester,
            "requester_roles": [role] if role else None, "accession": acc, "destination_ae": "RESEARCH",
            "requested_time": datetime.now(UTC)})
        ids.append(rid)
    return ids


def _sink_catches_up(s: Settings) -> None:
    """The worker's sink, until it has committed every request on the topic (then stopped, so that the
    commands open the embedded store themselves, as with no worker running)."""
    sink = SinkService(s.kafka, s.topics, s.clickhouse)
    sink.start()
    try:
        deadline = time.monotonic() + 60
        while group_lag(s.kafka, sink.group_id, s.topics.retrieval_requests) > 0:
            assert time.monotonic() < deadline and sink.error is None, sink.error
            time.sleep(0.3)
    finally:
        sink.stop()


def _audits(s: Settings, action: str) -> list[dict[str, object]]:
    lines = Path(s.auth.audit_log).read_text().splitlines()
    return [{**e, **json.loads(e["detail"])} for e in map(json.loads, lines) if e["action"] == action]


def test_demoting_a_steward_cancels_their_open_requests_for_identified_projects(
        topic_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = topic_settings.replace(state_dir=str(tmp_path), worker={"web_port": 1},
                               research={"allowed_destinations": ("RESEARCH",)})
    register_projects(s)  # P2, P3 identified; IRB-7 de-identified
    env = settings_env(s)
    run = CliRunner().invoke
    for user in ("stew", "kim"):
        assert run(main, ["auth", "add-user", user, "--role", "steward"], env=env).exit_code == 0
    p2, p3, deid, done, kims = _produce(s, ("A1", "P2", "stew", "steward"), ("A2", "P3", "stew", "steward"),
                                        ("A3", "IRB-7", "stew", None), ("A4", "P2", "stew", "steward"),
                                        ("A5", "P2", "kim", "steward"))
    _sink_catches_up(s)
    _status_records(s, done, "completed")

    # a role kept (steward with another role added) cancels nothing
    out = run(main, ["auth", "add-user", "stew", "--role", "steward", "--role", "analyst"], env=env)
    assert out.exit_code == 0 and "cancelled" not in out.output, out.output
    assert _cancels(s) == []

    out = run(main, ["auth", "add-user", "stew", "--role", "analyst"], env=env)  # demoted
    assert out.exit_code == 0, out.output
    assert f"cancelled 2 open request(s) of stew for identified projects: {', '.join(sorted([p2, p3]))}" \
        in out.output
    me = local_user()
    assert sorted((c["request_id"], c["project_id"], c["requester"]) for c in _cancels(s)) == sorted(
        [(p2, "P2", me), (p3, "P3", me)])
    assert sorted((a["actor"], a["allowed"], a["request_id"], a["by"])
                  for a in _audits(s, "retrieval.cancel")) == sorted([(me, True, p2, "auth"),
                                                                      (me, True, p3, "auth")])

    # a steward's own requests are theirs to keep: the command refuses
    held = run(main, ["auth", "end-requests", "kim"], env=env)
    assert held.exit_code == 2 and "kim holds steward" in held.output, held.output

    # a request the warehouse has not received yet (no sink running): the revocation says so, exits 1
    # and cancels nothing it cannot see; audited as not done
    monkeypatch.setattr(auth_cli, "SINK_WAIT_S", 1.0)
    late, = _produce(s, ("A6", "P3", "kim", "steward"))
    out = run(main, ["auth", "revoke", "kim"], env=env)
    assert out.exit_code == 1, out.output
    # the new request, and the two cancels above, which no sink has taken either
    assert "has not received 3 record(s) of the retrieval requests topic" in out.output
    assert "run `radstream auth end-requests kim`" in out.output
    assert {c["request_id"] for c in _cancels(s)} == {p2, p3}
    _sink_catches_up(s)
    out = run(main, ["auth", "end-requests", "kim"], env=env)  # as the message says
    assert out.exit_code == 0 and f"of kim for identified projects: {', '.join(sorted([kims, late]))}" \
        in out.output, out.output
    assert {c["request_id"] for c in _cancels(s)} == {p2, p3, kims, late}  # never the de-identified or done
    ends = [(a["user"], a["allowed"], sorted(a["request_ids"])) for a in _audits(s, "auth.end-requests")]
    assert ends == [("stew", True, sorted([p2, p3])), ("kim", False, []), ("kim", True, sorted([kims, late]))]
    assert deid not in out.output and done not in out.output


def test_without_identified_projects_demotion_needs_no_warehouse(topic_settings: Settings,
                                                                   tmp_path: Path) -> None:
    """A site with no identified project registered: nothing to cancel, and no warehouse to read
    (there is none in this state dir)."""
    wh = tmp_path / "warehouse"
    s = topic_settings.replace(state_dir=str(tmp_path), worker={"web_port": 1},
                               clickhouse={"url": f"chdb://{wh}"})
    env = settings_env(s)
    run = CliRunner().invoke
    assert run(main, ["auth", "add-user", "stew", "--role", "steward"], env=env).exit_code == 0
    out = run(main, ["auth", "add-user", "stew", "--role", "analyst"], env=env)
    assert out.exit_code == 0 and "cancelled" not in out.output, out.output
    assert not wh.exists()
