"""A steward demoted (``auth add-user`` without steward) or revoked (``auth revoke USER``) leaves no open
request behind that would still send identified images: the DICOM worker trusts the roles a request
carries, so the command cancels the user's open requests for identified projects (the records the worker
reads), audited; de-identified projects' requests, finished ones and other stewards' stand. Real Kafka
(projects and requests topics) and the embedded warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings, settings_env
from streams.auth import local_user

from .helpers import register_projects
from .test_retrieve_cancel import _cancels, _requests, _status_records

pytestmark = pytest.mark.integration


def _cancel_audits(s: Settings) -> list[tuple[str, bool, str, str]]:
    lines = Path(s.auth.audit_log).read_text().splitlines()
    return sorted((e["actor"], e["allowed"], d["request_id"], d.get("by", ""))
                  for e in map(json.loads, lines) if e["action"] == "retrieval.cancel"
                  for d in [json.loads(e["detail"])])


def test_demoting_a_steward_cancels_their_open_requests_for_identified_projects(
        topic_settings: Settings, tmp_path: Path) -> None:
    s = topic_settings.replace(state_dir=str(tmp_path), worker={"web_port": 1},
                               research={"allowed_destinations": ("RESEARCH",)})
    register_projects(s)  # P2, P3 identified; IRB-7 de-identified
    env = settings_env(s)
    run = CliRunner().invoke
    for user in ("stew", "kim"):
        assert run(main, ["auth", "add-user", user, "--role", "steward"], env=env).exit_code == 0
    p2, p3, deid, done, kims = _requests(s, ("A1", "P2", "stew", "steward"), ("A2", "P3", "stew", "steward"),
                                         ("A3", "IRB-7", "stew", None), ("A4", "P2", "stew", "steward"),
                                         ("A5", "P2", "kim", "steward"))
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
    assert _cancel_audits(s) == sorted([(me, True, p2, "auth"), (me, True, p3, "auth")])

    # a steward's own request is theirs to keep; the command refuses to cancel it
    held = run(main, ["auth", "end-requests", "kim"], env=env)
    assert held.exit_code == 2 and "kim holds steward" in held.output, held.output
    out = run(main, ["auth", "revoke", "kim"], env=env)  # revoked: hers go too
    assert out.exit_code == 0 and f"of kim for identified projects: {kims}" in out.output, out.output
    assert {c["request_id"] for c in _cancels(s)} == {p2, p3, kims}  # never the de-identified or done one
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
