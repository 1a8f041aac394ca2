"""``radstream ingest hl7-listener`` and ``radstream ingest fhir-server`` as real processes.

Each command is started as a subprocess on a free port with a pseudonym key configured, gets one
message / resource over the network, answers (ACK AA / HTTP 201), puts the event on Kafka (with the
pseudonym, never the patient id), and stops cleanly on SIGTERM with exit status 0. The key appears
nowhere in what the process printed or logged (run at DEBUG).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from processors.ingest.hl7v2 import parse_ack
from processors.ingest.pseudonym import pseudonym
from radstream.config import Settings, settings_env
from streams.ingest.mllp import send_messages
from tests.streams.helpers import free_port
from tests.streams.ingest.test_ingest_front_doors import read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"


@contextmanager
def cli_server(settings: Settings, command: str, port: int, log_path: Path,
               ready: str) -> Iterator[subprocess.Popen[bytes]]:
    """``radstream ingest <command>`` on ``port``; yields once it printed ``ready``; killed if still up."""
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "radstream", "ingest", command, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "DEBUG"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while ready not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, f"{command} exited {proc.returncode}: {log_path.read_text()}"
                assert time.monotonic() < deadline, f"{command} not ready: {log_path.read_text()}"
                time.sleep(0.1)
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_hl7_listener_command_acks_publishes_and_stops_on_sigterm(topic_settings: Settings,
                                                                   tmp_path: Path) -> None:
    key = f"key-from-file-{uuid.uuid4().hex}"
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text(key + "\n")
    settings = topic_settings.replace(ingest={"pseudonym_key_file": str(key_file)})
    port, log = free_port(), tmp_path / "hl7-listener.log"
    raw = (SAMPLES / "hl7" / "vendor_a_obx_per_line.hl7").read_bytes()
    with cli_server(settings, "hl7-listener", port, log, f"MLLP on 127.0.0.1:{port}") as proc:
        [ack] = asyncio.run(send_messages("127.0.0.1", port, [raw], timeout=30))
        code, control_id, text = parse_ack(ack)
        assert (code, control_id) == ("AA", "A000123") and "1 report(s) accepted" in text
        [ev] = read_topic(settings, settings.topics.reports, "report_finalized", expect=1)
        assert stop(proc) == 0, log.read_text()
    assert (ev["accession"], ev["placer_order_number"], ev["source_format"]) == (
        "ACC20260302001", "PL5521", "hl7v2")
    assert ev["patient_id_is_pseudonym"]
    assert ev["patient_id"] == pseudonym(key.encode(), "default", "7301445")
    assert "7301445" not in json.dumps(ev, default=str)
    output = log.read_text()
    assert "hl7-listener: stopped" in output and "'AA': 1" in output
    assert "research pseudonyms on (key from the key file)" in output and "AA A000123" in output
    assert key not in output and "DEBUG" in output  # the debug log ran, and did not show the key


def test_fhir_server_command_answers_201_publishes_and_stops_on_sigterm(topic_settings: Settings,
                                                                         tmp_path: Path) -> None:
    key = f"key-in-env-{uuid.uuid4().hex}"
    settings = topic_settings.replace(ingest={"pseudonym_key": key})
    port, log = free_port(), tmp_path / "fhir-server.log"
    body = (SAMPLES / "fhir" / "diagnosticreport_final.json").read_bytes()
    with cli_server(settings, "fhir-server", port, log, f"http://127.0.0.1:{port}/fhir") as proc:
        token = Path(settings.auth.token_file).with_name("local.token").read_text().strip()  # the OS user's
        req = urllib.request.Request(f"http://127.0.0.1:{port}/fhir/DiagnosticReport", data=body,
                                     headers={"Content-Type": "application/fhir+json",
                                              "Authorization": f"Bearer {token}"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, outcome = resp.status, json.loads(resp.read())
        assert status == 201 and outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "information"
        assert "FH-ACC-7781 final" in outcome["issue"][0]["diagnostics"]
        [ev] = read_topic(settings, settings.topics.reports, "report_finalized", expect=1)
        assert stop(proc) == 0, log.read_text()
    assert (ev["accession"], ev["status"], ev["source_format"]) == ("FH-ACC-7781", "final", "fhir")
    assert ev["patient_id_is_pseudonym"]
    assert ev["patient_id"] == pseudonym(key.encode(), "default", "pat-5512")
    assert "pat-5512" not in json.dumps(ev, default=str)
    output = log.read_text()
    assert "fhir-server: stopped" in output and "research pseudonyms on (key from settings)" in output
    assert key not in output and "DEBUG" in output
