"""The one Kafka consumer loop; what consumes a topic plugs a ``Handler`` into it.

The loop owns everything about the consumer, so that each consumer gets it right once:

* polling in batches (``consumer.consume``), or at once (``immediate``: a lone message is handed over
  without waiting for a batch to fill; see ``consume_now``);
* committing: an offset is committed only when every record before it in its partition is *done*.
  A record is done when the handler's ``flush`` returned after it was added, unless the handler
  ``hold``-s it, in which case it is done when its ticket is; dead-lettered records are done once the
  broker acknowledged the dead letter. Commits are asynchronous, synchronous on revoke and at the end;
* rebalancing: before partitions are revoked the handler is flushed once and what is done is
  committed; what is not becomes the next owner's (re-delivered), and the handler forgets it. A revoked
  partition the loop had paused is resumed first: librdkafka would keep the pause if it came back;
* back-pressure: while ``handler.busy()`` nothing is polled, and after ``pause_after_s`` of it the
  assigned partitions are paused;
* retrying a failed flush with exponential backoff (0.2 s doubling to 10 s), partitions paused, until
  it succeeds or the loop stops (then the buffered input is abandoned, uncommitted);
* dead letters: ``acks.dead_letter(record, reason)`` sends the record's bytes and the reason to the
  dead-letter topic; the stream goes on;
* a fatal consumer error (librdkafka's ``_FATAL``, e.g. a static member fenced after the group
  coordinator moved to another broker): the consumer is unusable, so its partitions are treated as
  revoked (flushed once, handler told) and a new consumer joins the group; what was not committed is
  re-delivered.

A ``replay`` loop has no consumer group: it reads its topics from the beginning (a compacted topic read
whole, e.g. the standing-cohort registry) and commits nothing.

Delivery is at least once: a crash re-delivers everything after the last commit, so handlers write
idempotently.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streams import metrics
from streams.config import KafkaConfig
from streams.consumer import consume_now
from streams.producer import dead_letter_record, make_producer, produce

log = logging.getLogger("radstream.loop")

MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
BUSY_WAIT_S = 0.005  # while a short busy spell is waited out: how often the handler is ticked
_REBALANCE_ERRORS = {KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                     KafkaError.UNKNOWN_MEMBER_ID, KafkaError._NO_OFFSET}
_FATAL_ERRORS = {KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID}


class ConsumerFatal(Exception):
    """The consumer hit an error librdkafka does not recover from; only a new consumer can go on."""


def _fatal(err: KafkaError) -> bool:
    # the error event librdkafka raises for a fatal error has code _FATAL with fatal() False
    return bool(err.fatal()) or err.code() in _FATAL_ERRORS


@dataclass(frozen=True)
class Record:
    """One consumed message, detached from librdkafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # producer's create time (None: not available)

    @classmethod
    def of(cls, msg: Message) -> Record:
        key = msg.key()
        ts_type, ts = msg.timestamp()
        return cls(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0),
                   key.encode() if isinstance(key, str) else key, msg.value(),
                   tuple((n, v if isinstance(v, bytes) else str(v or "").encode())
                         for n, v in cast(list[tuple[str, Any]], msg.headers() or [])),
                   ts if ts_type != TIMESTAMP_NOT_AVAILABLE and ts > 0 else None)


class Ticket:
    """A held record: it is committed once ``done()`` was called (from any thread)."""

    __slots__ = ("_offsets", "_tp", "_offset", "_generation")

    def __init__(self, offsets: _Offsets, tp: tuple[str, int], offset: int) -> None:
        self._offsets, self._tp, self._offset = offsets, tp, offset
        self._generation = offsets.generation(tp)

    def done(self) -> None:
        self._offsets.done(self._tp, self._offset, self._generation)


class Acks:
    """What a handler can say about the records it was given."""

    def __init__(self, offsets: _Offsets) -> None:
        self._offsets = offsets
        self._held: set[tuple[str, int, int]] = set()
        self._dead: list[tuple[Record, BaseException | str, str | None]] = []

    def hold(self, record: Record) -> Ticket:
        """Keep ``record`` uncommitted past the next flush, until the ticket is done."""
        self._held.add((record.topic, record.partition, record.offset))
        return Ticket(self._offsets, (record.topic, record.partition), record.offset)

    def dead_letter(self, record: Record, error: BaseException | str, error_type: str | None = None) -> None:
        """Send ``record`` to the dead-letter topic with the reason; it counts as done once delivered."""
        self._dead.append((record, error, error_type))


class _Offsets:
    """Per partition: offsets handed out and not done yet; the commit position is the lowest of them
    (or one past the highest handed out). Thread-safe: tickets are done from other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int], list[int]] = {}  # heap
        self._done: dict[tuple[str, int], set[int]] = {}
        self._high: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        # bumped when a partition is forgotten: a ticket of an earlier assignment then changes nothing
        self._generations: dict[tuple[str, int], int] = {}

    def generation(self, tp: tuple[str, int]) -> int:
        return self._generations.get(tp, 0)

    def take(self, tp: tuple[str, int], offset: int) -> None:
        with self._lock:
            heapq.heappush(self._open.setdefault(tp, []), offset)
            self._high[tp] = max(self._high.get(tp, 0), offset + 1)

    def done(self, tp: tuple[str, int], offset: int, generation: int | None = None) -> None:
        with self._lock:
            if tp in self._open and generation in (None, self._generations.get(tp, 0)):
                self._done.setdefault(tp, set()).add(offset)

    def position(self, tp: tuple[str, int]) -> int | None:
        heap, done = self._open.get(tp, []), self._done.get(tp, set())
        while heap and heap[0] in done:
            done.discard(heapq.heappop(heap))
        return heap[0] if heap else self._high.get(tp)

    def committable(self, only: set[tuple[str, int]] | None = None) -> list[TopicPartition]:
        """Positions that moved since the last commit (marked committed: a failed commit is re-tried by
        the next one or ends in re-delivery, which handlers absorb)."""
        out = []
        with self._lock:
            for tp in list(self._high):
                if only is not None and tp not in only:
                    continue
                pos = self.position(tp)
                if pos is not None and pos != self._committed.get(tp):
                    self._committed[tp] = pos
                    out.append(TopicPartition(tp[0], tp[1], pos))
        return out

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(h) - len(self._done.get(tp, ())) for tp, h in self._open.items())

    def forget(self, tps: set[tuple[str, int]]) -> None:
        with self._lock:
            for tp in tps:
                for d in (self._open, self._done, self._high, self._committed):
                    d.pop(tp, None)
                self._generations[tp] = self._generations.get(tp, 0) + 1


class Handler:
    """What plugs into the loop. Override ``add``; the rest has working defaults."""

    def add(self, records: Sequence[Record], acks: Acks) -> None:
        """Take newly polled records (in partition order)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Make everything added so far durable (raise: the loop retries with backoff)."""

    def due(self) -> float | None:
        """The monotonic time by which ``flush`` should run; None: nothing is buffered (a handler that
        finishes its records in ``add`` or through tickets; the loop then flushes only to mark the
        records it did not hold as done)."""
        return None

    def full(self) -> bool:
        """Flush now, whatever ``due`` says."""
        return False

    def busy(self) -> bool:
        """Stop fetching for now (back-pressure); fetching resumes when this is False again."""
        return False

    def tick(self) -> None:
        """Called once per round of the loop (e.g. to serve a producer's delivery callbacks)."""

    def abandon(self) -> None:
        """Drop what was added and is not durable: it is re-delivered (after a revoke or a restart)."""

    def on_flush_error(self, exc: BaseException) -> None:
        """A flush failed (e.g. reopen a connection before the retry)."""

    def on_assign(self, partitions: Sequence[tuple[str, int]]) -> None:
        pass

    def drain(self, partitions: Sequence[tuple[str, int]], timeout_s: float) -> None:
        """Before these partitions are committed for the last time (a revoke, the loop's end): finish
        what is in flight for them, so that its tickets are done and the commit covers it. What is not
        finished within ``timeout_s`` is re-delivered to the next owner."""

    def on_revoke(self, partitions: Sequence[tuple[str, int]]) -> None:
        """The partitions are another consumer's now: forget their records."""


@dataclass
class LoopStats:
    records: int = 0
    flushes: int = 0
    failed_attempts: int = 0
    dead_letters: int = 0
    consumer_restarts: int = 0
    pauses: int = 0
    last_error: str = ""
    last_flush_time: float = 0.0


@dataclass
class LoopConfig:
    """How one consumer reads: its group, topics and pacing."""

    group_id: str
    topics: Sequence[str]
    stage: str  # names the consumer in dead letters and logs
    dead_letter_topic: str = ""  # empty: a handler that dead-letters fails the flush
    max_batch: int = 500
    poll_s: float = 0.2  # longest wait for input when nothing is due
    pause_after_s: float = 1.0  # a handler busy longer than this gets its partitions paused
    immediate: bool = False  # hand over the first message at once (consume_now) instead of batching
    replay: bool = False  # no group: read the topics from the beginning, commit nothing
    track_end: bool = False  # know when every assigned partition is read to its end (caught_up)
    conf: Mapping[str, Any] = field(default_factory=dict)  # more librdkafka consumer settings
    # how long the last flush may go on retrying when the loop stops: an attempt under way is not cut,
    # and the in-flight work then has as long again to finish, so a stop takes up to about twice this
    # plus one attempt (a server's send/receive timeout: 60 s)
    final_flush_s: float = 10.0


class ConsumerLoop:
    """``ConsumerLoop(kafka, config, handler).run(stop)``: blocks until ``stop`` is set."""

    def __init__(self, kafka: KafkaConfig, config: LoopConfig, handler: Handler,
                 producer: Producer | None = None) -> None:
        self.kafka = kafka
        self.cfg = config
        self.handler = handler
        self.stats = LoopStats()
        self.assigned = threading.Event()
        self.caught_up = threading.Event()  # every assigned partition was read to its end once
        self._producer = producer
        self._offsets = _Offsets()
        self._acks = Acks(self._offsets)
        self._unheld: list[tuple[str, int, int]] = []  # added, not held: done at the next flush
        self._at_end: dict[tuple[str, int], bool] = {}
        self._paused: list[TopicPartition] = []
        self._busy_since: float | None = None
        self._consumer: Consumer | None = None
        self._lag_partitions: set[tuple[str, str]] = set()  # the lag series this loop set
        metrics.stage_started(config.stage, consumes=config.topics)

    # -- consumer -------------------------------------------------------------------------------------
    def _make_consumer(self, stop: threading.Event | None = None) -> Consumer:
        conf: dict[str, Any] = {
            **self.kafka.client_conf(),
            "group.id": self.cfg.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": self.cfg.track_end or self.cfg.replay,
            "max.poll.interval.ms": 600_000,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            "on_commit": self._on_commit,
            "logger": logging.getLogger("radstream.librdkafka"),
            # per-partition lag for /metrics, computed by librdkafka (served from poll, in this thread)
            "statistics.interval.ms": metrics.LAG_INTERVAL_MS,
            "stats_cb": self._on_stats,
        }
        conf.update(self.cfg.conf)
        consumer = Consumer(conf)
        if self.cfg.replay:
            parts = self._replay_partitions(consumer, stop)
            consumer.assign(parts)
            self._assigned(consumer, parts)
        else:
            consumer.subscribe(list(self.cfg.topics), on_assign=self._assigned, on_revoke=self._revoked)
        return consumer

    def _replay_partitions(self, consumer: Consumer, stop: threading.Event | None) -> list[TopicPartition]:
        """Every partition of the topics, from the beginning. Asked again until the broker answers: a view
        (projects, expected studies, cohort watches) started while Kafka is down must load once it is
        back, not end its thread (nothing loaded until a restart); [] once ``stop`` is set."""
        tries = 0
        while True:
            try:
                parts = []
                for topic in self.cfg.topics:
                    # a short wait first, longer ones after: a stop waits out at most the current one
                    wait = 10.0 if stop is None else min(10.0, 1.0 * 2 ** tries)
                    meta = consumer.list_topics(topic, timeout=wait).topics[topic]
                    parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
                return parts
            except KafkaException as exc:
                if stop is None:
                    raise
                tries += 1
                if tries == 1 or tries % 10 == 0:  # one line, then one per ten tries (not per second)
                    log.warning("%s: Kafka did not list %s (try %d; trying again): %s", self.cfg.stage,
                                ", ".join(self.cfg.topics), tries, exc)
                if stop.wait(min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** min(tries, 6))):
                    return []

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            log.warning("%s: offset commit failed (re-delivered after a restart): %s", self.cfg.stage, err)

    def _on_stats(self, stats_json: str) -> None:
        seen = metrics.lag_from_stats(stats_json, self.cfg.group_id, self.cfg.replay)
        metrics.forget_lag(self.cfg.group_id, self._lag_partitions - seen)
        self._lag_partitions = seen

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        log.info("%s: assigned %s", self.cfg.stage, tps)
        for tp in tps:
            self._at_end[tp] = False
        self.caught_up.clear()
        if self._paused and partitions:  # busy: an incremental assignment joins the paused set
            consumer.pause(partitions)
            self._paused = [*self._paused, *partitions]
        self.handler.on_assign(tps)
        self.assigned.set()

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._release({(p.topic, p.partition) for p in partitions}, consumer)

    def _release(self, tps: set[tuple[str, int]], consumer: Consumer | None) -> None:
        """The partitions are no longer this consumer's: flush once, finish what is in flight, commit
        what is done (with ``consumer``; None: it cannot commit any more), tell the handler, forget."""
        if self._unheld or self._acks._dead:
            try:
                self._flush_once()
            except Exception as exc:
                log.warning("%s: dropping an unflushed batch on revoke (re-delivered): %s",
                            self.cfg.stage, exc)
                self._abandon()
        self._drain(sorted(tps))
        if consumer is not None:
            self._commit(consumer, synchronous=True, only=tps)
        self.handler.on_revoke(sorted(tps))
        self._offsets.forget(tps)
        gone = {(t, str(p)) for t, p in tps}
        metrics.forget_lag(self.cfg.group_id, gone & self._lag_partitions)
        self._lag_partitions -= gone
        for tp in tps:
            self._at_end.pop(tp, None)
        gone_paused = [p for p in self._paused if (p.topic, p.partition) in tps]
        self._paused = [p for p in self._paused if (p.topic, p.partition) not in tps]
        if gone_paused and consumer is not None:
            # librdkafka keeps a partition's pause through a revoke and a re-assignment to this consumer
            # (librdkafka#1849, confluent-kafka-go#193): forgotten here, it would never be fetched again
            try:
                consumer.resume(gone_paused)
            except KafkaException as exc:
                log.warning("%s: resuming revoked partitions failed: %s", self.cfg.stage, exc)
        if not self._at_end:
            self.assigned.clear()
        elif (self.cfg.track_end or self.cfg.replay) and all(self._at_end.values()):
            self.caught_up.set()  # what is left was read to its end already

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        consumer = self._consumer = self._make_consumer(stop)
        try:
            while not stop.is_set():
                try:
                    if self._pace(consumer, stop):
                        self._take(self._poll(consumer))
                    self.handler.tick()
                    if self._flush_due():
                        self._flush(consumer, stop)
                    self._commit(consumer)
                except ConsumerFatal as exc:
                    consumer = self._consumer = self._rejoin(consumer, exc, stop)
            if self._flush_due(final=True):
                try:  # its backoff serves the consumer, which may fail for good now: give the batch up
                    self._flush(consumer, stop, give_up_after_s=self.cfg.final_flush_s)
                except ConsumerFatal as exc:
                    log.warning("%s: the consumer failed during the last flush (%s): the batch is "
                                "re-delivered", self.cfg.stage, exc)
                    self._abandon()
            self._drain(sorted(self._at_end), timeout_s=self.cfg.final_flush_s)
            self._commit(consumer, synchronous=True)
        finally:
            metrics.forget_lag(self.cfg.group_id, self._lag_partitions)
            self._lag_partitions = set()
            try:
                consumer.close()
            finally:
                self._consumer = None
                if self._producer is not None:
                    self._producer.flush(10)

    def _rejoin(self, consumer: Consumer, exc: ConsumerFatal, stop: threading.Event) -> Consumer:
        """Give up ``consumer`` after a fatal error and join the group with a new one. Its partitions are
        as revoked, except that nothing can be committed: what was taken is re-delivered to the new
        consumer (or another member), and the idempotent handlers absorb the repeat."""
        self.stats.consumer_restarts += 1
        metrics.CONSUMER_RESTARTS.labels(self.cfg.stage).inc()
        log.warning("%s: fatal consumer error, joining the group again with a new consumer "
                    "(what was not committed is re-delivered): %s", self.cfg.stage, exc)
        self._release(set(self._at_end), None)  # every partition: assigned is cleared there
        metrics.forget_lag(self.cfg.group_id, self._lag_partitions)  # any the statistics named besides
        self._lag_partitions = set()
        self._paused = []
        self.caught_up.clear()
        try:
            consumer.close()
        except Exception as close_exc:  # noqa: BLE001 - it is being thrown away
            log.info("%s: closing the failed consumer: %s", self.cfg.stage, close_exc)
        stop.wait(min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** min(self.stats.consumer_restarts, 6)))
        return self._make_consumer(stop)

    def _poll(self, consumer: Consumer) -> list[Message]:
        due = self.handler.due()
        wait = self.cfg.poll_s if due is None or self._paused else min(
            self.cfg.poll_s, max(0.0, due - time.monotonic()))
        if self.cfg.immediate:
            return consume_now(consumer, self.cfg.max_batch, wait)
        return consumer.consume(num_messages=self.cfg.max_batch, timeout=wait)

    def _take(self, msgs: Sequence[Message]) -> None:
        records = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end[(str(msg.topic()), int(msg.partition() or 0))] = True
                    if self._at_end and all(self._at_end.values()):
                        self.caught_up.set()
                    continue
                if _fatal(err):
                    raise ConsumerFatal(str(err))
                log.warning("%s: consumer error: %s", self.cfg.stage, err)
                continue
            rec = Record.of(msg)
            self._at_end[(rec.topic, rec.partition)] = False
            records.append(rec)
        if not records:
            return
        if not self.cfg.replay:
            for rec in records:
                self._offsets.take((rec.topic, rec.partition), rec.offset)
        held_before = len(self._acks._held)
        self.handler.add(records, self._acks)
        self.stats.records += len(records)
        per_topic: dict[str, int] = {}
        for rec in records:
            per_topic[rec.topic] = per_topic.get(rec.topic, 0) + 1
        for topic, n in per_topic.items():
            metrics.RECORDS_IN.labels(self.cfg.stage, topic).inc(n)
        held = self._acks._held
        if len(held) == held_before:
            self._unheld += [(r.topic, r.partition, r.offset) for r in records]
        else:
            self._unheld += [k for r in records if (k := (r.topic, r.partition, r.offset)) not in held]
        held.clear()

    def _flush_due(self, final: bool = False) -> bool:
        if self._acks._dead or self.handler.full():
            return True
        due = self.handler.due()
        if due is None:
            return bool(self._unheld)
        return final or due <= time.monotonic()

    def _flush_once(self) -> None:
        covered = len(self._unheld)
        started = time.perf_counter()
        self.handler.flush()
        metrics.FLUSH_SECONDS.labels(self.cfg.stage).observe(time.perf_counter() - started)
        self._send_dead_letters()
        for topic, partition, offset in self._unheld[:covered]:
            self._offsets.done((topic, partition), offset)
        del self._unheld[:covered]
        self.stats.flushes += 1
        self.stats.last_flush_time = time.time()

    def _drain(self, tps: list[tuple[str, int]], timeout_s: float = 30.0) -> None:
        if tps and not self.cfg.replay:
            try:
                self.handler.drain(tps, timeout_s)
            except Exception as exc:  # what is not finished is re-delivered
                log.warning("%s: in-flight records not finished (re-delivered): %s", self.cfg.stage, exc)

    def _abandon(self) -> None:
        self.handler.abandon()
        self._unheld = []
        self._acks._dead = []

    def _flush(self, consumer: Consumer, stop: threading.Event, give_up_after_s: float | None = None) -> None:
        attempt = 0
        started = time.monotonic()
        paused_here = False
        try:
            while True:
                try:
                    self._flush_once()
                    if attempt:
                        log.info("%s: flush succeeded after %d failed attempts", self.cfg.stage, attempt)
                    return
                except Exception as exc:
                    attempt += 1
                    self.stats.failed_attempts += 1
                    metrics.FLUSH_FAILURES.labels(self.cfg.stage).inc()
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("%s: flush attempt %d failed: %s", self.cfg.stage, attempt,
                                self.stats.last_error)
                    self.handler.on_flush_error(exc)
                    if not self._paused:
                        self._pause(consumer)
                        paused_here = True
                    delay = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** (attempt - 1))
                    if give_up_after_s is None:  # the running loop: a stop ends the retries
                        given_up = stop.is_set() or self._wait(consumer, delay, stop)
                    else:  # the last flush, the loop stopping already: retry within its own budget
                        given_up = time.monotonic() - started + delay > give_up_after_s
                        if not given_up:
                            self._wait(consumer, delay, threading.Event())
                    if given_up:
                        log.warning("%s: giving up on an unflushed batch (it will be re-delivered)",
                                    self.cfg.stage)
                        self._abandon()
                        return
        finally:
            if paused_here and not self.handler.busy():
                self._resume(consumer)

    def _wait(self, consumer: Consumer, delay: float, stop: threading.Event) -> bool:
        """Sleep ``delay`` while serving the consumer (paused partitions deliver nothing); True if stopped."""
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            msg = consumer.poll(min(left, 0.2))
            if msg is not None:
                self._take([msg])  # fetched before the pause took effect: keep it, it is in order
            if not self._paused and consumer.assignment():
                self._pause(consumer)  # a rebalance in the wait: what it assigned waits for the flush too
            if stop.is_set():
                return True
        return False

    def _pace(self, consumer: Consumer, stop: threading.Event) -> bool:
        """Back-pressure. False: skip this round's poll. A busy spell shorter than ``pause_after_s`` is
        waited out without pausing: librdkafka's fetcher notices a resume only at its next wake-up, up
        to a second later (measured: at a steady 100 reports/s, pausing for each spell of two NLP batches
        in flight made reports wait 0.5 s on average). Unpaused, the fetcher keeps filling librdkafka's
        queue (bounded by ``queued.max.messages.kbytes``) and the next poll takes what is there."""
        if not self.handler.busy():
            self._busy_since = None
            if self._paused:
                self._resume(consumer)
            return True
        if self._paused:
            return True  # the poll returns nothing and serves the consumer's callbacks
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        if now - self._busy_since < self.cfg.pause_after_s:
            stop.wait(BUSY_WAIT_S)
            return False
        self._pause(consumer)
        return True

    def _pause(self, consumer: Consumer) -> None:
        self._paused = consumer.assignment()
        self.stats.pauses += 1
        if self._paused:
            consumer.pause(self._paused)

    def _resume(self, consumer: Consumer) -> None:
        paused, self._paused = self._paused, []
        if paused:
            try:
                consumer.resume(paused)
            except KafkaException as exc:
                log.warning("%s: resume failed: %s", self.cfg.stage, exc)

    def _commit(self, consumer: Consumer, synchronous: bool = False,
                only: set[tuple[str, int]] | None = None) -> None:
        if self.cfg.replay:
            return
        offsets = self._offsets.committable(only)
        if not offsets:
            return
        try:
            if synchronous:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is not None and err.code() in _REBALANCE_ERRORS:
                log.warning("%s: commit refused by a rebalance (re-delivered; handlers dedupe)",
                            self.cfg.stage)
            elif err is not None and _fatal(err):
                raise ConsumerFatal(str(err)) from exc
            else:
                raise

    # -- dead letters ---------------------------------------------------------------------------------
    def _send_dead_letters(self) -> None:
        dead = self._acks._dead
        if not dead:
            return
        if not self.cfg.dead_letter_topic:
            raise RuntimeError(f"{self.cfg.stage}: a record was rejected but no dead-letter topic is set")
        if self._producer is None:
            self._producer = make_producer(self.kafka)
        errors: list[str] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(str(err))

        for rec, error, error_type in dead:
            log.warning("%s: dead-letter %s[%d]@%d: %s", self.cfg.stage, rec.topic, rec.partition, rec.offset,
                        error)
            produce(self._producer, self.cfg.dead_letter_topic, "dead_letter", rec.key, dead_letter_record(
                self.cfg.stage, rec.value, error, topic=rec.topic, partition=rec.partition, offset=rec.offset,
                key=rec.key, error_type=error_type), on_delivery=delivered)
        left = self._producer.flush(30)
        if left or errors:
            raise RuntimeError(f"dead-letter delivery failed ({left} undelivered): {errors[:3]}")
        self.stats.dead_letters += len(dead)
        self._acks._dead = []  # the records are among the unheld ones: done with this flush

    # -- for handlers and tests -----------------------------------------------------------------------
    def outstanding(self) -> int:
        """Records handed out and not done yet."""
        return self._offsets.outstanding()

    def at_end(self) -> bool:
        """Every assigned partition is read to its end (needs ``track_end``)."""
        ends = list(self._at_end.values())  # a snapshot: the loop thread changes it on assign/revoke
        return bool(ends) and all(ends)


def run_in_thread(loop: ConsumerLoop, name: str) -> tuple[threading.Thread, threading.Event]:
    """The loop in a daemon thread; set the event and join the thread to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread, stop

