"""Standing cohorts in the stream: the watch registry (a compacted topic read whole by every worker)
and the glue between findings events and retrieval requests (``processors.cohort.decide``)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from processors.cohort import RuleError, load_rule
from processors.cohort.decide import Watch
from processors.cohort.rules import parse_rule
from streams import serde
from streams.config import KafkaConfig, TopicsConfig
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record, run_in_thread
from streams.producer import make_producer, produce_sync

if TYPE_CHECKING:
    from streams.auth import Principal

log = logging.getLogger("radstream.cohort")


class DestinationNotAllowed(ValueError):
    pass


def watch_record(allowed_destinations: Sequence[str], project_id: str, destination_ae: str, requester: str,
                 rule_path: str, watch_id: str | None = None,
                 requester_roles: Sequence[str] | None = None) -> dict[str, Any]:
    """Validate a rule file and the destination; -> the CohortWatch record to publish. ``requester_roles``:
    the subscriber's roles (None: not known), carried into every request the watch makes."""
    if destination_ae not in allowed_destinations:
        raise DestinationNotAllowed(f"destination {destination_ae!r} is not on the allow-list "
                                    f"({', '.join(allowed_destinations)})")
    rule = load_rule(rule_path)
    with open(rule_path) as fh:
        text = json.dumps(json.load(fh), sort_keys=True)
    return {"watch_id": watch_id or f"{project_id}:{rule.name}:{uuid.uuid4().hex[:8]}",
            "project_id": project_id, "destination_ae": destination_ae, "requester": requester,
            "requester_roles": None if requester_roles is None else sorted(set(requester_roles)),
            "rule": text, "active": True, "time": datetime.now(UTC)}


def watch_refusal(principal: Principal, project_id: str, identified: bool | None, subscriber: str | None,
                  verb: str, what: str) -> str | None:
    """Why ``principal`` may not ``verb`` (end, replace) a standing watch of ``project_id`` subscribed by
    ``subscriber`` (None: may); ``identified``: the project as registered now (None: not registered);
    ``what`` names the watch in the reason. The one rule of ``radstream cohort watch|unwatch`` and the
    web page's unsubscribe: cohorts are shared, their watches are not. A steward may any; anyone else
    only one they subscribed, and never one of an identified project (only a steward may subscribe
    those), nor of one that is not registered."""
    if principal.has("steward"):
        return None
    if identified is None or identified:
        return (f"project {project_id!r} receives identified images (or is not registered): only a "
                f"steward may {verb} its watch")
    if subscriber != principal.user:
        return f"{what} was subscribed by {subscriber!r}: only they or a steward may {verb} it"
    return None


def publish_watch(kafka: KafkaConfig, topics: TopicsConfig, record: dict[str, Any]) -> None:
    produce_sync(make_producer(kafka), topics.cohort_watches, "cohort_watch",
                 record["watch_id"].encode(), record)


def to_watch(rec: dict[str, Any]) -> Watch:
    roles = rec.get("requester_roles")
    return Watch(rec["watch_id"], rec["project_id"], rec["destination_ae"], rec["requester"],
                 parse_rule(json.loads(rec["rule"])), None if roles is None else tuple(roles))


class WatchRegistry(Handler):
    """Every active watch, kept current by reading the whole compacted watches topic (a replaying
    consumer loop in a thread)."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig) -> None:
        self._watches: dict[str, Watch] = {}
        self._ended: dict[str, datetime] = {}  # watch id -> time of its inactive record (while inactive)
        self._lock = threading.Lock()
        self._loop = ConsumerLoop(kafka, LoopConfig(
            group_id=f"{kafka.consumer_group}.cohort-watches", topics=[topics.cohort_watches],
            stage="cohort-watches", replay=True, poll_s=0.5), self)
        self._thread: threading.Thread | None = None
        self._stop: threading.Event | None = None
        self.loaded = self._loop.caught_up  # set once the topic was read up to its end

    def current(self) -> list[Watch]:
        with self._lock:
            return list(self._watches.values())

    def ended(self) -> dict[str, datetime]:
        """Watch id -> when it was withdrawn, for the watches whose last record is inactive."""
        with self._lock:
            return dict(self._ended)

    def add(self, records: Sequence[Record], acks: Acks) -> None:
        for rec in records:
            self.apply(rec.value, rec.key)

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
                self._ended[rec["watch_id"]] = rec["time"]
            else:
                self._watches[watch.watch_id] = watch
                self._ended.pop(watch.watch_id, None)

    def start(self) -> None:
        self._thread, self._stop = run_in_thread(self._loop, "cohort-watches")

    def stop(self) -> None:
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join(10)
