"""A watch's roles are its subscriber's when subscribed, and its requests carry them to the DICOM worker:
so demoting a user (``auth add-user`` with fewer roles) ends the watches subscribed with a role they lost,
and revoking a user ends all of theirs, audited. Real Kafka (the compacted watches topic, read whole as
every cohort agent reads it)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings, settings_env
from streams.cohort import publish_watch, watch_record
from tests.radstream.web.test_web_app import watches_on_topic


def _subscribe(s: Settings, rule: Path, user: str, roles: list[str] | None, project: str) -> str:
    rec = watch_record(s.research.allowed_destinations, project, "RESEARCH", user, str(rule),
                       f"{project}:{user}:{uuid.uuid4().hex[:6]}", roles)
    publish_watch(s.kafka, s.topics, rec)
    return str(rec["watch_id"])


def test_demoting_or_revoking_a_user_ends_the_watches_of_the_roles_they_lost(
        topic_settings: Settings, tmp_path: Path) -> None:
    s = topic_settings.replace(state_dir=str(tmp_path), research={"allowed_destinations": ("RESEARCH",)},
                               kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"})
    env = settings_env(s)
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({"name": "ct", "modality": ["CT"]}))
    run = CliRunner()
    for user, role in (("bob", "steward"), ("ann", "analyst"), ("cy", "steward")):
        assert run.invoke(main, ["auth", "add-user", user, "--role", "analyst", "--role", role],
                          env=env).exit_code == 0
    bob_idp = _subscribe(s, rule, "bob", ["analyst", "steward"], "IDP")
    bob_old = _subscribe(s, rule, "bob", None, "OLD")  # no roles recorded: refused for IDP anyway
    ann = _subscribe(s, rule, "ann", ["analyst"], "DE1")
    cy = _subscribe(s, rule, "cy", ["analyst", "steward"], "IDP")
    assert set(watches_on_topic(s)) == {bob_idp, bob_old, ann, cy}

    out = run.invoke(main, ["auth", "add-user", "bob", "--role", "analyst"], env=env)  # demoted
    assert out.exit_code == 0, out.output
    assert f"ended 1 standing cohort(s) of bob: {bob_idp}" in out.output
    assert set(watches_on_topic(s)) == {bob_old, ann, cy}
    out = run.invoke(main, ["auth", "add-user", "ann", "--role", "analyst", "--role", "steward"], env=env)
    assert out.exit_code == 0 and "ended" not in out.output  # a role gained ends nothing
    out = run.invoke(main, ["auth", "revoke", "cy"], env=env)
    assert out.exit_code == 0 and f"ended 1 standing cohort(s) of cy: {cy}" in out.output, out.output
    out = run.invoke(main, ["auth", "revoke", "bob"], env=env)
    assert out.exit_code == 0 and bob_old in out.output, out.output
    assert set(watches_on_topic(s)) == {ann}

    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    ends = [json.loads(e["detail"]) for e in audit if e["action"] == "auth.end-watches"]
    assert [(d["user"], d["watch_ids"]) for d in ends] == [
        ("bob", [bob_idp]), ("cy", [cy]), ("bob", [bob_old])]
