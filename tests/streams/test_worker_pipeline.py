"""The worker's pipelined NLP agent on a real broker: findings in input order, each carrying its
report's produce time, offsets committed only for reports whose findings are out, and nothing lost
when the worker is killed mid-stream."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from radstream.config import Settings
from streams import serde
from streams.handlers import origin_ms
from streams.producer import make_producer
from tests.streams.helpers import consume, free_port, report, to_research_key, worker_process

TEXT = "FINDINGS: 7 mm nodule in the right upper lobe. No pleural effusion."


def produce_reports(s: Settings, keys: list[tuple[str, int]]) -> None:
    p = make_producer(s.kafka)
    for acc, version in keys:
        p.produce(s.topics.reports, key=f"default|{acc}".encode(),
                  value=serde.encode("report_finalized", report(acc, TEXT, version=version)))
    assert p.flush(30) == 0


def committed(s: Settings, topic: str) -> int:
    """Sum over partitions of the offsets the worker's consumer group committed on ``topic``."""
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"{s.kafka.consumer_group}-worker"})
    try:
        parts = [TopicPartition(topic, p) for p in range(s.kafka.partitions)]
        return sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


def test_findings_in_order_with_origin_and_commits_after(worker: Settings) -> None:
    s = worker
    # 5 versions of 40 reports, interleaved: 200 events, several NLP batches in flight at once
    keys = [(f"P{i % 40}", i // 40 + 1) for i in range(200)]
    produce_reports(s, keys)
    out = consume(s, s.topics.findings, len(keys))
    assert len(out) == len(keys)
    versions: dict[bytes, list[int]] = defaultdict(list)
    for m in out:
        versions[m.key()].append(serde.decode("report_findings", m.value())["report_version"])
    assert all(v == [1, 2, 3, 4, 5] for v in versions.values()) and len(versions) == 40

    produced = {(to_research_key(s, m.key()), serde.decode("report_finalized", m.value())["version"]):
                m.timestamp()[1] for m in consume(s, s.topics.reports, len(keys))}
    for m in out:
        rec = serde.decode("report_findings", m.value())
        assert origin_ms(m.headers()) == produced[(m.key(), rec["report_version"])]
        assert m.timestamp()[1] >= produced[(m.key(), rec["report_version"])]

    deadline = time.monotonic() + 30
    while committed(s, s.topics.reports) < len(keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert committed(s, s.topics.reports) == len(keys)


def test_killed_mid_stream_every_committed_report_has_findings(topic_settings: Settings,
                                                                 tmp_path: Path) -> None:
    """At-least-once, checked at the point of a crash: kill -9 the worker (and its NLP child) while
    reports are in flight; every report below the committed offsets must have its findings on the
    topic (a restarted worker resumes from those offsets, so what is above them is done again)."""
    s = topic_settings.replace(state_dir=str(tmp_path), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
                               worker={"web_port": free_port()})
    keys = [(f"K{i}", 1) for i in range(2000)]
    with worker_process(s, tmp_path / "killed.log", "--no-sink") as proc:
        produce_reports(s, keys[:5])
        assert len(consume(s, s.topics.findings, 5)) == 5  # up and streaming
        produce_reports(s, keys[5:])
        c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": uuid.uuid4().hex,
                      "auto.offset.reset": "earliest"})
        c.subscribe([s.topics.findings])
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 300 and time.monotonic() < deadline:
            seen += len([m for m in c.consume(500, timeout=0.2) if m.error() is None])
        c.close()
        os.killpg(proc.pid, signal.SIGKILL)
    done = committed(s, s.topics.reports)
    assert 5 <= done < len(keys), "the worker was not killed mid-stream"
    parts = [TopicPartition(s.topics.reports, p) for p in range(s.kafka.partitions)]
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"{s.kafka.consumer_group}-worker"})
    try:
        limits = {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
    finally:
        c.close()
    reports = consume(s, s.topics.reports, len(keys))
    must = {to_research_key(s, m.key()) for m in reports if m.offset() < limits[m.partition()]}
    assert len(must) == done
    published = {m.key() for m in consume(s, s.topics.findings, len(keys), timeout=10.0)}
    assert must <= published, f"{len(must - published)} committed reports have no findings"
