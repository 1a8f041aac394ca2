"""Report embeddings in the stream: ReportFinalized -> MiniLM vectors -> ClickHouse ``report_embeddings``.

A consumer of its own (group ``<consumer_group>.embed``) on the reports topic, so the NLP agents never
wait for torch: it takes micro-batches (up to ``max_batch`` reports or ``max_wait_s``), embeds the
impression and the findings sentences of every report in one batched call, inserts the rows and then
commits the offsets (at least once; a re-delivered report writes the same rows, which the
ReplacingMergeTree key collapses).

Two ways to run it:

- ``run_embed_loop(settings, stop)`` (or ``python -m streams.embed_agent``): a blocking loop for a thread
  or, better on a small machine, a process of its own (torch holds the GIL while it tokenizes).
- ``add_faust_agent(app, settings)``: a Faust agent that batches with ``stream.take`` and runs the
  embedding in a worker thread, so the event loop stays free.

Cancelled / entered-in-error versions write one tombstone row (unit ``-``, zero vector) so the search
drops the accession; ``radstream similar`` reads only each accession's latest version.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from radstream.config import Settings

log = logging.getLogger(__name__)

TABLE = "report_embeddings"
DIM = 384
DEAD_STATUSES = ("cancelled", "entered_in_error")
TOMBSTONE_UNIT = "-"
COLUMNS = ["site", "accession", "report_version", "unit", "section", "span_start", "span_end", "text",
           "status", "modality", "body_part", "patient_id", "exam_time", "model", "embedded_time", "vector"]

# Not a numbered migration: whether the HNSW index can be declared depends on the server version, so
# ensure_table() creates the table when the embedding agent (or `similar`) first needs it.
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
"""
VECTOR_INDEX = (",\n    INDEX ix_vector vector TYPE vector_similarity('hnsw', 'cosineDistance', {dim})"
                " GRANULARITY 100000000")

Writer = Callable[[list[list[Any]]], None]


def ddl(database: str, *, vector_index: bool = True, dim: int = DIM) -> str:
    index = VECTOR_INDEX.format(dim=dim) if vector_index else ""
    return DDL.format(db=f"`{database}`", index=index).strip()


def ensure_table(client: Any, database: str, *, dim: int = DIM) -> bool:
    """Create ``report_embeddings`` if missing; with an HNSW vector index where the server supports it
    (ClickHouse >= 25.8, chDB 26.x). Returns whether the table has the index."""
    try:
        client.command(ddl(database, vector_index=True, dim=dim))
    except Exception as e:  # noqa: BLE001 - older servers reject the index type: plain table then
        log.warning("vector_similarity index not available (%s); brute-force cosine search", e)
        client.command(ddl(database, vector_index=False, dim=dim))
    res = client.query("SELECT count() FROM system.data_skipping_indices WHERE database = {d:String} "
                       "AND table = {t:String} AND type = 'vector_similarity'",
                       parameters={"d": database, "t": TABLE})
    return bool(res.result_rows[0][0])


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1e6, tz=UTC)


def embedding_rows(reports: Sequence[Mapping[str, Any]], embed: Callable[[list[str]], np.ndarray],
                   model: str, now: datetime | None = None) -> list[list[Any]]:
    """Rows (``COLUMNS`` order) for decoded ReportFinalized records; one ``embed`` call for the batch."""
    from processors.ml.units import report_units

    now = now or datetime.now(UTC)
    rows: list[list[Any]] = []
    texts: list[str] = []
    for rec in reports:
        exam = _time(rec.get("observation_time")) or _time(rec.get("status_time")) or _time(
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


def _decode_all(values: Iterable[bytes | None]) -> list[dict[str, Any]]:
    from streams.serde import SerdeError, decode

    out = []
    for v in values:
        try:
            out.append(decode("report_finalized", v))
        except SerdeError as e:  # the NLP stage dead-letters bad input; here we only skip it
            log.warning("skipping undecodable report: %s", e)
    return out


def run_embed_loop(settings: Settings, stop: threading.Event, *, worker: EmbedWorker | None = None,
                   client: Any | None = None, max_batch: int = 64, max_wait_s: float = 1.0,
                   consumer_conf: Mapping[str, Any] | None = None) -> EmbedWorker:
    """Consume the reports topic until ``stop`` is set: micro-batch, embed, insert, commit."""
    from confluent_kafka import Consumer

    own_client = None
    if worker is None:
        if client is None:
            from sinks.clickhouse.client import open_client

            client = own_client = open_client(settings)
        worker = EmbedWorker(clickhouse_writer(client, settings.clickhouse.database),
                             threads=settings.ml.torch_threads)
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap,
        "group.id": f"{settings.kafka.consumer_group}.embed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": 600_000,
        "session.timeout.ms": 10_000,
    }
    conf.update(consumer_conf or {})
    consumer = Consumer(conf)
    consumer.subscribe([settings.topics.reports])
    try:
        while not stop.is_set():
            msgs = consumer.consume(num_messages=max_batch, timeout=max_wait_s)
            good = [m for m in msgs if m.error() is None]
            for m in msgs:
                if m.error() is not None:
                    log.warning("consume error: %s", m.error())
            if not good:
                continue
            t0 = time.perf_counter()
            n = worker.process(_decode_all(m.value() for m in good))
            consumer.commit(asynchronous=False)
            log.info("embedded %d reports -> %d rows in %.2fs", len(good), n, time.perf_counter() - t0)
    finally:
        consumer.close()
        if own_client is not None:
            own_client.close()
    return worker


def start_embed_thread(settings: Settings, **kwargs: Any) -> tuple[threading.Thread, threading.Event]:
    """``run_embed_loop`` in a daemon thread; set the returned event and join the thread to stop."""
    stop = threading.Event()
    t = threading.Thread(target=run_embed_loop, args=(settings, stop), kwargs=kwargs, name="embed",
                         daemon=True)
    t.start()
    return t, stop


def add_faust_agent(app: Any, settings: Settings, worker: EmbedWorker, *, max_batch: int = 64,
                    within_s: float = 1.0) -> Any:
    """Register a Faust agent ``embed`` on the reports topic (raw bytes, our Avro serde).

    The embedding runs in the default executor (a thread) so the event loop keeps serving the other
    agents. Give the app's worker its own process if NLP latency matters: torch competes for the CPU.
    """
    topic = app.topic(settings.topics.reports, value_type=bytes, value_serializer="raw")

    async def embed(stream: Any) -> Any:
        loop = asyncio.get_running_loop()
        async for values in stream.take(max_batch, within=within_s):
            reports = _decode_all(values)
            if reports:
                await loop.run_in_executor(None, worker.process, reports)
            yield len(reports)

    return app.agent(topic, name="embed")(embed)


def main() -> None:
    """``python -m streams.embed_agent``: run the loop until SIGINT/SIGTERM."""
    import signal

    from radstream.config import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_embed_loop(load_settings(), stop)


if __name__ == "__main__":
    main()
