"""The ClickHouse sink on the real stack: a real Kafka broker and a real embedded ClickHouse (chDB)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.client import open_client
from sinks.clickhouse.service import SinkService
from tests.helpers_chdb import migrated_store

from .factories import BASE_TIME, finding, findings, report
from .kafka_helpers import (
    CommitProbe,
    committed,
    end_offsets,
    produce_all,
    produce_raw,
    running_sink,
    wait_until,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def count(client: Client, sql: str) -> int:
    return int(client.query(sql).result_rows[0][0])


def report_items(
    settings: Settings,
    reps: list[dict[str, object]],
    nlp: list[dict[str, object]] | None = None,
) -> list[tuple[str, str, str, dict[str, object]]]:
    t = settings.topics
    # the analysts' copy of each report, as the NLP agent publishes it after de-identifying the text
    items = [(t.reports_deidentified, "report_finalized", f"{r['site']}|{r['accession']}", r) for r in reps]
    items += [(t.findings, "report_findings", f"{f['site']}|{f['accession']}", f) for f in nlp or []]
    return items


def group_of(sink: SinkService) -> str:
    return sink.group_id


def test_every_topic_lands_and_garbage_goes_to_the_dead_letter_topic(sink_settings: Settings) -> None:
    s, t = sink_settings, sink_settings.topics
    reps = [report("K1"), report("K2", modality="MR")]
    items = report_items(s, reps, [findings(r, [finding("nodule", size_mm=8.0)]) for r in reps])
    items += [
        (
            t.retrieval_requests,
            "retrieval_requested",
            "q1",
            {
                "request_id": "q1",
                "project_id": "P",
                "requester": "a",
                "accession": "K1",
                "destination_ae": "RESEARCH",
                "requested_time": BASE_TIME,
            },
        ),
        (
            t.retrieval_status,
            "retrieval_status",
            "q1",
            {
                "request_id": "q1",
                "project_id": "P",
                "state": "completed",
                "completed": 2,
                "failed": 0,
                "time": BASE_TIME,
            },
        ),
        (
            t.received_instances,
            "received_instance",
            "1.2",
            {
                "project_id": "P",
                "calling_ae": "ORTHANC",
                "called_ae": "RESEARCH",
                "study_instance_uid": "1.2",
                "series_instance_uid": "1.2.3",
                "sop_instance_uid": "1.2.3.4",
                "sop_class_uid": "1.2.840",
                "path": "/r/1.dcm",
                "size_bytes": 10,
                "deidentified": True,
                "time": BASE_TIME,
            },
        ),
    ]
    produce_all(s, items)
    produce_raw(s, t.reports, b"default|BAD", b"not avro at all")
    # a valid record of the wrong contract on the reports topic
    produce_all(s, [(t.reports, "retrieval_requested", "x", items[-3][3])])
    produce_all(s, report_items(s, [report("K3")]))  # after the garbage: the loop must go on
    # decodable, but a value its column refuses (a negative offset for UInt32), next to a good record
    poison, good = report("K4"), report("K5")
    produce_all(s, report_items(s, [], [findings(poison, [finding("nodule", start=-5)]),
                                        findings(good, [finding("mass")])]))
    with running_sink(s) as sink:
        ch = sink.client
        wait_until(lambda: count(ch, "SELECT count() FROM dead_letters FINAL") == 3, what="3 dead letters")
        wait_until(lambda: count(ch, "SELECT count() FROM reports_latest") == 3, what="3 reports")
        assert count(ch, "SELECT count() FROM findings_latest") == 3
        assert count(ch, "SELECT count() FROM findings_latest WHERE accession = 'K4'") == 0
        assert count(ch, "SELECT count() FROM retrieval_requests") == 1
        assert count(ch, "SELECT count() FROM retrieval_events") == 1
        # project P is not registered: its instance is held back from analysts
        assert count(ch, "SELECT count() FROM received_instances_identified") == 1
        assert count(ch, "SELECT count() FROM received_instances") == 0
        rows = ch.query(
            "SELECT stage, original_topic, error_type, error, value FROM dead_letters FINAL ORDER BY error"
        ).result_rows
        assert {r[0] for r in rows} == {"clickhouse-sink"}
        (refused,) = [r[3] for r in rows if r[1] == t.findings]
        assert "start" in refused  # the refused column is named
        errors = " | ".join(r[3] for r in rows if r[1] == t.reports)
        assert "not Avro" in errors and "expected report_finalized" in errors
        assert any(r[4] in (b"not avro at all", "not avro at all") for r in rows)
        group = group_of(sink)
        topics = [t.reports, t.reports_deidentified, t.findings]
        wait_until(lambda: committed(s, group, topics) == end_offsets(s, topics), what="commit")
        assert sink.stats.dead_letters == 3


def test_final_then_corrected_report_shows_only_the_corrected_findings(sink_settings: Settings) -> None:
    s = sink_settings
    final = report("L1", 1, status="final")
    corrected = report("L1", 2, status="corrected")
    with running_sink(s) as sink:
        ch = sink.client
        produce_all(
            s,
            report_items(
                s,
                [final],
                [findings(final, [finding("nodule"), finding("effusion"), finding("atelectasis")])],
            ),
        )
        wait_until(lambda: count(ch, "SELECT count() FROM findings_latest") == 3, what="final findings")
        produce_all(s, report_items(s, [corrected], [findings(corrected, [finding("nodule", size_mm=3.0)])]))
        # the sink writes the pointer to the latest run (report_current) last in its flush: wait for it,
        # not for report_nlp, which is written before it
        wait_until(lambda: count(ch, "SELECT max(report_version) FROM report_current FINAL") == 2,
                   what="corrected run current")
        assert count(ch, "SELECT count() FROM report_nlp") == 2
        rows = ch.query("SELECT report_version, concept, size_mm FROM findings_latest").result_rows
        assert [tuple(r) for r in rows] == [(2, "nodule", 3.0)]
        assert count(ch, "SELECT count() FROM findings FINAL") == 4  # history is kept


def _counts(ch: Client) -> dict[str, int]:
    tables = ["report_versions", "reports", "report_nlp", "findings", "assessments", "critical_results"]
    return {t: count(ch, f"SELECT count() FROM {t} FINAL") for t in tables}


def test_replaying_the_whole_topics_gives_identical_counts(sink_settings: Settings) -> None:
    s = sink_settings
    reps = [report(f"M{i}", v, status="final" if v == 1 else "corrected") for i in range(40) for v in (1, 2)]
    nlp = [
        findings(
            r,
            [finding("nodule")] * (3 - r["version"]),
            assessments=[("BI-RADS", "4")],
            critical=["pneumothorax"],
        )
        for r in reps
    ]
    produce_all(s, report_items(s, reps, nlp))
    with running_sink(s) as sink:
        wait_until(lambda: count(sink.client, "SELECT count() FROM report_nlp") == 80, what="first pass")
        first = _counts(sink.client)
    assert first == {
        "report_versions": 80,
        "reports": 40,
        "report_nlp": 80,
        "findings": 120,
        "assessments": 80,
        "critical_results": 80,
    }
    # a new consumer group reads both topics again from the beginning into the same store
    replay = s.replace(kafka={"consumer_group": s.kafka.consumer_group + "-replay"})
    with running_sink(replay) as sink:
        ch = sink.client
        topics = [s.topics.reports_deidentified, s.topics.findings]
        wait_until(
            lambda: committed(replay, sink.group_id, topics) == end_offsets(replay, topics), what="replay"
        )
        assert count(ch, "SELECT count() FROM findings") == 240  # really delivered twice ...
        assert _counts(ch) == first  # ... and counted once
        assert count(ch, "SELECT count() FROM findings_latest") == 40


def test_clickhouse_unavailable_pauses_retries_and_loses_nothing(sink_settings: Settings) -> None:
    s = sink_settings
    topics = [s.topics.reports_deidentified, s.topics.findings]
    reps = [report(f"N{i}") for i in range(30)]
    with running_sink(s) as sink:
        ch = open_client(s.clickhouse)  # the test's own client on the same embedded engine
        try:
            produce_all(s, report_items(s, reps[:10], [findings(r, [finding("nodule")]) for r in reps[:10]]))
            wait_until(lambda: count(ch, "SELECT count() FROM findings_latest") == 10, what="first 10")
            wait_until(lambda: committed(s, sink.group_id, topics) == end_offsets(s, topics), what="commit 1")
            before = committed(s, sink.group_id, topics)
            ch.command("DETACH TABLE findings")  # inserts into findings now fail
            produce_all(s, report_items(s, reps[10:], [findings(r, [finding("nodule")]) for r in reps[10:]]))
            wait_until(lambda: sink.stats.failed_attempts >= 3, what="failed attempts")
            assert committed(s, sink.group_id, topics) == before  # nothing committed while failing
            assert "findings" in sink.stats.last_error
            ch.command("ATTACH TABLE findings")
            wait_until(lambda: committed(s, sink.group_id, topics) == end_offsets(s, topics), what="catch up")
            assert count(ch, "SELECT count() FROM findings_latest") == 30
            assert count(ch, "SELECT count() FROM reports_latest") == 30
            # the store closed under the sink: it reopens its client and goes on
            sink.client.close()
            extra = report("N99")
            produce_all(s, report_items(s, [extra], [findings(extra, [finding("mass")])]))
            wait_until(lambda: count(ch, "SELECT count() FROM findings_latest") == 31, what="after reopen")
        finally:
            ch.close()


def _env(settings: Settings, store: Path, group: str) -> dict[str, str]:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        RADSTREAM_STATE_DIR=settings.state_dir,
        RADSTREAM_KAFKA_BOOTSTRAP=settings.kafka.bootstrap,
        RADSTREAM_KAFKA_CONSUMER_GROUP=group,
        RADSTREAM_CLICKHOUSE_URL=f"chdb://{store}",
        RADSTREAM_CLICKHOUSE_DATABASE="rs",
        RADSTREAM_CLICKHOUSE_BATCH_ROWS="400",
        RADSTREAM_CLICKHOUSE_FLUSH_MS="300",
        RADSTREAM_WORKER_WEB_PORT=str(free_port()),
    )
    for name in (
        "reports",
        "reports_deidentified",
        "findings",
        "retrieval_requests",
        "retrieval_status",
        "received_instances",
        "dead_letter",
    ):
        env[f"RADSTREAM_TOPICS_{name.upper()}"] = getattr(settings.topics, name)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sink_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "radstream", "db", "sink"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_sink_killed_mid_batch_and_restarted_loses_and_duplicates_nothing(
    sink_settings: Settings, tmp_path: Path
) -> None:
    s = sink_settings
    # a migrated copy (tests/helpers_chdb.py): the sink process consumes at once instead of migrating
    # first (up to 10 s on a loaded host, counted against the wait for its first commit)
    store = migrated_store(tmp_path / "killed-store", "rs")
    env = _env(s, store, s.kafka.consumer_group + "-killed")
    group = s.kafka.consumer_group + "-killed.clickhouse-sink"  # the sink's group id
    log = tmp_path / "sink.log"
    total = 6000
    reps = [report(f"Q{i}", exam_time=BASE_TIME + timedelta(minutes=i)) for i in range(total)]
    produce_all(s, report_items(s, reps))
    topics = [s.topics.reports_deidentified]
    probe = CommitProbe(s, group, topics)
    proc = _sink_process(env, log)
    try:

        def partly_committed() -> bool:
            done = sum(probe().values())
            # the loop takes at most 500 messages at a time and commits after each flush: a dozen
            # commits this probe (one connection, a few ms a round) sees; if it still misses them, say so
            # instead of waiting out the timeout
            assert done < total, f"the sink committed all {total} before it could be killed mid-way"
            return done > 0

        with probe:
            wait_until(partly_committed, timeout=90, every=0.005, what=f"a first commit (log: {log})")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert sum(committed(s, group, topics).values()) < total
        proc = _sink_process(env, log)
        wait_until(lambda: sum(committed(s, group, topics).values()) == total, timeout=120, what="catch up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    check = (
        "import json,sys; from radstream.config import load_settings; "
        "from sinks.clickhouse.client import open_client; c = open_client(load_settings().clickhouse); "
        "r = lambda q: c.query(q).result_rows[0][0]; "
        "print(json.dumps({'final': r('SELECT count() FROM report_versions FINAL'), "
        "'latest': r('SELECT count() FROM reports_latest'), "
        "'distinct': r('SELECT uniqExact(accession, version) FROM report_versions'), "
        "'raw': r('SELECT count() FROM report_versions')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert got["final"] == got["latest"] == got["distinct"] == total
    assert got["raw"] >= total
    # the analyst CLI sees the same (opens the store directly: no worker runs)
    cli = subprocess.run(
        [sys.executable, "-m", "radstream", "sql", "SELECT count() AS n FROM reports", "--format", "csv"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines() == ['"n"', str(total)]
    (tmp_path / "counts.txt").write_text(str(got))
    time.sleep(0)  # keep the log for inspection on failure
