"""The standing-cohort agent: each new report version's findings -> retrieval requests (or cancels).

    findings --(processors.cohort.decide, per registered watch)--> retrieval requests

A handler of the one consumer loop. Per report (the findings key) it keeps what it decided for each
watch in a changelogged table (``cohort-state``), so a report analysed again, or a new version of it,
gives the right request or cancel once. Each findings record is held until its requests and its state
update are acknowledged by the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from confluent_kafka import Producer

from processors.cohort.decide import decide
from streams import metrics, serde
from streams.agents.outbox import Completion, Sent, send
from streams.agents.table import ChangelogTable
from streams.cohort import WatchRegistry
from streams.config import TopicsConfig
from streams.loop import Acks, Handler, Record

log = logging.getLogger("radstream.worker")

COHORT_STAGE = "cohort-agent"
STATE_TABLE = "cohort-state"
REGISTRY_WAIT_S = 60.0


class CohortHandler(Handler):
    def __init__(self, topics: TopicsConfig, registry: WatchRegistry, producer: Producer,
                 state: ChangelogTable, allowed_destinations: Sequence[str]) -> None:
        self.topics = topics
        self.registry = registry
        self.producer = producer
        self.state = state
        self.allowed = set(allowed_destinations)
        self._sent = Sent("cohort")  # emitted, waiting for the broker's acks
        metrics.stage_started(COHORT_STAGE, consumes=[topics.findings], produces=[topics.retrieval_requests])

    def add(self, records: Sequence[Record], acks: Acks) -> None:
        # evaluate nothing before every registered watch is known
        if not self.registry.loaded.is_set() and not self.registry.loaded.wait(REGISTRY_WAIT_S):
            log.warning("the cohort watches were not read within %.0f s; evaluating what is known",
                        REGISTRY_WAIT_S)
        watches = self.registry.current()
        done = Completion([acks.hold(r) for r in records])
        for rec in records:
            if not watches or rec.key is None:
                continue
            try:
                record = serde.decode("report_findings", rec.value)
            except serde.SerdeError:
                continue  # the ClickHouse sink dead-letters undecodable findings
            before = self.state.get(rec.partition, rec.key) or {}
            after, out = decide(record, watches, before, requested_time(rec))
            for req in out:
                if req["destination_ae"] not in self.allowed:
                    log.error("cohort %s: destination %s not allowed", req["project_id"],
                              req["destination_ae"])
                    continue
                send(self.producer, self.topics.retrieval_requests, req["request_id"].encode(),
                     serde.encode("retrieval_requested", req), done)
                metrics.RECORDS_OUT.labels(COHORT_STAGE, self.topics.retrieval_requests).inc()
            if after != before:
                self.state.put(rec.partition, rec.key, after, done.callback())
        done.seal()
        self._sent.append(done)

    def busy(self) -> bool:
        return len(self._sent) > 1000

    def tick(self) -> None:
        self.producer.poll(0)
        self._sent.check()

    def drain(self, partitions: Sequence[tuple[str, int]], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._sent)} cohort decisions being delivered "
                                   f"after {timeout_s:.0f} s")
            self.producer.poll(0.01)
            self._sent.check()

    def on_assign(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.state.restore(p for t, p in partitions if t == self.topics.findings)

    def on_revoke(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.state.release(p for t, p in partitions if t == self.topics.findings)


def requested_time(rec: Record) -> datetime:
    """The requested_time of what ``rec`` (a findings record) gives: its Kafka timestamp, so a redelivered
    record gives byte-identical requests. ``now`` gave each delivery a new time, and the warehouse keys
    requests and their audit rows on it (two rows that never collapse). Not ``processed_time``: with text
    de-identification it is shifted back by the patient's date shift."""
    if rec.timestamp_ms:
        return datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC)
    return datetime.now(UTC)  # a record without a timestamp (not from a broker): nothing to repeat
