"""Report embeddings in the warehouse: ReportFinalized -> MiniLM vectors -> ClickHouse ``report_embeddings``.

A handler of the streams layer's consumer loop with a group of its own (``<consumer_group>.embed``) on
the reports topic, so the NLP never waits for torch: it takes micro-batches (up to ``max_batch``
reports or ``max_wait_s``), embeds the impression and the findings sentences of every report in one
batched call, inserts the rows, and the loop then commits the offsets (at least once; a re-delivered
report writes the same rows, which the ReplacingMergeTree key collapses). The worker runs it in a
thread (``ml.embed``); torch releases the GIL while it computes.

Cancelled / entered-in-error versions write one tombstone row (unit ``-``, zero vector) so the search
drops the accession; ``radstream similar`` reads only each accession's latest version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sinks.clickhouse.rows import avro_time
from streams.config import KafkaConfig, TopicsConfig
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record
from streams.serde import SerdeError, decode

log = logging.getLogger(__name__)

TABLE = "report_embeddings"
DIM = 384
DEAD_STATUSES = ("cancelled", "entered_in_error")
TOMBSTONE_UNIT = "-"
COLUMNS = ["site", "accession", "report_version", "unit", "section", "span_start", "span_end", "text",
           "status", "modality", "body_part", "patient_id", "exam_time", "model", "embedded_time", "vector"]

# Not a numbered migration: whether the HNSW index can be declared depends on the server version, so
# ensure_table() creates the table when the embedding writer (or `similar`) first needs it.
# {db} as in the migrations.
DDL = """
CREATE TABLE IF NOT EXISTS {db}.report_embeddings
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    unit LowCardinality(String) COMMENT 'impression | findings:<n> | report | - (tombstone)',
    section LowCardinality(String),
    span_start UInt32,
    span_end UInt32,
    text String CODEC(ZSTD(3)),
    status LowCardinality(String),
    modality LowCardinality(String),
    body_part LowCardinality(String),
    patient_id String,
    exam_time Nullable(DateTime64(6, 'UTC')),
    model LowCardinality(String),
    embedded_time DateTime64(6, 'UTC'),
    vector Array(Float32) CODEC(ZSTD(1)){index}
)
ENGINE = ReplacingMergeTree(embedded_time)
ORDER BY (site, accession, report_version, unit)
SETTINGS {durable}
"""
# as every table of the migrations (ddl/033, ddl/036): the writer commits its offsets once its INSERT
# returned, so a part (inserted or merged) is fsync'd first; MODIFY SETTING gives a table made before
DURABLE = "fsync_after_insert = 1, fsync_part_directory = 1, min_rows_to_fsync_after_merge = 1"
VECTOR_INDEX = (",\n    INDEX ix_vector vector TYPE vector_similarity('hnsw', 'cosineDistance', {dim})"
                " GRANULARITY 100000000")

Writer = Callable[[list[list[Any]]], None]


def ddl(database: str, *, vector_index: bool = True, dim: int = DIM) -> str:
    index = VECTOR_INDEX.format(dim=dim) if vector_index else ""
    return DDL.format(db=f"`{database}`", index=index, durable=DURABLE).strip()


def ensure_table(client: Any, database: str, *, dim: int = DIM) -> bool:
    """Create ``report_embeddings`` if missing; with an HNSW vector index where the server supports it
    (ClickHouse >= 25.8, chDB 26.x). Returns whether the table has the index."""
    try:
        client.command(ddl(database, vector_index=True, dim=dim))
    except Exception as e:  # noqa: BLE001 - older servers reject the index type: plain table then
        log.warning("vector_similarity index not available (%s); brute-force cosine search", e)
        client.command(ddl(database, vector_index=False, dim=dim))
    client.command(f"ALTER TABLE `{database}`.{TABLE} MODIFY SETTING {DURABLE}")
    res = client.query("SELECT count() FROM system.data_skipping_indices WHERE database = {d:String} "
                       "AND table = {t:String} AND type = 'vector_similarity'",
                       parameters={"d": database, "t": TABLE})
    return bool(res.result_rows[0][0])


def embedding_rows(reports: Sequence[Mapping[str, Any]], embed: Callable[[list[str]], np.ndarray],
                   model: str, now: datetime | None = None) -> list[list[Any]]:
    """Rows (``COLUMNS`` order) for decoded ReportFinalized records; one ``embed`` call for the batch."""
    from processors.ml.units import report_units

    now = now or datetime.now(UTC)
    rows: list[list[Any]] = []
    texts: list[str] = []
    for rec in reports:
        exam = avro_time(rec.get("observation_time")) or avro_time(rec.get("status_time")) or avro_time(
            rec.get("received_time"))
        head = [rec.get("site") or "default", rec["accession"], int(rec["version"])]
        meta = [rec["status"], rec.get("modality") or "", rec.get("body_part") or "",
                rec.get("patient_id") or "", exam, model, now]
        if rec["status"] in DEAD_STATUSES:
            rows.append([*head, TOMBSTONE_UNIT, "", 0, 0, "", *meta, [0.0] * DIM])
            continue
        for u in report_units(rec.get("text") or ""):
            rows.append([*head, u.unit, u.section, u.start, u.end, u.text, *meta, None])
            texts.append(u.text)
    vectors = embed(texts) if texts else np.zeros((0, DIM), dtype=np.float32)
    it = iter(vectors)
    for row in rows:
        if row[-1] is None:
            row[-1] = next(it).astype(np.float32).tolist()
    return rows


def clickhouse_writer(client: Any, database: str) -> Writer:
    """Insert rows into ``<database>.report_embeddings`` (creating it when missing)."""
    ensure_table(client, database)

    def write(rows: list[list[Any]]) -> None:
        if rows:
            client.insert(TABLE, rows, database=database, column_names=COLUMNS)

    return write


class EmbedWorker:
    """Decoded reports in, rows written: the part shared by the thread loop and the Faust agent."""

    def __init__(self, write: Writer, embedder: Any | None = None, threads: int = 1) -> None:
        if embedder is None:
            from processors.ml.embed import default_embedder

            embedder = default_embedder(threads)
        from processors.ml.embed import MODEL_NAME

        self.embedder = embedder
        self.write = write
        self.model = MODEL_NAME
        self.reports = 0
        self.rows = 0
        self.lock = threading.Lock()

    def process(self, reports: Sequence[Mapping[str, Any]]) -> int:
        with self.lock:
            rows = embedding_rows(reports, self.embedder.embed, self.model)
            self.write(rows)
            self.reports += len(reports)
            self.rows += len(rows)
            return len(rows)


class EmbedHandler(Handler):
    """Micro-batches of reports for an ``EmbedWorker``; undecodable reports are skipped (the NLP stage
    dead-letters them from the same topic)."""

    def __init__(self, worker: EmbedWorker, max_batch: int = 64, max_wait_s: float = 1.0) -> None:
        self.worker = worker
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._reports: list[dict[str, Any]] = []
        self._first_at: float | None = None

    def add(self, records: Sequence[Record], acks: Acks) -> None:
        for rec in records:
            try:
                self._reports.append(decode("report_finalized", rec.value))
            except SerdeError as e:
                log.warning("skipping undecodable report: %s", e)
                continue
            if self._first_at is None:
                self._first_at = time.monotonic()

    def due(self) -> float | None:
        return None if self._first_at is None else self._first_at + self.max_wait_s

    def full(self) -> bool:
        return len(self._reports) >= self.max_batch

    def flush(self) -> None:
        if self._reports:
            t0 = time.perf_counter()
            n = self.worker.process(self._reports)
            log.info("embedded %d reports -> %d rows in %.2fs", len(self._reports), n,
                     time.perf_counter() - t0)
        self.abandon()

    def abandon(self) -> None:
        self._reports, self._first_at = [], None


def embed_loop(kafka: KafkaConfig, topics: TopicsConfig, worker: EmbedWorker, *, max_batch: int = 64,
               max_wait_s: float = 1.0, consumer_conf: Mapping[str, Any] | None = None) -> ConsumerLoop:
    """The consumer loop that embeds every report of the de-identified reports topic (run it with
    ``.run(stop)`` or ``streams.loop.run_in_thread``): report_embeddings is analyst-visible, so its
    units' text and offsets come from the de-identified text, never the original."""
    return ConsumerLoop(kafka, LoopConfig(
        group_id=f"{kafka.consumer_group}.embed", topics=[topics.reports_deidentified], stage="embed",
        max_batch=max_batch, poll_s=max_wait_s, conf=dict(consumer_conf or {})),
        EmbedHandler(worker, max_batch, max_wait_s))
