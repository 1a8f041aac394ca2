"""The Faust worker as a real process on a real broker: findings out, bad input to the dead-letter topic."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from radstream.config import Settings, settings_env
from streams import serde
from streams.producer import make_producer, produce_sync

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(accession: str, text: str, status: str = "final", version: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"ev-{accession}-{version}", "accession": accession, "report_id": f"R{accession}",
        "version": version, "status": status, "patient_id": "P1", "modality": "CT",
        "procedure_description": "CT CHEST WITHOUT CONTRAST", "received_time": datetime.now(UTC),
        "source_format": "json", "text": text,
    }


@pytest.fixture
def worker(topic_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = topic_settings.replace(
        state_dir=str(tmp_path),
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": _free_port()},
    )
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "radstream", "worker", "--no-sink"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield settings
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def consume(settings: Settings, topic: str, n: int, timeout: float = 60.0) -> list[Any]:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        c.close()
    return out


def test_findings_published_and_bad_input_dead_lettered(worker: Settings) -> None:
    s = worker
    p = make_producer(s)
    key = b"default|X1"
    produce_sync(p, s.topics.reports, "report_finalized", key,
                 report("X1", "FINDINGS: No pneumothorax. There is a small right pleural effusion."))
    p.produce(s.topics.reports, key=b"default|BAD", value=b"this is not avro")
    p.produce(s.topics.reports, key=b"default|BAD2",
              value=serde.encode("dead_letter", {"stage": "x", "value": b"", "error_type": "E",
                                                 "error": "wrong contract", "time": datetime.now(UTC)}))
    p.flush(10)
    # the stream goes on after bad input
    produce_sync(p, s.topics.reports, "report_finalized", b"default|X2",
                 report("X2", "IMPRESSION: Stable 6 mm nodule in the left lower lobe."))

    found = {m.key(): serde.decode("report_findings", m.value()) for m in consume(s, s.topics.findings, 2)}
    assert set(found) == {b"default|X1", b"default|X2"}
    x1 = found[b"default|X1"]
    assert x1["accession"] == "X1" and x1["event_id"] == "ev-X1-1" and x1["report_version"] == 1
    by_concept = {f["concept"]: f for f in x1["findings"]}
    assert by_concept["pneumothorax"]["negated"] is True
    assert by_concept["pleural_effusion"]["negated"] is False
    assert any(f["concept"] == "nodule" and not f["negated"] for f in found[b"default|X2"]["findings"])

    dead = [serde.decode("dead_letter", m.value()) for m in consume(s, s.topics.dead_letter, 2)]
    assert {d["value"] for d in dead} >= {b"this is not avro"}
    assert all(d["stage"] == "nlp-agent" and d["original_topic"] == s.topics.reports for d in dead)
    assert all(d["offset"] is not None and d["error"] for d in dead)
    assert any("expected report_finalized" in d["error"] for d in dead)


def decoded(rec: dict[str, Any]) -> dict[str, Any]:
    return serde.decode("report_finalized", serde.encode("report_finalized", rec))


def test_retracted_version_carries_no_findings() -> None:
    from streams.handlers import analyze_report

    cancelled = report("X3", "FINDINGS: Large pneumothorax.", status="cancelled", version=2)
    rec = analyze_report(decoded(cancelled))
    assert rec["status"] == "cancelled" and rec.get("findings", []) == []
    assert serde.decode("report_findings", serde.encode("report_findings", rec))["report_version"] == 2
    live = analyze_report(decoded(report("X3", "FINDINGS: Large pneumothorax.", version=1)))
    assert [f["concept"] for f in live["findings"]] == ["pneumothorax"]
