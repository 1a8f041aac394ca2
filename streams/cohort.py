"""Standing cohorts in the stream: the watch registry (a compacted topic read whole by every worker)
and the glue between findings events and retrieval requests (``processors.cohort.decide``)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from processors.cohort import RuleError, load_rule
from processors.cohort.decide import Watch
from processors.cohort.rules import parse_rule
from radstream.config import Settings
from streams import serde
from streams.producer import make_producer, produce_sync

log = logging.getLogger("radstream.cohort")


class DestinationNotAllowed(ValueError):
    pass


def watch_record(settings: Settings, project_id: str, destination_ae: str, requester: str,
                 rule_path: str, watch_id: str | None = None) -> dict[str, Any]:
    """Validate a rule file and the destination; -> the CohortWatch record to publish."""
    if destination_ae not in settings.research.allowed_destinations:
        raise DestinationNotAllowed(f"destination {destination_ae!r} is not on the allow-list "
                                    f"({', '.join(settings.research.allowed_destinations)})")
    rule = load_rule(rule_path)
    with open(rule_path) as fh:
        text = json.dumps(json.load(fh), sort_keys=True)
    return {"watch_id": watch_id or f"{project_id}:{rule.name}:{uuid.uuid4().hex[:8]}",
            "project_id": project_id, "destination_ae": destination_ae, "requester": requester,
            "rule": text, "active": True, "time": datetime.now(UTC)}


def publish_watch(settings: Settings, record: dict[str, Any]) -> None:
    produce_sync(make_producer(settings), settings.topics.cohort_watches, "cohort_watch",
                 record["watch_id"].encode(), record)


def to_watch(rec: dict[str, Any]) -> Watch:
    return Watch(rec["watch_id"], rec["project_id"], rec["destination_ae"], rec["requester"],
                 parse_rule(json.loads(rec["rule"])))


class WatchRegistry:
    """Every active watch, kept current by reading the whole compacted watches topic in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._watches: dict[str, Watch] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded = threading.Event()  # set once the topic was read up to its end

    def current(self) -> list[Watch]:
        with self._lock:
            return list(self._watches.values())

    def apply(self, value: bytes | None, key: bytes | None) -> None:
        if value is None:  # tombstone
            with self._lock:
                self._watches.pop((key or b"").decode(), None)
            return
        try:
            rec = serde.decode("cohort_watch", value)
            watch = to_watch(rec) if rec["active"] else None
        except (serde.SerdeError, RuleError, ValueError, KeyError) as exc:
            log.error("ignoring invalid cohort watch %r: %s", key, exc)
            return
        with self._lock:
            if watch is None:
                self._watches.pop(rec["watch_id"], None)
            else:
                self._watches[watch.watch_id] = watch

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cohort-watches", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        topic = self.settings.topics.cohort_watches
        consumer = Consumer({"bootstrap.servers": self.settings.kafka.bootstrap,
                             "group.id": f"{self.settings.kafka.consumer_group}.cohort-watches",
                             "enable.auto.commit": False, "logger": log})
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
            seen = {p: 0 for p in parts}
            if all(e == 0 for e in ends.values()):
                self.loaded.set()
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                self.apply(msg.value(), msg.key())
                seen[msg.partition() or 0] = (msg.offset() or 0) + 1
                if not self.loaded.is_set() and all(seen[p] >= ends[p] for p in parts):
                    self.loaded.set()
        except Exception:
            log.exception("cohort watch registry stopped")
        finally:
            consumer.close()
