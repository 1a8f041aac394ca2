"""A 3-node Kafka cluster from ``radstream stack up --brokers 3``: our topics are replicated 3 times
with min.insync.replicas 2, and losing a broker (kill -9) in the middle of a stream of 5,000 HL7
reports, while the MLLP listener and the worker run, loses nothing and doubles nothing in the latest
views. The broker comes back and catches up: every partition is in sync on 3 replicas again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from processors.ingest.hl7v2 import parse_ack
from radstream.config import Settings, load_settings
from radstream.stack import kafka
from streams.ingest.mllp import send_messages
from streams.topics import create_topics, topic_specs
from tests.radstream.recovery_helpers import ROOT, Proc, Tail, Warehouse, keys, worker_settings
from tests.streams.helpers import free_port

pytestmark = pytest.mark.integration

REPORTS = 5000
SAMPLE = (ROOT / "samples" / "hl7" / "vendor_a_obx_per_line.hl7").read_bytes()


def oru(i: int) -> bytes:
    """The sample ORU^R01 as report ``ACC<i>`` with its own message control id."""
    return SAMPLE.replace(b"ACC20260302001", f"ACC{i:06d}".encode()).replace(b"A000123", f"M{i:06d}".encode())


def stack(state_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_") or k in (
        "RADSTREAM_CACHE", "RADSTREAM_KAFKA_VERSION")}
    env.update(RADSTREAM_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT), COLUMNS="300")
    proc = subprocess.run([sys.executable, "-m", "radstream", "stack", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def send_all(port: int, messages: list[bytes], connections: int = 4) -> dict[str, int]:
    """Send every message over ``connections`` MLLP connections; what was not acknowledged with AA (the
    listener answers AR when Kafka did not confirm) is sent again, as an interface engine does."""
    todo = list(messages)
    codes: dict[str, int] = {}
    for _ in range(10):
        if not todo:
            break
        chunks = [todo[i::connections] for i in range(connections)]

        async def run(chunks: list[list[bytes]] = chunks) -> list[list[bytes]]:
            return list(await asyncio.gather(*(send_messages("127.0.0.1", port, c, timeout=60)
                                               for c in chunks)))

        again = []
        for chunk, acks in zip(chunks, asyncio.run(run()), strict=True):
            for raw, ack in zip(chunk, acks, strict=True):
                code = parse_ack(ack)[0]
                codes[code] = codes.get(code, 0) + 1
                if code != "AA":
                    again.append(raw)
        todo = again
    assert not todo, f"{len(todo)} messages never acknowledged: {codes}"
    return codes


def replicas(admin: AdminClient, names: list[str]) -> dict[str, set[int]]:
    """Per topic: the numbers of replicas its partitions have."""
    md = admin.list_topics(timeout=10)
    return {n: {len(p.replicas) for p in md.topics[n].partitions.values()} for n in names}


def in_sync(admin: AdminClient, names: list[str]) -> tuple[int, int]:
    """(partitions with all 3 replicas in sync, partitions) of ``names``."""
    md = admin.list_topics(timeout=10)
    parts = [p for n in names for p in md.topics[n].partitions.values()]
    return sum(len(p.isrs) == 3 for p in parts), len(parts)


def test_a_broker_killed_mid_stream_loses_nothing_and_catches_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = stack(state, "up", "--only", "kafka", "--brokers", "3")
    kdir = state / "kafka"
    procs: list[Proc] = []
    try:
        assert "3 of 3 brokers" in stack(state, "status")
        bootstrap = json.loads((state / "stack.json").read_text())["settings"]["kafka"]["bootstrap"]
        assert f"kafka.bootstrap = {bootstrap}" in out and len(bootstrap.split(",")) == 3
        base = load_settings(env={"RADSTREAM_STATE_DIR": str(state)})
        s: Settings = worker_settings(base, state)
        create_topics(s.kafka, s.topics)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [spec.name for spec in topic_specs(s.topics)]
        assert replicas(admin, names) == dict.fromkeys(names, {3})
        configs: dict[str, Any] = {r.name: f.result() for r, f in admin.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]).items()}
        assert {n: c["min.insync.replicas"].value for n, c in configs.items()} == dict.fromkeys(names, "2")

        warehouse = Warehouse(s)
        tail = Tail(s, s.topics.findings)
        worker = Proc(s, tmp_path / "worker.log", "worker")
        procs.append(worker)
        port = free_port()
        listener = Proc(s, tmp_path / "listener.log", "ingest", "hl7-listener", "--port", str(port))
        procs.append(listener)
        deadline = time.monotonic() + 60
        while f"MLLP on 127.0.0.1:{port}" not in listener.text():
            assert time.monotonic() < deadline and listener.popen.poll() is None, listener.text()
            time.sleep(0.1)

        sent: dict[str, Any] = {}
        messages = [oru(i) for i in range(REPORTS)]
        sender = threading.Thread(target=lambda: sent.update(send_all(port, messages)))
        sender.start()
        while sum(tail.keys.values()) < REPORTS // 5 and sender.is_alive():
            tail.poll()
        # the coordinator of the sink's group: its failover is what fenced the sink's static member
        # (a fatal librdkafka error) and stalled the warehouse until the loop replaced its consumer
        sink_group = f"{s.kafka.consumer_group}.clickhouse-sink"
        node = admin.describe_consumer_groups([sink_group])[sink_group].result().coordinator.id
        victim = kafka.running(kdir / f"node-{node}")
        assert victim is not None and victim.pid
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = sum(tail.keys.values())
        time.sleep(5)
        kafka.restart_node(kdir, node)
        sender.join(300)
        assert not sender.is_alive()
        print(f"broker {node} killed after {killed_at} findings; acks {sent}")
        assert killed_at < REPORTS, "the broker was not killed mid-stream"

        accessions = [f"ACC{i:06d}" for i in range(REPORTS)]
        assert tail.wait_for(keys(accessions), 180), f"{REPORTS - len(tail.keys)} reports without findings"
        assert warehouse.wait_reports(REPORTS, 180) == REPORTS
        assert warehouse.doubled() == {"nlp_latest": 0, "reports_latest": 0, "findings_latest": 0}
        assert worker.popen.poll() is None and listener.popen.poll() is None

        # the worker's own topics (its tables' changelogs) are replicated as ours
        changelogs = [n for n in admin.list_topics(timeout=10).topics if n.startswith(
            f"{s.kafka.consumer_group}-worker-") and n.endswith("-changelog")]
        assert len(changelogs) == 2 and replicas(admin, changelogs) == dict.fromkeys(changelogs, {3})
        names += changelogs
        deadline = time.monotonic() + 90
        while (isr := in_sync(admin, names))[0] < isr[1] and time.monotonic() < deadline:
            time.sleep(1)
        assert isr[0] == isr[1], f"only {isr[0]} of {isr[1]} partitions are in sync on 3 replicas"
        tail.close()
    finally:
        for proc in procs:
            proc.stop()
        stack(state, "down")
        kafka.stop_cluster(kdir)
