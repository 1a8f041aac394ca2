"""Helpers of the stream tests: report records, a throwaway consumer, free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from radstream.config import Settings, settings_env

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def research_accession(settings: Settings, accession: str) -> str:
    """The accession the analysts' tables and topics hold for a clinical one (processors.ingest.research),
    keyed with the installation's key of ``settings`` (configured, else its state dir's)."""
    from processors.ingest.pseudonym import keyed_identifier
    from radstream.text_deid import research_key

    return keyed_identifier(research_key(settings), "accession", accession)


def to_research_key(settings: Settings, key: bytes) -> bytes:
    """A reports-topic key (site|accession) as the analysts' topics key the same report."""
    site, accession = key.decode().split("|", 1)
    return research_key_of(settings, site, accession)


def clinical_of(settings: Settings, accessions: Any) -> dict[str, str]:
    """research accession -> clinical accession, for the clinical accessions a test sent."""
    return {research_accession(settings, a): a for a in accessions}


def research_key_of(settings: Settings, site: str, accession: str) -> bytes:
    """The Kafka key of a report on the analysts' topics (findings, de-identified reports)."""
    return f"{site}|{research_accession(settings, accession)}".encode()


def report(accession: str, text: str, status: str = "final", version: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"ev-{accession}-{version}", "accession": accession, "report_id": f"R{accession}",
        "version": version, "status": status, "patient_id": "P1", "modality": "CT",
        "procedure_description": "CT CHEST WITHOUT CONTRAST", "received_time": datetime.now(UTC),
        "source_format": "json", "text": text,
    }


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




@contextmanager
def radstream_process(settings: Settings, log_path: Path, *args: str, stop_s: float = 30.0,
                      pass_fds: tuple[int, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """``radstream [args]`` as a real process with ``settings``; stopped (SIGTERM, then SIGKILL after
    ``stop_s``) with its whole process group at the end. ``pass_fds``: descriptors it inherits."""
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "radstream", *args], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                pass_fds=pass_fds)
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(stop_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@contextmanager
def worker_process(settings: Settings, log_path: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``radstream worker [args]`` as a real process (``radstream_process``). Its embedded store, when
    it runs the sink and no store is there yet, starts as a migrated copy (``tests.helpers_chdb``): its
    own migrate then applies nothing, and the test does not wait for the migrations."""
    if "--no-sink" not in args:
        from tests.helpers_chdb import seed_store_of

        seed_store_of(settings.clickhouse.url, settings.clickhouse.database)
    with radstream_process(settings, log_path, "worker", *args) as proc:
        yield proc


def ingest_gate(directory: Path, role: str = "ingest") -> tuple[Any, dict[str, str]]:
    """An authentication gate with one user of ``role`` (a token store under ``directory``), and the
    header that user sends."""
    from streams.auth import Gate, TokenStore

    store = TokenStore(directory / "auth" / f"tokens-{uuid.uuid4().hex[:6]}.json")
    store.add_user(f"{role}-client", [role])
    return Gate(store), {"Authorization": f"Bearer {store.add_token(f'{role}-client')}"}
