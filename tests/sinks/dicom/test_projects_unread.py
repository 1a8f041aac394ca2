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


def test_unread_is_the_one_rule_of_the_refusal_and_the_cli() -> None:
    """``unread``: a registry whose topic was not read to its end (never started here); a fixed set of
    projects is always read. ``radstream.cli.project`` asks the same function (no second copy of it)."""
    import inspect

    from radstream.cli import project as cli_project
    from sinks.dicom.projects import StaticProjects, unread

    registry = ProjectRegistry(KafkaConfig(bootstrap=f"127.0.0.1:{_free_port()}"), TopicsConfig())
    assert unread(registry) and not unread(StaticProjects())
    registry.loaded.set()
    assert not unread(registry)
    assert "unread(registry)" in inspect.getsource(cli_project._read)
    assert "loaded.is_set" not in inspect.getsource(cli_project)
