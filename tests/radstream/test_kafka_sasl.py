"""Kafka with SASL/SCRAM and ACLs on a real local broker (radstream/stack/kafka.py with ``scram``):
the clients take their security settings from KafkaConfig; the feed role's client reads the live topics
(findings, de-identified reports), the analyst role's reads no topic (the live topics' records carry the
real time beside patient-shifted times) and both are refused the restricted topics (original text,
originals of received instances, dead letters, retrieval topics); a wrong password does not get in."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient

from radstream.config import Settings
from radstream.stack import kafka as stack
from radstream.warehouse import query_rows
from streams import serde
from streams.acl import add_scram_user, grant_role, role_bindings
from streams.config import KafkaConfig, TopicsConfig
from streams.producer import make_producer, produce
from streams.topics import create_topics
from tests.streams.helpers import free_port, report, research_accession, worker_process

pytestmark = pytest.mark.integration


def sasl(bootstrap: str, user: str, password_file: Path) -> KafkaConfig:
    return KafkaConfig(bootstrap=bootstrap, security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism="SCRAM-SHA-512", sasl_username=user,
                       sasl_password_file=str(password_file))


def first_event(kafka: KafkaConfig, topic: str, group: str,
                timeout: float = 20.0) -> tuple[str, bytes | None]:
    """("message", value) or ("error", code name) of the first thing a consumer of ``topic`` sees."""
    c = Consumer({**kafka.client_conf(), "group.id": group, "auto.offset.reset": "earliest",
                  "log_level": 0})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                return "error", msg.error().name().encode()
            return "message", msg.value()
        return "timeout", None
    finally:
        c.close()


def topic_error(kafka: KafkaConfig, topic: str) -> str | None:
    """The broker's error for ``topic`` in a metadata request of this account (None: it may see it),
    whatever consumer groups the account may use."""
    meta = AdminClient(kafka.client_conf()).list_topics(topic, timeout=20)
    err = meta.topics[topic].error
    return None if err is None else str(err.name())


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A broker with SASL_PLAINTEXT/SCRAM-SHA-512 and ACLs; its super user's password file."""
    tmp = tmp_path_factory.mktemp("sasl")
    admin_pw = tmp / "admin.pw"
    admin_pw.write_text(uuid.uuid4().hex + "\n")
    kdir = tmp / "kafka"
    st = stack.start_kafka(kdir, tie_to_parent=True, scram=("radstream", admin_pw.read_text().strip()))
    try:
        assert st.sasl and "SASL_PLAINTEXT" in (kdir / "server.properties").read_text()
        yield st.bootstrap, admin_pw
    finally:
        stack.stop_kafka(kdir)


def test_scram_users_and_acls_keep_restricted_topics_from_analysts(scram_broker: tuple[str, Path],
                                                                   tmp_path: Path) -> None:
    bootstrap, admin_pw = scram_broker
    analyst_pw = tmp_path / "analyst.pw"
    analyst_pw.write_text(uuid.uuid4().hex + "\n")
    admin = sasl(bootstrap, "radstream", admin_pw)
    topics = TopicsConfig()
    created = create_topics(admin, topics)  # the stack's super user, through KafkaConfig's settings
    assert set(created.values()) == {"created"}
    add_scram_user(admin, "analyst1", analyst_pw.read_text().strip())
    granted = grant_role(admin, topics, "analyst", "analyst1")
    assert granted == len(role_bindings(topics, "analyst", "analyst1"))
    add_scram_user(admin, "feed1", analyst_pw.read_text().strip())
    assert grant_role(admin, topics, "feed", "feed1") == len(role_bindings(topics, "feed", "feed1"))

    restricted = (topics.reports, topics.dead_letter, topics.retrieval_requests, topics.retrieval_status,
                  topics.received_restricted, topics.quarantine, topics.projects)
    producer = make_producer(admin)
    for topic in (topics.findings, topics.reports_deidentified, *restricted):
        producer.produce(topic, key=b"k", value=f"secret of {topic}".encode())  # keyed: projects is compacted
    assert producer.flush(30) == 0

    feed = sasl(bootstrap, "feed1", analyst_pw)
    assert first_event(feed, topics.findings, "feed1.feed") == (
        "message", f"secret of {topics.findings}".encode())
    assert first_event(feed, topics.reports_deidentified, "feed1.text") == (
        "message", f"secret of {topics.reports_deidentified}".encode())
    analyst = sasl(bootstrap, "analyst1", analyst_pw)
    assert topic_error(feed, topics.findings) is None
    # the live topics too: their records carry the real time beside the patient-shifted ones
    for topic in (topics.findings, topics.reports_deidentified, *restricted):
        assert topic_error(analyst, topic) == "TOPIC_AUTHORIZATION_FAILED", topic
    assert first_event(analyst, topics.findings, "analyst1.feed") == ("error", b"GROUP_AUTHORIZATION_FAILED")
    for topic in restricted:
        kind, what = first_event(feed, topic, "feed1.peek")
        assert (kind, what) == ("error", b"TOPIC_AUTHORIZATION_FAILED"), (topic, kind, what)
    # a group outside its prefix is refused too, and so is writing to the feed
    kind, what = first_event(feed, topics.findings, "radstream.clickhouse-sink")
    assert (kind, what) == ("error", b"GROUP_AUTHORIZATION_FAILED"), (kind, what)
    errors: list[KafkaError] = []
    p = make_producer(feed, **{"enable.idempotence": False, "message.timeout.ms": 10000})
    p.produce(topics.findings, value=b"forged", on_delivery=lambda err, _m: errors.append(err))
    p.flush(15)
    assert errors and errors[0] is not None and errors[0].name() == "TOPIC_AUTHORIZATION_FAILED", errors
    # a wrong password: no metadata at all
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-the-password")
    kind, what = first_event(sasl(bootstrap, "feed1", wrong), topics.findings, "feed1.x",
                             timeout=8)
    assert kind != "message"


def test_the_worker_runs_on_the_sasl_broker(scram_broker: tuple[str, Path], tmp_path: Path) -> None:
    """Every client of the worker (the agents' consumer loops, the sink's consumer loop, producers, the audit
    producer) connects with KafkaConfig's SASL settings: a report goes in, its findings come out on
    the feed and land in the warehouse."""
    bootstrap, admin_pw = scram_broker
    prefix = f"w{uuid.uuid4().hex[:6]}."
    topics = {f.name: prefix + getattr(TopicsConfig(), f.name) for f in dataclasses.fields(TopicsConfig)}
    settings = Settings(state_dir=str(tmp_path / "state")).replace(
        kafka={"bootstrap": bootstrap, "security_protocol": "SASL_PLAINTEXT",
               "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "radstream",
               "sasl_password_file": str(admin_pw),
               "consumer_group": f"g{uuid.uuid4().hex[:6]}"},
        topics=topics, worker={"web_port": free_port()})
    Path(settings.state_dir).mkdir(parents=True)
    create_topics(settings.kafka, settings.topics)
    rec = report("SASL1", "FINDINGS: 8 mm nodule in the left lower lobe.")
    with worker_process(settings, tmp_path / "worker.log") as proc:
        p = make_producer(settings.kafka)
        produce(p, settings.topics.reports, "report_finalized", "default|SASL1", rec)
        assert p.flush(30) == 0
        kind, value = first_event(settings.kafka, settings.topics.findings, "radstream.probe", timeout=90)
        assert kind == "message" and value is not None, (kind, (tmp_path / "worker.log").read_text()[-3000:])
        research = research_accession(settings, "SASL1")
        assert serde.decode("report_findings", value)["accession"] == research

        def stored() -> bool:
            try:
                sql = f"SELECT count() FROM findings_latest WHERE accession = '{research}'"
                return query_rows(settings, sql) not in ([], [["0"]])
            except Exception:
                return False
        deadline = time.monotonic() + 90
        while not stored() and time.monotonic() < deadline:
            time.sleep(1)
        assert stored(), (tmp_path / "worker.log").read_text()[-3000:]
        assert proc.poll() is None


def test_steward_and_analyst_commands_write_what_their_roles_grant(scram_broker: tuple[str, Path],
                                                                    tmp_path: Path) -> None:
    """The writes of the documented commands, each with its user's own SCRAM account and the grants of
    kafka_roles.json: a steward's ``dicom quarantine purge`` and ``release`` (quarantine topic, the
    received-instance topics, the projects registry read, the audit topic) and an analyst's local audit
    (as ``radstream sql --direct`` records it). Refused before the grants were fixed: the steward had
    no write on the quarantine and received topics, the analyst none on audit."""
    from click.testing import CliRunner

    from radstream.access import audit_target, flush_audit
    from radstream.cli import main
    from radstream.config import settings_env
    from sinks.dicom.projects import publish
    from streams import audit
    from tests.sinks.dicom.helpers import TEST_PROJECTS, role_env
    from tests.sinks.dicom.test_quarantine_delivery import _quarantined

    bootstrap, admin_pw = scram_broker
    prefix = f"r{uuid.uuid4().hex[:6]}."
    topics = TopicsConfig(**{f.name: prefix + getattr(TopicsConfig(), f.name)
                             for f in dataclasses.fields(TopicsConfig)})
    admin = sasl(bootstrap, "radstream", admin_pw)
    create_topics(admin, topics)
    for p in TEST_PROJECTS.all():
        publish(admin, topics, p)
    accounts: dict[str, KafkaConfig] = {}
    for user, role in (("steward7", "steward"), ("analyst7", "analyst")):
        pw = tmp_path / f"{user}.pw"
        pw.write_text(uuid.uuid4().hex + "\n")
        add_scram_user(admin, user, pw.read_text().strip())
        grant_role(admin, topics, role, user)
        accounts[user] = dataclasses.replace(sasl(bootstrap, user, pw), consumer_group=user)
    time.sleep(2)  # the new credentials and ACLs reach the broker's caches

    def as_user(user: str) -> Settings:
        return Settings(state_dir=str(tmp_path / "state")).replace(
            kafka=dataclasses.asdict(accounts[user]), topics=dataclasses.asdict(topics))

    steward = as_user("steward7")
    q, purged = _quarantined(steward, "IRB-9", 1)
    _, released = _quarantined(steward, "P1", 2)  # identified: stored as received (no key needed)
    runner = CliRunner()
    for verb, entry in (("purge", purged), ("release", released)):
        result = runner.invoke(main, ["dicom", "quarantine", verb, entry.key, "--reason", "checked"],
                               env=role_env(steward, "steward7", "steward"))
        assert result.exit_code == 0, (verb, result.output)
        assert q.find(entry.key) is None
    analyst = as_user("analyst7")
    target = audit_target(analyst)
    audit.record(target, "analyst7", "sql.query", query="SELECT 1")
    assert flush_audit(target, 30) == 0
    assert settings_env(analyst)["RADSTREAM_KAFKA_SASL_USERNAME"] == "analyst7"
