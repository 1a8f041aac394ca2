"""Prometheus metrics of the ClickHouse sink (docs/monitoring.md): rows per table, rows per flush and
the produced -> queryable latency of every stored record. The flush duration and failures are the
consumer loop's (``radstream_loop_flush_duration_seconds{stage="clickhouse-sink"}``)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Histogram

from streams.handlers import origin_ms
from streams.loop import Record
from streams.metrics import RECORDS_OUT, stage_started

ROWS = Counter("radstream_sink_rows_total", "Rows the sink inserted, by table.", ["table"])
FLUSH_ROWS = Histogram("radstream_sink_flush_rows", "Rows inserted by one flush of the sink.",
                       buckets=(1, 10, 50, 100, 500, 1000, 5000, 10000, 50000))
QUERYABLE_SECONDS = Histogram(
    "radstream_produced_to_queryable_seconds",
    "From a record's production (a report's, for the findings derived from it) until the flush that "
    "made it queryable returned, by contract.", ["contract"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600))


def started(stage: str, topics: Mapping[str, str]) -> None:
    """The sink's series at 0 before its first flush (see ``streams.metrics.stage_started``)."""
    stage_started(stage, produces=topics)
    for contract in set(topics.values()):
        QUERYABLE_SECONDS.labels(contract)


def flushed(stage: str, rows: Mapping[str, Sequence[Any]], records: Sequence[Record],
            contracts: Mapping[str, str]) -> None:
    """Count one flushed batch: its rows by table, its records by topic, each record's latency."""
    total = 0
    for table, table_rows in rows.items():
        ROWS.labels(table).inc(len(table_rows))
        total += len(table_rows)
    FLUSH_ROWS.observe(total)
    now_ms = time.time() * 1000.0
    per_topic: dict[str, int] = {}
    histograms: dict[str, Any] = {}  # one label lookup per topic, not per record
    for rec in records:
        per_topic[rec.topic] = per_topic.get(rec.topic, 0) + 1
        since = origin_ms(rec.headers) if rec.headers else None
        since = since or rec.timestamp_ms
        if since is not None:
            h = histograms.get(rec.topic)
            if h is None:
                h = histograms[rec.topic] = QUERYABLE_SECONDS.labels(contracts.get(rec.topic, "other"))
            h.observe(max(0.0, (now_ms - since) / 1000.0))
    for topic, n in per_topic.items():
        RECORDS_OUT.labels(stage, topic).inc(n)
