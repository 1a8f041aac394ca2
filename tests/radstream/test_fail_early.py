"""Fail early: the whole configuration is checked when a long-running process starts. A bad one ends it
with one message that lists every problem and exit code 78 (EX_CONFIG), before it connects to
anything. One test per class of error (classifier configs, AE titles, paths, keys and certificates,
Kafka and numbers), then real ``radstream`` processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radstream.config import ConfigError, Settings, problems, settings_env, validate

ROOT = Path(__file__).resolve().parents[2]


def ok(tmp_path: Path) -> Settings:
    return Settings(state_dir=str(tmp_path / "state"))


def test_the_defaults_have_no_problem(tmp_path: Path) -> None:
    assert problems(ok(tmp_path)) == []
    assert validate(ok(tmp_path)) == ok(tmp_path)


def test_classifier_configs(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"name": "m", "model_dir": str(model), "labels": {"PTX": {"concept": "ptx"}}}))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    no_key = tmp_path / "nokey.json"
    no_key.write_text(json.dumps({"name": "m", "labels": {}}))
    no_model = tmp_path / "nomodel.json"
    no_model.write_text(json.dumps({"name": "m", "model_dir": "gone", "labels": {}}))
    bad_task = tmp_path / "task.json"
    bad_task.write_text(json.dumps({"name": "m", "model_dir": str(model), "labels": {}, "task": "poetry"}))
    paths = (str(good), str(bad_json), str(no_key), str(no_model), str(bad_task),
             str(tmp_path / "missing.json"))
    found = problems(ok(tmp_path).replace(ml={"classifiers": paths}))
    assert len(found) == 5, found
    assert all(p.startswith("ml.classifiers: ") for p in found)
    text = "\n".join(found)
    assert str(bad_json) in text and "missing key 'model_dir'" in text and "is not a directory" in text
    assert "task must be one of" in text and "cannot read" in text and str(good) not in text


def test_ae_titles(tmp_path: Path) -> None:
    s = ok(tmp_path).replace(pacs={"ae_title": "A" * 17, "calling_ae": "   "},
                             research={"ae_title": "RE\\SEARCH", "allowed_calling_aes": ("ORTHANC", ""),
                                       "allowed_destinations": ("RESEARCH", "TOO-LONG-FOR-AN-AE")})
    found = problems(s)
    assert [p.split(":")[0] for p in found] == ["pacs.ae_title", "pacs.calling_ae", "research.ae_title",
                                                "research.allowed_calling_aes",
                                                "research.allowed_destinations"], found
    assert "16 characters" in found[0] and "backslash" in found[2]


def test_paths(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    s = Settings(state_dir=str(a_file)).replace(
        research={"store_dir": str(a_file / "research"), "quarantine_dir": str(a_file)},
        auth={"roles_dir": str(tmp_path / "no-roles")})
    found = problems(s)
    assert {p.split(":")[0] for p in found} == {"state_dir", "research.store_dir", "research.quarantine_dir",
                                                "auth.roles_dir"}, found


def test_keys_and_certificates(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("tiny")
    s = ok(tmp_path).replace(
        ingest={"pseudonym_key_file": str(short)},
        kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "MD5", "sasl_username": "u",
               "sasl_password_file": str(tmp_path / "no-password"),
               "ssl_cafile": str(tmp_path / "no-ca.pem")},
        auth={"tls_cert": str(short)})
    found = problems(s)
    assert [p.split(":")[0] for p in found] == [
        "kafka.sasl_mechanism", "kafka.sasl_password_file", "kafka.ssl_cafile", "ingest.pseudonym_key_file",
        "auth.tls_cert, tls_key"], found
    assert "shorter than 16 bytes" in found[3]
    assert problems(ok(tmp_path).replace(ingest={"pseudonym_key": "short"})) == [
        "ingest.pseudonym_key: shorter than 16 bytes"]


def test_kafka_topics_and_numbers(tmp_path: Path) -> None:
    s = ok(tmp_path).replace(
        kafka={"bootstrap": "127.0.0.1:9092,broker-two", "partitions": 0, "replication_factor": 2,
               "min_insync_replicas": 3},
        topics={"findings": "radstream.reports.finalized", "audit": "no spaces please"},
        worker={"session_timeout_s": 3.0, "nlp_batch": 0},
        ingest={"timezone": "Mars/Olympus", "hl7_charset": "klingon", "accession_field": "OBR-4"},
        clickhouse={"url": "mysql://x", "database": "drop table"},
        pacs={"windows": "mon-fri 25:00-07:00"}, text_deid={"mode": "scramble"})
    found = "\n".join(problems(s))
    for expected in ("kafka.bootstrap: 'broker-two' is not host:port", "kafka.partitions: must be at least 1",
                     "kafka.min_insync_replicas: 3 is more than the replication_factor 2",
                     "topics.findings: the same topic as reports", "topics.audit: 'no spaces please'",
                     "worker.nlp_batch", "worker.session_timeout_s: must be within 6..1800",
                     "worker.heartbeat_s", "ingest.timezone", "ingest.hl7_charset", "ingest.accession_field",
                     "clickhouse.url", "clickhouse.database", "pacs.windows", "text_deid.mode"):
        assert expected in found, (expected, found)


def test_one_error_names_every_problem(tmp_path: Path) -> None:
    s = ok(tmp_path).replace(pacs={"ae_title": ""}, worker={"web_port": 70000})
    with pytest.raises(ConfigError) as err:
        validate(s)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("has 2 problems:") and len(lines) == 3


def _run_bad(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """``radstream <args>`` with a bad config whose broker is a socket of ours: returns the process and
    how many connections that socket got."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    s = ok(tmp_path).replace(kafka={"bootstrap": f"127.0.0.1:{listener.getsockname()[1]}"},
                             pacs={"calling_ae": "CALLING\\AE"},
                             ml={"classifiers": (str(tmp_path / "site-model.json"),)})
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "radstream", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert time.monotonic() - started < 30
    accepted = 0
    try:
        while True:
            listener.accept()[0].close()
            accepted += 1
    except BlockingIOError:
        pass
    finally:
        listener.close()
    return proc, accepted


@pytest.mark.parametrize("command", [("worker",), ("worker", "--no-sink"), ("db", "sink"),
                                     ("ingest", "hl7-listener", "--port", "0"), ("dicom", "worker")])
def test_a_bad_config_stops_a_process_before_it_connects(tmp_path: Path, command: tuple[str, ...]) -> None:
    proc, accepted = _run_bad(tmp_path, *command)
    assert proc.returncode == 78, proc.stderr
    assert accepted == 0, "it connected to the broker"
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: the configuration has 2 problems:"), proc.stderr
    assert "pacs.calling_ae:" in proc.stderr and "ml.classifiers: cannot read" in proc.stderr
    assert not Path(tmp_path / "state" / "chdb").exists()  # no store opened either
