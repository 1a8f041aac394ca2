"""Prometheus metrics of the streams layer (docs/monitoring.md): the consumer loop, every stage's events
in and out, dead letters, NLP time and authentication failures.

Metrics live in prometheus-client's default registry, one per process; ``streams.ops`` serves it on
``/metrics``. The layers above define their own metrics beside their code (``sinks.clickhouse.metrics``,
``sinks.dicom.metrics``). Label values are bounded: stage names, topic names, partitions, exception
class names, HTTP statuses; never a key, an id or a message text.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

log = logging.getLogger("radstream.metrics")
disable_created_metrics()  # no *_created series: half the scrape, and Prometheus does not need them

# the librdkafka statistics interval of every loop's consumer: how fresh the lag gauge is
LAG_INTERVAL_MS = 5000

CONSUMER_LAG = Gauge(
    "radstream_consumer_lag_messages",
    "Messages in the partition after the consumer group's committed offset (librdkafka statistics).",
    ["group", "topic", "partition"])
RECORDS_IN = Counter(
    "radstream_records_consumed_total", "Records a stage consumed.", ["stage", "topic"])
RECORDS_OUT = Counter(
    "radstream_records_produced_total", "Records a stage produced (delivered to Kafka or stored).",
    ["stage", "topic"])
DEAD_LETTERS = Counter(
    "radstream_dead_letters_total", "Records a stage sent to the dead-letter topic, by reason "
    "(the exception class or the stage's error type).", ["stage", "reason"])
FLUSH_SECONDS = Histogram(
    "radstream_loop_flush_duration_seconds", "Time of a consumer loop's handler flush that succeeded.",
    ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
FLUSH_FAILURES = Counter(
    "radstream_loop_flush_failures_total", "Failed flush attempts of a consumer loop (each is retried).",
    ["stage"])
CONSUMER_RESTARTS = Counter(
    "radstream_consumer_restarts_total", "Consumers a loop replaced after a fatal error (e.g. a static "
    "member fenced when the group coordinator moved); uncommitted records are re-delivered.", ["stage"])
NLP_SECONDS = Histogram(
    "radstream_nlp_batch_duration_seconds", "From handing a batch of reports to the NLP process until its "
    "results (NLP and de-identification; waiting for the process behind an earlier batch included).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
NLP_LATENCY = Histogram(
    "radstream_nlp_latency_seconds", "From a report's production until its findings were handed to the "
    "producer (consumer lag, batching and NLP).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
NLP_REPORTS = Counter(
    "radstream_nlp_reports_total", "Reports analysed by the NLP agent (dead-lettered ones included).")
INGEST_MESSAGES = Counter(
    "radstream_ingest_messages_total", "Messages a front door received (HL7 v2 messages, FHIR POSTs).",
    ["stage"])
MLLP_REFUSALS = Counter(
    "radstream_mllp_refusals_total", "What the MLLP listener refused for its resource limits, by reason: "
    "connections (a connection over ingest.mllp_max_connections), buffered (a frame over "
    "mllp_max_buffered_bytes held across connections), deadline (a frame not ended within "
    "mllp_frame_deadline_s).", ["reason"])
AUTH_FAILURES = Counter(
    "radstream_auth_failures_total", "HTTP requests refused: 401 (no or bad token) or 403 (role lacking).",
    ["service", "status"])


def stage_started(stage: str, consumes: Iterable[str] = (), produces: Iterable[str] = ()) -> None:
    """Create a stage's series at 0 before its first record: rate() and increase() count from a sample
    before the first increment, so the first batch of a new process is not lost to them."""
    for topic in consumes:
        RECORDS_IN.labels(stage, topic)
    for topic in produces:
        RECORDS_OUT.labels(stage, topic)
    FLUSH_FAILURES.labels(stage)
    CONSUMER_RESTARTS.labels(stage)


def dead_letter(stage: str, reason: str) -> None:
    DEAD_LETTERS.labels(stage, reason or "Rejected").inc()


def lag_from_stats(stats_json: str, group: str, replay: bool = False) -> set[tuple[str, str]]:
    """Set the lag gauge of ``group`` from one librdkafka statistics document; returns the (topic,
    partition) pairs it set. Lag = end of the partition (last stable offset, else high watermark) minus
    the committed offset, or minus the partition's start before the group committed anything (the
    loop's ``auto.offset.reset`` is earliest). A ``replay`` loop commits nothing: minus its position."""
    try:
        stats: dict[str, Any] = json.loads(stats_json)
    except ValueError:
        return set()
    seen: set[tuple[str, str]] = set()
    for topic, t in (stats.get("topics") or {}).items():
        for pid, p in (t.get("partitions") or {}).items():
            if pid == "-1" or p.get("fetch_state") in (None, "none", "stopped"):
                continue  # the internal UA partition, or one this consumer does not fetch
            end = p.get("ls_offset", -1)
            end = end if end is not None and end >= 0 else p.get("hi_offset", -1)
            order = ("app_offset",) if replay else ("committed_offset", "lo_offset")
            pos = next((v for v in (p.get(k) for k in order) if v is not None and v >= 0), -1)
            if end is None or end < 0 or pos < 0:
                continue
            CONSUMER_LAG.labels(group, topic, pid).set(max(0, end - pos))
            seen.add((topic, pid))
    return seen


def forget_lag(group: str, partitions: Iterable[tuple[str, str]]) -> None:
    """Drop the lag series of partitions this process no longer owns (another member reports them)."""
    for topic, pid in partitions:
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(group, topic, pid)
