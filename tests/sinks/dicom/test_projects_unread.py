"""A projects view that was never read (Kafka down) does not refuse a retrieval as "not registered":
the refusal says what failed. No broker: nothing listens at the address."""

from __future__ import annotations

import socket

from sinks.dicom.projects import ProjectRegistry, refusal
from streams.config import KafkaConfig, TopicsConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_registry_never_read_says_kafka_not_unregistered() -> None:
    registry = ProjectRegistry(KafkaConfig(bootstrap=f"127.0.0.1:{_free_port()}"), TopicsConfig(),
                               load_timeout_s=1.0)
    try:
        why = refusal(registry, "IRB-1", "RESEARCH")
    finally:
        registry.stop()
    assert why is not None
    assert "cannot tell whether project 'IRB-1' is registered" in why and "Kafka" in why, why
    assert "is not registered" not in why
