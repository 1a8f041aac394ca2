"""Prometheus metrics of retrieval (docs/monitoring.md): the DICOM worker's status events by state and
the images its moves reported; the storage SCP's instances by outcome and the bytes it stored.

The SCP's numbers are its own ``scp.Stats`` (kept for its exit line anyway), read at each scrape by a
collector: nothing is added to the per-instance path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

STATUS = Counter("radstream_retrieval_status_total",
                 "Status events of retrieval requests the DICOM worker produced, by state (a final state "
                 "once per request and attempt; queued/moving may repeat).", ["state"])
# every state from the start (0), so that increase() counts a request's first failure too
for _state in ("queued", "waiting_for_window", "resolving", "moving", "completed", "partial", "failed",
               "cancelled"):
    STATUS.labels(_state)
IMAGES = Counter("radstream_retrieval_images_total",
                 "Instances the PACS reported for finished moves (completed, failed, warning).", ["outcome"])


def status(state: str, result: Any = None) -> None:
    """Count one status event; a final one also counts its move's sub-operations."""
    STATUS.labels(state).inc()
    if result is not None and state in ("completed", "partial", "failed"):
        for outcome in ("completed", "failed", "warning"):
            n = getattr(result, outcome, None)
            if n:
                IMAGES.labels(outcome).inc(n)


class WorkerCollector(Collector):
    """The requests one DICOM worker holds now, by state (``Worker.held``)."""

    def __init__(self, held: Callable[[], Mapping[str, int]]) -> None:
        self.held = held

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("radstream_retrieval_requests", "Retrieval requests this DICOM worker "
                                  "holds now: queued (for a mover, a window or a retry) or active.",
                                  labels=["state"])
        for state, n in self.held().items():
            gauge.add_metric([state], n)
        yield gauge


def register_worker(held: Callable[[], Mapping[str, int]]) -> WorkerCollector:
    collector = WorkerCollector(held)
    REGISTRY.register(collector)
    return collector


class ScpCollector(Collector):
    """The counters of one storage SCP process (``ResearchStore.stats``)."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        s = self.stats
        with s.lock:
            counts = {"received": s.received, "stored": s.written, "quarantined": s.quarantined,
                      "refused": s.refused, "write_error": s.write_errors}
            stored_bytes = s.bytes
        instances = CounterMetricFamily(
            "radstream_scp_instances", "Instances the storage SCP received, stored, quarantined, refused or "
            "failed to write.", labels=["outcome"])
        for outcome, n in counts.items():
            instances.add_metric([outcome], n)
        yield instances
        yield CounterMetricFamily("radstream_scp_stored_bytes", "Bytes of the instances the storage SCP "
                                  "stored (files in the project tree).", value=stored_bytes)


def register_scp(stats: Any) -> ScpCollector:
    collector = ScpCollector(stats)
    REGISTRY.register(collector)
    return collector
