"""Topic creation against the real broker: idempotent, configured as asked, no auto-create."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import ConfigResource

from radstream.config import Settings
from streams.topics import admin_client, create_topics, topic_specs, wait_until_usable

pytestmark = pytest.mark.integration


def _prefixed(settings: Settings, **kafka: int) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = {f.name: prefix + getattr(settings.topics, f.name) for f in dataclasses.fields(settings.topics)}
    return settings.replace(topics=topics, kafka=kafka)


def test_create_twice_then_exists_with_configured_partitions_and_retention(kafka_settings: Settings) -> None:
    settings = _prefixed(kafka_settings, partitions=3, retention_ms=3_600_000)
    specs = topic_specs(settings.topics)
    names = {spec.name for spec in specs}

    first = create_topics(settings.kafka, settings.topics)
    second = create_topics(settings.kafka, settings.topics)

    assert first == {name: "created" for name in names}
    assert second == {name: "exists" for name in names}
    wait_until_usable(settings.kafka, names)
    admin = admin_client(settings.kafka)
    metadata = admin.list_topics(timeout=10).topics
    for spec in specs:
        assert len(metadata[spec.name].partitions) == (spec.partitions or 3)
    resources = {ConfigResource(ConfigResource.Type.TOPIC, spec.name): spec for spec in specs}
    for resource, fut in admin.describe_configs(list(resources)).items():
        config = fut.result(timeout=10)
        if resources[resource].compacted:
            assert config["cleanup.policy"].value == "compact", resource.name
        else:
            assert config["retention.ms"].value == "3600000", resource.name
    assert any(spec.compacted for spec in specs)


def test_topic_settings_fixture_created_unique_topics(topic_settings: Settings) -> None:
    existing = admin_client(topic_settings.kafka).list_topics(timeout=10).topics
    specs = topic_specs(topic_settings.topics)
    prefix = specs[0].name.split(".", 1)[0] + "."
    assert prefix.startswith("t") and all(spec.name.startswith(prefix) for spec in specs)
    for spec in specs:
        assert len(existing[spec.name].partitions) == (spec.partitions or topic_settings.kafka.partitions)


def test_producing_to_an_unknown_topic_fails_and_creates_nothing(kafka_settings: Settings) -> None:
    topic = f"t{uuid.uuid4().hex[:10]}.not-created"
    producer = Producer({"bootstrap.servers": kafka_settings.kafka.bootstrap,
                         "topic.metadata.propagation.max.ms": 1000, "message.timeout.ms": 5000,
                         "log_level": 0})
    errors: list[KafkaError | None] = []
    producer.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)

    assert len(errors) == 1
    assert errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                                KafkaError._MSG_TIMED_OUT)
    assert topic not in admin_client(kafka_settings.kafka).list_topics(timeout=10).topics
