"""An audit event the broker refused is not a confirmed one (real Kafka): ``KafkaAudit.flush``,
``radstream.access.flush_audit`` and ``radstream audit push`` count refusals, not only what is still
queued. The refusing topic takes no record at all (max.message.bytes=1), which fails the delivery for
good as a missing ACL (TOPIC_AUTHORIZATION_FAILED) does."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic

from radstream.access import flush_audit
from radstream.cli import main
from radstream.config import Settings, settings_env
from streams import audit
from streams.audit import FileAudit, KafkaAudit, Tee
from streams.producer import make_producer


def refusing_topic(settings: Settings, name: str) -> str:
    """A topic on the test broker that refuses every record (MSG_SIZE_TOO_LARGE at once)."""
    topic = f"{settings.topics.audit}.{name}"  # the test's own prefix
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    fs = admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "1"})])
    for f in fs.values():
        f.result(30)
    return topic


def test_kafka_audit_flush_counts_refused_events_once(topic_settings: Settings) -> None:
    refused = KafkaAudit(make_producer(topic_settings.kafka), refusing_topic(topic_settings, "tiny"))
    audit.record(refused, "someone", "sql.query")
    audit.record(refused, "someone", "sql.query")
    assert refused.flush(30) == 2
    assert refused.sent.last_error is not None and refused.sent.last_error.name() == "MSG_SIZE_TOO_LARGE"
    assert refused.flush(5) == 0  # counted by one flush only
    taken = KafkaAudit(make_producer(topic_settings.kafka), topic_settings.topics.audit)
    audit.record(taken, "someone", "sql.query")
    assert taken.flush(30) == 0


def test_flush_audit_warns_about_refused_events(topic_settings: Settings, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    target = Tee(FileAudit(tmp_path / "audit.log"),
                 KafkaAudit(make_producer(topic_settings.kafka), refusing_topic(topic_settings, "tiny")))
    audit.record(target, "someone", "quarantine.list")
    with caplog.at_level(logging.WARNING, logger="radstream.access"):
        assert flush_audit(target, 30) == 1
    assert "not confirmed by the audit topic" in caplog.text and "MSG_SIZE_TOO_LARGE" in caplog.text
    assert str(tmp_path / "audit.log") in caplog.text


def test_audit_push_exits_1_when_the_topic_refused_the_events(topic_settings: Settings,
                                                              tmp_path: Path) -> None:
    settings = topic_settings.replace(state_dir=str(tmp_path))
    audit.record(FileAudit(settings.auth.audit_log), "someone", "sql.query")
    refused = settings.replace(topics={"audit": refusing_topic(settings, "tiny")})
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "push", "--timeout", "30"], env=settings_env(refused))
    assert result.exit_code == 1, result.output
    assert "2 of 2 audit event(s) not confirmed" in result.output  # the event, and the push's own
    ok = runner.invoke(main, ["audit", "push", "--timeout", "30"], env=settings_env(settings))
    assert ok.exit_code == 0, ok.output
    assert "sent 2 audit event(s)" in ok.output  # the event and the failed push's own record
