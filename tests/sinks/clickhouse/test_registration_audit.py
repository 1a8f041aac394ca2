"""Every project registration gets an audit entry in the warehouse, whichever writer put it on the projects
topic: the steward's Kafka account may write the topic directly, past the CLI's own ``project.register``
event. A redelivered registration stays one entry. Real Kafka, the real sink, real chDB."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings, settings_env
from streams.auth import TokenStore

from .factories import BASE_TIME, registered
from .kafka_helpers import committed, end_offsets, produce_all, running_sink, wait_until

pytestmark = pytest.mark.integration


def _entries(sink: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in sink.client.query(
        "SELECT event_id, actor, action, allowed, project, detail FROM audit_log FINAL "
        "WHERE action LIKE 'registration.%' ORDER BY time, action").result_rows]


def test_a_registration_written_straight_to_the_topic_is_audited_once(sink_settings: Settings) -> None:
    s = sink_settings
    # identified, any IRB text, as a steward's Kafka client could write it without the CLI
    made = {**registered("P-DIRECT", identified=True), "irb_reference": "whatever", "registered_by": "kstew",
            "retain_uids": True, "private_safe_list": ["(0019,10xx)"]}
    gone = {**made, "active": False, "time": BASE_TIME + timedelta(hours=1)}
    items = [(s.topics.projects, "project_registration", "P-DIRECT", r) for r in (made, gone)]
    produce_all(s, items)
    produce_all(s, items[:1])  # the same registration again (a producer's retry, a replayed topic)
    with running_sink(s) as sink:
        topics = [s.topics.projects]
        wait_until(lambda: committed(s, sink.group_id, topics) == end_offsets(s, topics), what="commit")
        sink.client.command("OPTIMIZE TABLE audit_log FINAL")
        got = _entries(sink)
    assert [(actor, action, allowed, project) for _, actor, action, allowed, project, _ in got] == [
        ("kstew", "registration.register", True, "P-DIRECT"),
        ("kstew", "registration.retire", True, "P-DIRECT")]
    detail = json.loads(got[0][5])
    assert detail["identified"] is True and detail["irb_reference"] == "whatever"
    assert detail["destination_ae"] == "RESEARCH" and detail["actor_from"] == "record"
    assert detail["options"]["retain_uids"] is True
    assert detail["options"]["private_safe_list"] == ["(0019,10xx)"]
    assert got[0][0] != got[1][0]


def test_the_cli_reason_travels_with_the_registration_into_its_audit_entry(sink_settings: Settings,
                                                                          tmp_path: Path) -> None:
    s = sink_settings.replace(research={"allowed_destinations": ("RESEARCH",)})
    store = TokenStore(s.auth.token_file)
    store.add_user("stew", ["steward"])
    env = {**settings_env(s), "RADSTREAM_TOKEN": store.add_token("stew")}
    res = CliRunner().invoke(main, ["project", "add", "ID-R", "--destination", "RESEARCH", "--owner", "pi",
                                    "--identified", "--irb", "IRB-2026-7", "--reason", "chart review, IRB 7"],
                             env=env)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["project", "retire", "ID-R", "--reason", "study closed"], env=env)
    assert res.exit_code == 0, res.output
    with running_sink(s) as sink:
        wait_until(lambda: len(_entries(sink)) == 2, what="two registration entries")
        got = _entries(sink)
    assert [(actor, action, json.loads(detail)["reason"]) for _, actor, action, _, _, detail in got] == [
        ("stew", "registration.register", "chart review, IRB 7"),
        ("stew", "registration.retire", "study closed")]
    # the CLI's own event says why too
    local = [json.loads(x) for x in Path(s.auth.audit_log).read_text().splitlines()]
    assert [json.loads(e["detail"]).get("why") for e in local if e["action"].startswith("project.")] == [
        "chart review, IRB 7", "study closed"]
