"""The audit targets of a local command (radstream.access): the local file always, the audit topic when
its broker takes the event, and a warning that says where the events are when it does not."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from radstream.access import audit_target, flush_audit
from radstream.config import Settings
from streams import audit
from tests.streams.helpers import free_port


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
