"""The audit targets of a local command (radstream.access): the local file always, the audit topic when
its broker takes the event, a warning that says where the events are when it does not, and the push
of the local file to the topic later."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from radstream.access import audit_target, flush_audit, push_local_log
from radstream.config import Settings
from streams import audit, serde
from streams.audit import FileAudit
from tests.streams.helpers import consume, free_port


def test_an_unreachable_audit_topic_is_reported_and_the_local_log_keeps_the_event(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(state_dir=str(tmp_path)).replace(kafka={"bootstrap": f"127.0.0.1:{free_port()}"})
    target = audit_target(s)
    audit.record(target, "ana", "sql.query", query="SELECT 1")
    with caplog.at_level(logging.WARNING, logger="radstream.access"):
        assert flush_audit(target, timeout=1.0) == 1
    warned = [r.getMessage() for r in caplog.records if r.name == "radstream.access"]
    assert len(warned) == 1 and "not confirmed by the audit topic" in warned[0]
    assert s.auth.audit_log in warned[0]
    kept = [json.loads(line) for line in Path(s.auth.audit_log).read_text().splitlines()]
    assert [(e["actor"], e["action"]) for e in kept] == [("ana", "sql.query")]


def test_a_reachable_audit_topic_confirms_without_a_warning(
        topic_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(state_dir=str(tmp_path), kafka=topic_settings.kafka, topics=topic_settings.topics)
    target = audit_target(s)
    audit.record(target, "ana", "sql.query", query="SELECT 1")
    with caplog.at_level(logging.WARNING, logger="radstream.access"):
        assert flush_audit(target) == 0
    assert not [r for r in caplog.records if r.name == "radstream.access"]


def test_events_the_topic_never_confirmed_are_pushed_later_with_the_same_content(
        topic_settings: Settings, tmp_path: Path) -> None:
    down = Settings(state_dir=str(tmp_path)).replace(kafka={"bootstrap": f"127.0.0.1:{free_port()}"})
    target = audit_target(down)
    audit.record(target, "ana", "sql.query", query="SELECT 1", rows=1, duration_ms=2.5)
    audit.record(target, "ana", "sql.query", allowed=False, query="SELECT * FROM reports", reason="denied")
    assert flush_audit(target, timeout=1.0) == 2

    up = Settings(state_dir=str(tmp_path), kafka=topic_settings.kafka, topics=topic_settings.topics)
    kept = audit.read_log(up.auth.audit_log)
    assert push_local_log(up) == (2, 0)
    first = {serde.decode("audit_event", m.value())["event_id"]: m.value()
             for m in consume(up, up.topics.audit, 3)}
    got = {i: serde.decode("audit_event", v) for i, v in first.items()}

    def content(e: dict[str, object]) -> tuple[object, ...]:
        return (e["time"], e["actor"], e["action"], e["allowed"], e["query"], e["rows"], e["duration_ms"],
                e["detail"])

    assert [content(got[e["event_id"]]) for e in kept] == [content(e) for e in kept]
    (pushed,) = [e for e in got.values() if e["event_id"] not in {k["event_id"] for k in kept}]
    assert (pushed["action"], pushed["rows"]) == ("audit.push", 2)

    # a second push sends every event again, byte for byte (the topic is keyed by actor, so the copies
    # come in another order): the warehouse's audit_log keys a row on the whole content (ddl/023,
    # tests/sinks/clickhouse/test_audit_log_key.py), so nothing is doubled there
    assert push_local_log(up) == (3, 0)
    values = [m.value() for m in consume(up, up.topics.audit, 7)]
    assert all(values.count(v) == 2 for v in first.values()) and len(values) == 7

def test_a_torn_line_in_the_local_audit_log_is_named_and_nothing_is_sent(tmp_path: Path) -> None:
    s = Settings(state_dir=str(tmp_path)).replace(kafka={"bootstrap": f"127.0.0.1:{free_port()}"})
    audit.record(FileAudit(s.auth.audit_log), "ana", "sql.query", query="SELECT 1")
    with open(s.auth.audit_log, "a", encoding="utf-8") as fh:
        fh.write('{"event_id": "x", "ti')
    with pytest.raises(ValueError, match=r"audit\.log:2: not an audit event"):
        push_local_log(s, timeout=1.0)


def test_audit_push_on_the_command_line_says_what_it_could_not_send(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from radstream.cli import main

    env = {"RADSTREAM_STATE_DIR": str(tmp_path), "RADSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    out = CliRunner().invoke(main, ["audit", "push", "--timeout", "1"], env=env)
    assert out.exit_code == 1 and "no local audit log at" in out.output
    audit.record(FileAudit(tmp_path / "audit.log"), "ana", "sql.query", query="SELECT 1")
    out = CliRunner().invoke(main, ["audit", "push", "--timeout", "1"], env=env)
    assert out.exit_code == 1 and "2 of 2 audit event(s) not confirmed" in out.output
