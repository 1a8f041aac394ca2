"""Several NLP workers in one consumer group (issue 15): three ``radstream worker --no-sink`` processes
share the reports (6 partitions, 2 each), one ``radstream db sink`` loads the warehouse. One NLP worker is
killed (kill -9) in the middle of 3,000 reports; the other two take its partitions over after its session
(10 s), or it is started again under its static id and takes them back. Every report has findings on the
feed, and nothing is in the latest views twice.

``bench/nlp_scale_out.py`` runs the scenario many times and counts the runs that lost or doubled reports.
"""

from __future__ import annotations

import dataclasses
import signal
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from radstream.config import Settings
from streams.topics import create_topics
from tests.radstream.recovery_helpers import Proc, Tail, Warehouse, keys, produce_reports, worker_settings
from tests.streams.helpers import free_port


def report_partitions(s: Settings, group: str, members: int, timeout: float = 60.0) -> list[int]:
    """Per member of ``group``: how many partitions of the reports topic it has (once the group is stable
    with ``members`` members that all have some, or after ``timeout``)."""
    admin = AdminClient({"bootstrap.servers": s.kafka.bootstrap})
    deadline = time.monotonic() + timeout
    shares: list[int] = []
    while time.monotonic() < deadline:
        desc = admin.describe_consumer_groups([group])[group].result()
        shares = [sum(tp.topic == s.topics.reports for tp in m.assignment.topic_partitions)
                  for m in desc.members]
        if str(desc.state) .endswith("STABLE") and len(shares) == members and all(shares):
            break
        time.sleep(0.5)
    return shares


def positions(s: Settings, group: str) -> list[tuple[int, int]]:
    """Per partition of the reports topic: the group's committed offset and the end offset."""
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(s.topics.reports, p) for p in range(PARTITIONS)]
        return [(tp.offset, c.get_watermark_offsets(tp, timeout=10)[1])
                for tp in c.committed(tps, timeout=10)]
    finally:
        c.close()


def print_evidence(procs: list[Proc]) -> None:
    """What each live worker did and where its threads are now (SIGUSR1: the worker dumps its stacks)."""
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGUSR1)
    time.sleep(2)
    for proc in procs:
        lines = proc.text().splitlines()
        print(f"==== {proc.log.name} (exit {proc.popen.poll()}): assignments, warnings, then its last lines")
        marks = ("assigned", "WARNING", "restored")
        print("\n".join(line[:400] for line in lines if any(m in line for m in marks)))
        print("\n".join(line[:400] for line in lines[-80:]))


REPORTS = 3000
PARTITIONS = 6


def three_nlp_workers_one_killed(kafka_settings: Settings, tmp_path: Path, restart: bool) -> None:
    """3 NLP workers and a sink; kill -9 one NLP worker mid-stream; ``restart``: its supervisor starts it
    again at once (it takes its partitions back under its static id), else the group hands its
    partitions to the other two after its session timeout."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    names = {f.name: prefix + getattr(kafka_settings.topics, f.name)
             for f in dataclasses.fields(kafka_settings.topics)}
    s = kafka_settings.replace(kafka={"partitions": PARTITIONS}, topics=names)
    create_topics(s.kafka, s.topics)
    s = worker_settings(s, tmp_path)
    sink_port = free_port()
    warehouse = Warehouse(s, sink_port)
    tail = Tail(s, s.topics.findings)
    procs = [Proc(s, tmp_path / "sink.log", "db", "sink", "--web", "--web-port", str(sink_port))]
    ports = [free_port() for _ in range(3)]
    try:
        nlp = [Proc(s, tmp_path / f"nlp-{i}.log", "worker", "--no-sink", "--loglevel", "info",
                    env={"RADSTREAM_WORKER_WEB_PORT": str(ports[i])}) for i in range(3)]
        procs += nlp
        produce_reports(s, ["warm-up"])
        assert tail.wait_for(keys(["warm-up"]), 90), nlp[0].text()[-3000:]
        group = f"{s.kafka.consumer_group}-worker"
        shares = report_partitions(s, group, 3)
        assert len(shares) == 3 and all(shares) and sum(shares) == PARTITIONS, shares
        accessions = [f"S{i}" for i in range(REPORTS)]
        produce_reports(s, accessions)
        while sum(tail.keys.values()) < REPORTS // 4:
            tail.poll()
        nlp[1].popen.send_signal(signal.SIGKILL)
        nlp[1].popen.wait(10)
        killed_at = time.monotonic()
        done_at_kill = sum(tail.keys.values())
        assert done_at_kill < REPORTS, "not killed mid-stream"
        if restart:
            procs.append(Proc(s, tmp_path / "nlp-1-again.log", "worker", "--no-sink", "--loglevel", "info",
                              env={"RADSTREAM_WORKER_WEB_PORT": str(ports[1])}))
        if not tail.wait_for(keys(accessions), 120):
            again = Tail(s, s.topics.findings)
            again.wait_for(keys(accessions), 15)
            print(f"a fresh reader finds {len(again.missing(keys(accessions)))} reports without findings")
            again.close()
            print_evidence(procs)
        assert tail.wait_for(keys(accessions), 1), (
            f"{REPORTS + 1 - len(tail.keys)} without findings; partitions per member: "
            f"{report_partitions(s, group, 3 if restart else 2, timeout=1)}; (committed, end) per partition: "
            f"{positions(s, group)}")
        print(f"killed after {done_at_kill} findings; the rest {time.monotonic() - killed_at:.1f} s later")
        assert all(p.popen.poll() is None for p in procs if p is not nlp[1])
        assert warehouse.wait_reports(REPORTS + 1, 120) == REPORTS + 1
        assert warehouse.doubled() == {"nlp_latest": 0, "reports_latest": 0, "findings_latest": 0}
    finally:
        for proc in procs:
            proc.stop()
        tail.close()




def test_three_nlp_workers_one_killed_the_others_take_over(kafka_settings: Settings, tmp_path: Path) -> None:
    three_nlp_workers_one_killed(kafka_settings, tmp_path, restart=False)
