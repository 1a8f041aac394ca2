"""KafkaConfig's security settings: what every confluent-kafka client gets (from the environment too)."""

from __future__ import annotations

from pathlib import Path

from radstream.config import load_settings, settings_env
from streams.config import KafkaConfig


def test_plaintext_default_adds_nothing_but_the_bootstrap() -> None:
    assert KafkaConfig(bootstrap="h:1").client_conf() == {"bootstrap.servers": "h:1"}


def test_sasl_ssl_from_the_environment_with_a_password_file(tmp_path: Path) -> None:
    pw = tmp_path / "kafka.pw"
    pw.write_text("s3cret\n")
    env = {"RADSTREAM_STATE_DIR": str(tmp_path), "RADSTREAM_KAFKA_BOOTSTRAP": "broker:9093",
           "RADSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "RADSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
           "RADSTREAM_KAFKA_SASL_USERNAME": "worker", "RADSTREAM_KAFKA_SASL_PASSWORD_FILE": str(pw),
           "RADSTREAM_KAFKA_SSL_CAFILE": "/etc/ca.pem"}
    kafka = load_settings(env).kafka
    assert kafka.client_conf() == {
        "bootstrap.servers": "broker:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "worker", "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem"}
    assert "s3cret" not in repr(kafka)
    # a child process (worker, sink) gets the same settings; the password stays in its file
    child = settings_env(load_settings(env))
    assert child["RADSTREAM_KAFKA_SASL_PASSWORD_FILE"] == str(pw)
    assert child["RADSTREAM_KAFKA_SASL_PASSWORD"] == ""
