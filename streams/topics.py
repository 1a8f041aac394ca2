"""Our topics, their contracts, and idempotent creation (never broker auto-create)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import KafkaConfig, TopicsConfig

RDKAFKA_LOG = logging.getLogger("radstream.librdkafka")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    contract: str  # schema name in schemas/
    compacted: bool = False  # keyed state (latest value per key is kept forever)
    partitions: int | None = None  # None: KafkaConfig.partitions


def topic_specs(t: TopicsConfig) -> list[TopicSpec]:
    return [
        TopicSpec(t.reports, "report_finalized"),
        TopicSpec(t.findings, "report_findings"),
        TopicSpec(t.reports_deidentified, "report_finalized"),
        TopicSpec(t.retrieval_requests, "retrieval_requested"),
        TopicSpec(t.retrieval_status, "retrieval_status"),
        TopicSpec(t.received_instances, "received_instance"),
        TopicSpec(t.dead_letter, "dead_letter"),
        TopicSpec(t.cohort_watches, "cohort_watch", compacted=True, partitions=1),
        TopicSpec(t.projects, "project_registration", compacted=True, partitions=1),
        TopicSpec(t.received_restricted, "received_original"),
        TopicSpec(t.quarantine, "quarantine_event"),
        TopicSpec(t.audit, "audit_event"),
        TopicSpec(t.dicom_expected, "dicom_expectation", compacted=True, partitions=1),
    ]


def admin_client(kafka: KafkaConfig) -> AdminClient:
    # librdkafka logs through Python logging, not straight to stderr
    conf: dict[str, Any] = {**kafka.client_conf(), "logger": RDKAFKA_LOG}
    return AdminClient(conf)


class KafkaUnavailable(RuntimeError):
    pass


def replication(kafka: KafkaConfig, brokers: int) -> tuple[int, dict[str, str]]:
    """Replication factor and topic config of the topics we create on a cluster of ``brokers``."""
    rf = kafka.replication_factor or (3 if brokers >= 3 else 1)
    isr = kafka.min_insync_replicas or (2 if rf >= 3 else 0)
    return rf, ({"min.insync.replicas": str(isr)} if isr else {})


def cluster_replication(kafka: KafkaConfig, timeout: float = 30.0) -> tuple[int, dict[str, str]]:
    """``replication`` for the cluster at ``kafka.bootstrap`` (asks it how many brokers it has)."""
    try:
        brokers = len(admin_client(kafka).list_topics(timeout=timeout).brokers)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka at {kafka.bootstrap} did not answer: {exc.args[0].str()}"
                               " (is the stack up? `radstream stack up`)") from exc
    return replication(kafka, brokers)


def create_topics(kafka: KafkaConfig, topics: TopicsConfig, timeout: float = 30.0) -> dict[str, str]:
    """Create missing topics; existing ones are left as they are. Returns name -> 'created' | 'exists'."""
    admin = admin_client(kafka)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka at {kafka.bootstrap} did not answer: {exc.args[0].str()}"
                               " (is the stack up? `radstream stack up`)") from exc
    existing = set(meta.topics)
    rf, replicated = replication(kafka, len(meta.brokers))
    result: dict[str, str] = {}
    new: list[NewTopic] = []
    for spec in topic_specs(topics):
        if spec.name in existing:
            result[spec.name] = "exists"
            continue
        config = ({"cleanup.policy": "compact"} if spec.compacted
                  else {"retention.ms": str(kafka.retention_ms)})
        new.append(NewTopic(spec.name, num_partitions=spec.partitions or kafka.partitions,
                            replication_factor=rf, config={**config, **replicated}))
    if new:
        for name, fut in admin.create_topics(new, request_timeout=timeout).items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    result[name] = "exists"
                else:
                    raise
    if any(state == "created" for state in result.values()):
        wait_until_usable(kafka, set(result), timeout)
    return result


def wait_until_usable(kafka: KafkaConfig, names: set[str], timeout: float = 15.0) -> None:
    """CreateTopics returns before the broker's metadata has the new partitions: wait for leaders."""
    admin = admin_client(kafka)
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=5).topics
        missing = [n for n in names if n not in topics or topics[n].error is not None
                   or not topics[n].partitions or any(p.leader < 0 for p in topics[n].partitions.values())]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailable(f"topics have no leader after {timeout} s: {sorted(missing)}")
        time.sleep(0.05)


def group_lag(kafka: KafkaConfig, group: str, topic: str, timeout: float = 10.0) -> int:
    """How many records of ``topic`` consumer group ``group`` has not committed yet: the end offset less
    the committed one, over the topic's partitions (a partition it never committed counts from its
    first record). Reads the group's offsets without joining it."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    # the group's coordinator may be loading or moving (a new broker, a new group): asked again
    moving = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
              KafkaError.COORDINATOR_NOT_AVAILABLE}
    deadline = time.monotonic() + timeout
    c = Consumer({**kafka.client_conf(), "group.id": group, "enable.auto.commit": False,
                  "logger": RDKAFKA_LOG})
    try:
        meta = c.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise KafkaUnavailable(f"topic {topic}: {meta.error.str()}")
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        while True:
            try:
                committed = c.committed(parts, timeout=max(0.5, deadline - time.monotonic()))
                break
            except KafkaException as exc:
                err = exc.args[0]
                if not (err.code() in moving or err.retriable()) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        lag = 0
        for tp in committed:
            low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout)
            lag += max(0, high - (tp.offset if tp.offset >= 0 else low))
        return lag
    finally:
        c.close()
