"""The embed loop on a real Kafka broker and a real chDB store: reports in, vectors out, offsets committed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radstream.config import Settings
from tests.ml_needs import NEEDS_MINILM, NEEDS_ML
from tests.ml_records import report
from tests.streams.helpers import clinical_of

pytestmark = [
    pytest.mark.ml,
    pytest.mark.integration,
    NEEDS_ML,
    NEEDS_MINILM,
]

TEXT = ("FINDINGS:\nSmall left pleural effusion. Heart size is normal.\n"
        "IMPRESSION:\nSmall left pleural effusion.")


def test_rows_for_a_batch_without_kafka() -> None:
    from sinks.clickhouse.embeddings import COLUMNS, DIM, TOMBSTONE_UNIT, embedding_rows

    calls: list[list[str]] = []

    def fake_embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.ones((len(texts), DIM), dtype=np.float32)

    batch = [report("B1", TEXT), report("B2", "", version=3, status="cancelled")]
    rows = embedding_rows(batch, fake_embed, "m")
    assert len(calls) == 1   # one embed call per micro-batch
    units = [r[COLUMNS.index("unit")] for r in rows]
    assert units == ["findings:0", "findings:1", "impression", TOMBSTONE_UNIT]
    effusion = "Small left pleural effusion."
    assert calls[0] == [effusion, "Heart size is normal.", effusion]
    assert all(len(r[COLUMNS.index("vector")]) == DIM for r in rows)
    assert rows[-1][COLUMNS.index("report_version")] == 3


def test_loop_embeds_reports_from_kafka(topic_settings: Settings, tmp_path: Path) -> None:
    from processors.ml.embed import Embedder, packaged_model_dir
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.embeddings import EmbedWorker, clickhouse_writer, embed_loop
    from streams.loop import run_in_thread
    from streams.producer import make_producer, produce_sync

    settings = topic_settings.replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"},
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"})
    client = open_client(settings.clickhouse)
    try:
        worker = EmbedWorker(clickhouse_writer(client, "rs"), Embedder(packaged_model_dir(), threads=1))
        producer = make_producer(settings.kafka)
        for i in range(5):
            rec = report(f"K{i}", TEXT)
            produce_sync(producer, settings.topics.reports_deidentified, "report_finalized", f"default|K{i}",
                         rec)
        thread, stop = run_in_thread(embed_loop(settings.kafka, settings.topics, worker, max_batch=4,
                                                max_wait_s=0.5), "embed")
        deadline = time.monotonic() + 120
        while worker.reports < 5 and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.2)
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        assert worker.reports == 5
        res = client.query("SELECT accession, count(), min(length(vector)), "
                           "max(abs(L2Norm(vector) - 1)) FROM rs.report_embeddings GROUP BY accession "
                           "ORDER BY accession")
        rows: list[Any] = list(res.result_rows)
        assert [r[0] for r in rows] == [f"K{i}" for i in range(5)]
        assert all(r[1] == 3 and r[2] == 384 and r[3] < 1e-4 for r in rows)
        # offsets were committed: a second run of the same group finds nothing new
        thread, stop = run_in_thread(embed_loop(settings.kafka, settings.topics, worker, max_batch=4,
                                                max_wait_s=0.5), "embed")
        time.sleep(5)
        stop.set()
        thread.join(30)
        assert worker.reports == 5
    finally:
        client.close()


def test_worker_embeds_reports_with_its_embedding_loop(topic_settings: Settings, tmp_path: Path) -> None:
    """``ml.embed``: the worker's embedding loop embeds each report next to the NLP agent, into the
    store the worker owns; analysts see the vectors through its read-only SQL page."""
    import csv
    import io

    from radstream.warehouse import ask_worker
    from streams.producer import make_producer, produce_sync
    from tests.streams.helpers import free_port, worker_process

    settings = topic_settings.replace(
        state_dir=str(tmp_path), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()}, ml={"embed": True})

    def wait_rows(proc: Any, sql: str, n: int) -> list[list[str]]:
        """Rows through the worker only (it owns the store), once there are ``n`` of them."""
        rows: list[list[str]] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                rows = list(csv.reader(io.StringIO(ask_worker(settings, sql, "csv", timeout=30))))[1:]
            except Exception:  # noqa: BLE001 - the worker is still starting (no page, no table)
                rows = []
            if len(rows) >= n:
                break
            time.sleep(0.5)
        return rows

    with worker_process(settings, tmp_path / "worker.log") as proc:
        # the original report: the NLP agent de-identifies it and the embedding loop reads its output
        producer = make_producer(settings.kafka)
        for i in range(3):
            produce_sync(producer, settings.topics.reports, "report_finalized", f"default|F{i}",
                         report(f"F{i}", TEXT))
        rows = wait_rows(proc, "SELECT accession, count(), max(abs(L2Norm(vector) - 1)) "
                         "FROM report_embeddings GROUP BY accession ORDER BY accession", 3)
        back = clinical_of(settings, ["F0", "F1", "F2"])
        assert sorted(back[r[0]] for r in rows) == ["F0", "F1", "F2"], (
            (tmp_path / "worker.log").read_text()[-3000:])
        assert all(r[1] == "3" and float(r[2]) < 1e-4 for r in rows)
        # the NLP agent and the sink did their part as well
        nlp = wait_rows(proc, "SELECT accession FROM report_nlp FINAL ORDER BY accession", 3)
        assert sorted(back[r[0]] for r in nlp) == ["F0", "F1", "F2"]
