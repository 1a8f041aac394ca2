"""Keyed state of a stream stage: partitioned like the stage's input, kept in a compacted changelog topic.

Why not Faust's tables (the worker ran on faust-streaming until this replaced it): with several workers
in one consumer group, Faust left partitions assigned and never fetched after rebalances, and reports
went without findings in about 4 runs of 10 (bench/nlp_scale_out.py; faust-streaming#471 and #629 are
open). The state is small and the rule is simple, so it lives on the one consumer loop instead:

* changelog partition p belongs to input partition p. Whoever owns input partition p restores
  changelog partition p when p is assigned (``restore``, before any record of p is handed over) and
  writes every update of a key of p to it (``put``);
* a partition read or written here before keeps its state: the restore reads only what was written
  after that (another owner's updates while this one did not own p);
* an update is written before the input record that caused it is committed (the caller's ticket waits
  for the write's delivery), and applying an input again gives the same state, so a crash loses nothing.

Values are JSON; keys are the input's keys (bytes). The topic layout (``<app>-<table>-changelog``, JSON
values, raw keys) is the one Faust used, so a running installation keeps its state across the upgrade.

Where the state lives in the process (``store_dir``): by default in a SQLite file (the standard library's
sqlite3) under the worker's state dir, unlinked as soon as it is opened, so that memory stays bounded by
SQLite's page cache however many reports the table holds (the report-versions table holds each report's
latest text: in dicts, about 1.6 KB per report). The file is a cache of the changelog, not a second
source of truth: it dies with the process, and a new process restores from the changelog as before, so
nothing is synced (``synchronous=OFF``, no rollback journal). ``store_dir=None``: plain dicts.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.config import KafkaConfig

log = logging.getLogger("radstream.table")

RESTORE_TIMEOUT_S = 300.0
# errors of a partition whose leader moves (a new topic, a broker lost: librdkafka drops the handle of a
# broker that left, _DESTROY_BROKER, and the restore after the rebalance asked it): asked again
_MOMENTARY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT, KafkaError._TRANSPORT,
              KafkaError._DESTROY_BROKER, KafkaError._ALL_BROKERS_DOWN}
Delivery = Callable[[KafkaError | None, Message], None]


def changelog_topic(app: str, table: str) -> str:
    return f"{app}-{table}-changelog"


class _Memory:
    """(partition, key) -> JSON bytes in dicts."""

    def __init__(self) -> None:
        self._data: dict[int, dict[bytes, bytes]] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._data.get(partition, {}).get(key)

    def set_many(self, rows: list[tuple[int, bytes, bytes | None]]) -> None:
        for partition, key, value in rows:
            part = self._data.setdefault(partition, {})
            if value is None:
                part.pop(key, None)
            else:
                part[key] = value

    def close(self) -> None:
        self._data.clear()


class _Disk:
    """(partition, key) -> JSON bytes in an unlinked SQLite file under ``directory``."""

    PAGE_CACHE_KIB = 8192

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="table-", suffix=".sqlite", dir=directory)
        os.close(fd)
        # the loop's thread uses it; the lock only guards against a close from another thread
        self._db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{self.PAGE_CACHE_KIB}",
                       "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        # a rowid table: WITHOUT ROWID took 4.7 KB per 1.2 KB value (rows that large do not suit it)
        self._db.execute("CREATE TABLE kv (p INTEGER, k BLOB, v BLOB NOT NULL, PRIMARY KEY (p, k))")
        os.unlink(name)  # SQLite keeps its descriptor (no journal to reopen); the file goes with the process

    def get(self, partition: int, key: bytes) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM kv WHERE p = ? AND k = ?", (partition, key)).fetchone()
        return None if row is None else bytes(row[0])

    def set_many(self, rows: list[tuple[int, bytes, bytes | None]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            for partition, key, value in rows:
                if value is None:
                    self._db.execute("DELETE FROM kv WHERE p = ? AND k = ?", (partition, key))
                else:
                    self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (partition, key, value))
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ChangelogTable:
    """``get``/``put`` per (input partition, key); ``restore`` on assignment, ``release`` on revoke."""

    def __init__(self, kafka: KafkaConfig, topic: str, producer: Producer,
                 store_dir: Path | None = None) -> None:
        self.kafka = kafka
        self.topic = topic
        self._producer = producer
        self._store: _Memory | _Disk = _Memory() if store_dir is None else _Disk(store_dir)
        self._next: dict[int, int] = {}  # per partition: the first changelog offset not applied here
        self.restored = 0  # changelog records read by restores (for tests and logs)

    def get(self, partition: int, key: bytes, default: Any = None) -> Any:
        raw = self._store.get(partition, key)
        return default if raw is None else json.loads(raw)

    def close(self) -> None:
        self._store.close()

    def put(self, partition: int, key: bytes, value: Any, on_delivery: Delivery) -> None:
        """Set ``key`` of input partition ``partition`` and write it to the changelog;
        ``on_delivery(err, msg)`` when the broker acknowledged the write (or it failed)."""
        payload = json.dumps(value, separators=(",", ":")).encode()
        self._store.set_many([(partition, key, payload)])

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self._next[partition] = max(self._next.get(partition, 0), int(msg.offset() or 0) + 1)
            on_delivery(err, msg)

        while True:
            try:
                self._producer.produce(self.topic, value=payload, key=key, partition=partition,
                                       on_delivery=delivered)
                return
            except BufferError:
                self._producer.poll(0.1)

    def release(self, partitions: Iterable[int]) -> None:
        """The partitions are another consumer's now. Their state is kept: if they come back, the restore
        reads only what was written since."""

    def restore(self, partitions: Iterable[int]) -> None:
        """Read the changelog of ``partitions`` up to its end (from where this process left off)."""
        wanted = sorted(set(partitions))
        if not wanted:
            return
        started = time.monotonic()
        consumer = Consumer({**self.kafka.client_conf(), "group.id": f"{self.topic}.restore",
                             "enable.auto.commit": False, "enable.partition.eof": False,
                             "auto.offset.reset": "earliest",
                             "logger": logging.getLogger("radstream.librdkafka")})
        try:
            ends: dict[int, int] = {}
            starts: list[TopicPartition] = []
            for p in wanted:
                low, high = self._watermarks(consumer, p)
                start = max(low, self._next.get(p, low))
                if start < high:
                    ends[p] = high
                    starts.append(TopicPartition(self.topic, p, start))
                else:
                    self._next[p] = max(self._next.get(p, 0), high)
            if starts:
                self._read(consumer, starts, ends, started)
        finally:
            consumer.close()
        log.info("%s: restored partitions %s in %.2f s", self.topic, wanted, time.monotonic() - started)

    def _watermarks(self, consumer: Consumer, partition: int) -> tuple[int, int]:
        """The partition's start and end; a partition just created (by this or a sibling worker) may
        answer "not leader" for a moment after its metadata shows a leader: retried."""
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        while True:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)
                return int(low), int(high)
            except KafkaException as exc:
                retriable = exc.args and (exc.args[0].retriable() or exc.args[0].code() in _MOMENTARY)
                if not retriable or time.monotonic() > deadline:
                    raise
                log.info("%s[%d]: %s; trying again", self.topic, partition, exc.args[0].str())
                time.sleep(0.5)

    def _read(self, consumer: Consumer, starts: list[TopicPartition], ends: dict[int, int],
              started: float) -> None:
        consumer.assign(starts)
        left = dict(ends)
        while left:
            if time.monotonic() - started > RESTORE_TIMEOUT_S:
                raise TimeoutError(f"{self.topic}: restore of partitions {sorted(left)} did not reach the "
                                   f"end within {RESTORE_TIMEOUT_S:.0f} s")
            rows: list[tuple[int, bytes, bytes | None]] = []
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    log.warning("%s: restore: %s", self.topic, msg.error())
                    continue
                p, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                self.restored += 1
                if (row := self._row(p, msg.key(), msg.value())) is not None:
                    rows.append(row)
                self._next[p] = offset + 1
                if p in left and offset + 1 >= left[p]:
                    del left[p]
            self._store.set_many(rows)
            for tp in consumer.position([TopicPartition(self.topic, p) for p in list(left)]):
                # a compacted-away tail: the position passes the end without a record at end - 1
                if tp.offset >= 0 and tp.offset >= left.get(tp.partition, tp.offset + 1):
                    self._next[tp.partition] = tp.offset
                    left.pop(tp.partition, None)

    def _row(self, partition: int, key: str | bytes | None, value: bytes | None,
             ) -> tuple[int, bytes, bytes | None] | None:
        """A changelog record as a store row (value None: the key was deleted); None: nothing to apply."""
        if key is None:
            return None
        k = key.encode() if isinstance(key, str) else key
        if value is None:
            return partition, k, None
        try:
            json.loads(value)
        except ValueError:
            log.warning("%s: ignoring a changelog value that is not JSON (key %r)", self.topic, k)
            return None
        return partition, k, bytes(value)
