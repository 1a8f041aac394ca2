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
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams.config import KafkaConfig

log = logging.getLogger("radstream.table")

RESTORE_TIMEOUT_S = 300.0
_MOMENTARY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT, KafkaError._TRANSPORT}
Delivery = Callable[[KafkaError | None, Message], None]


def changelog_topic(app: str, table: str) -> str:
    return f"{app}-{table}-changelog"


class ChangelogTable:
    """``get``/``put`` per (input partition, key); ``restore`` on assignment, ``release`` on revoke."""

    def __init__(self, kafka: KafkaConfig, topic: str, producer: Producer) -> None:
        self.kafka = kafka
        self.topic = topic
        self._producer = producer
        self._data: dict[int, dict[bytes, Any]] = {}
        self._next: dict[int, int] = {}  # per partition: the first changelog offset not applied here
        self.restored = 0  # changelog records read by restores (for tests and logs)

    def get(self, partition: int, key: bytes, default: Any = None) -> Any:
        return self._data.get(partition, {}).get(key, default)

    def put(self, partition: int, key: bytes, value: Any, on_delivery: Delivery) -> None:
        """Set ``key`` of input partition ``partition`` and write it to the changelog;
        ``on_delivery(err, msg)`` when the broker acknowledged the write (or it failed)."""
        self._data.setdefault(partition, {})[key] = value

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                self._next[partition] = max(self._next.get(partition, 0), int(msg.offset() or 0) + 1)
            on_delivery(err, msg)

        payload = json.dumps(value, separators=(",", ":")).encode()
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
                self._data.setdefault(p, {})
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
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    log.warning("%s: restore: %s", self.topic, msg.error())
                    continue
                p, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                self._apply(p, msg.key(), msg.value())
                self._next[p] = offset + 1
                if p in left and offset + 1 >= left[p]:
                    del left[p]
            for tp in consumer.position([TopicPartition(self.topic, p) for p in list(left)]):
                # a compacted-away tail: the position passes the end without a record at end - 1
                if tp.offset >= 0 and tp.offset >= left.get(tp.partition, tp.offset + 1):
                    self._next[tp.partition] = tp.offset
                    left.pop(tp.partition, None)

    def _apply(self, partition: int, key: str | bytes | None, value: bytes | None) -> None:
        self.restored += 1
        if key is None:
            return
        k = key.encode() if isinstance(key, str) else key
        if value is None:
            self._data[partition].pop(k, None)
            return
        try:
            self._data[partition][k] = json.loads(value)
        except ValueError:
            log.warning("%s: ignoring a changelog value that is not JSON (key %r)", self.topic, k)
