"""The local broker's JVM flags: quick start by default, Kafka's own variables when a site sets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.stack import kafka


def test_the_broker_takes_kafkas_own_jvm_variables_else_its_start_up_flags() -> None:
    default = kafka.jvm_flags({})
    assert "-XX:TieredStopAtLevel=1" in default and "-Xmx512m" in default
    tuned = kafka.jvm_flags({"KAFKA_HEAP_OPTS": "-Xms1g -Xmx1g",
                             "KAFKA_JVM_PERFORMANCE_OPTS": " ".join(kafka.KAFKA_PERFORMANCE_FLAGS)})
    assert tuned[:2] == ["-Xms1g", "-Xmx1g"] and "-XX:+UseG1GC" in tuned
    assert not {"-XX:TieredStopAtLevel=1", "-Xmx512m", "-XX:+UseSerialGC"} & set(tuned)
    assert tuned[-2:] == kafka.COMMON_FLAGS
    # an empty variable is no setting, as in kafka-run-class.sh
    assert kafka.jvm_flags({"KAFKA_JVM_PERFORMANCE_OPTS": ""}) == default


def test_the_java_command_line_carries_those_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KAFKA_HEAP_OPTS", raising=False)
    monkeypatch.setenv("KAFKA_JVM_PERFORMANCE_OPTS", "-server -XX:+UseG1GC")
    cmd = kafka._java(tmp_path, tmp_path, kafka.MAIN_CLASS)
    assert cmd[1:6] == ["-Xms128m", "-Xmx512m", "-server", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
