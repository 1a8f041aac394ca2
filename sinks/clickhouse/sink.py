"""The ClickHouse sink: Kafka topics -> warehouse tables, batched, at-least-once, idempotent.

* Consumes the reports, findings, retrieval request/status, received-instance and dead-letter topics
  (``enable.auto.commit=false``), maps each record to rows (``rows.py``) and inserts one block per table
  when ``settings.clickhouse.batch_rows`` rows are buffered or ``flush_ms`` (at most 500 ms) passed since
  the oldest buffered message was produced (whichever comes first). A findings message counts from
  when its report was produced (the ``radstream-origin-ms`` header the NLP agent sets), so the NLP
  step's time is part of the same 500 ms, not added to it.
* Offsets are committed only after every insert of the batch succeeded (and dead letters were
  acknowledged by Kafka). A crash before the commit re-delivers the batch.
* Idempotency: every table is a ReplacingMergeTree whose sort key is the natural key of a row, so
  re-delivered or replayed records collapse into one row at read time (FINAL / the views / ``radstream
  sql``) and in background merges. No insert-deduplication tokens: batch boundaries differ after a
  restart, so a token would not match anyway.
* ClickHouse failing: the consumer pauses its partitions and the batch is retried with exponential
  backoff (0.2 s doubling to 10 s) until it succeeds or ``stop`` is set; nothing is committed meanwhile.
* Undecodable or unmappable messages go to the dead-letter topic with the reason; the loop goes on.
  So does a decodable record whose values a column refuses (clickhouse-connect ``DataError``): the
  batch is bisected until that record is alone, the rest is written, nothing stalls.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import struct
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError
from clickhouse_connect.driver.insert import InsertContext
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from radstream.config import Settings
from sinks.clickhouse.client import open_client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.rows import COLUMNS, TABLES_OF, Origin, Rows, merge_rows, rows_for
from streams import serde
from streams.handlers import origin_ms
from streams.producer import dead_letter_record, make_producer, produce
from streams.topics import topic_specs

log = logging.getLogger("radstream.sink.clickhouse")

STAGE = "clickhouse-sink"
# children before their header row (report_nlp), so a reader never sees a header without its rows
INSERT_ORDER = ("report_versions", "reports", "sections", "findings", "measurements", "recommendations",
                "assessments", "critical_results", "chest_labels", "report_nlp", "retrieval_requests",
                "retrieval_events", "received_instances", "deid_map", "dead_letters")
MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
_REBALANCE_ERRORS = {KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                     KafkaError.UNKNOWN_MEMBER_ID, KafkaError._NO_OFFSET}


def static_instance_id(settings: Settings) -> str:
    """Kafka static group membership for an embedded store: exactly one process can own a chDB store,
    so one stable member id per (host, store) lets a restarted sink take over its partitions at once
    instead of waiting for the dead member's session to time out. Server mode: dynamic membership
    (several sinks may share the load). ``clickhouse.sink_instance_id`` other than "auto" overrides
    ('' = off).
    """
    if settings.clickhouse.sink_instance_id != "auto":
        return settings.clickhouse.sink_instance_id
    if not settings.embedded_clickhouse:
        return ""
    digest = hashlib.sha1(f"{socket.gethostname()}|{settings.clickhouse_url}".encode()).hexdigest()[:12]
    return f"clickhouse-sink-{digest}"


def is_data_error(exc: BaseException) -> bool:
    """A record's values do not fit the table (retrying cannot help), as opposed to ClickHouse being
    unavailable. clickhouse-connect raises DataError while serialising a block."""
    return isinstance(exc, DataError | OverflowError | struct.error)


def waited(msg: Message, flush_s: float, now: float) -> float:
    """How long a live message has already waited, so the flush deadline counts from its production
    rather than from when the sink got to it (e.g. during its previous insert). A derived message
    (findings) counts from its source's production (``ORIGIN_HEADER``: the report, so the NLP step
    spends the same budget), or from its own when the source is older than the flush interval.
    Backlog (older than the flush interval: a replay, a catch-up) counts from now (0), so that batches
    stay large."""
    ts_type, ts = msg.timestamp()
    own = now - ts / 1000.0 if ts_type != TIMESTAMP_NOT_AVAILABLE and ts > 0 else None
    if own is not None and not 0.0 < own < flush_s:
        return 0.0  # backlog (its source is older still) or a clock ahead: no header to read
    origin = origin_ms(msg.headers())
    if origin is not None and 0.0 < (age := now - origin / 1000.0) < flush_s:
        return age
    return own or 0.0


class _Inserter:
    """Cached insert contexts of one client (one DESCRIBE per table per client, not per batch)."""

    def __init__(self) -> None:
        self.contexts: dict[str, InsertContext] = {}

    def insert(self, client: Client, table: str, rows: list[list[Any]]) -> None:
        ctx = self.contexts.get(table)
        if ctx is None:
            ctx = client.create_insert_context(table, column_names=list(COLUMNS[table]))
            self.contexts[table] = ctx
        ctx.data = rows
        client.insert(context=ctx)


# weak keys: a closed and dropped client takes its contexts with it
_inserters: weakref.WeakKeyDictionary[Client, _Inserter] = weakref.WeakKeyDictionary()
_inserters_lock = threading.Lock()


def _inserter(client: Client) -> _Inserter:
    with _inserters_lock:
        ins = _inserters.get(client)
        if ins is None:
            ins = _inserters[client] = _Inserter()
        return ins


def write_rows(client: Client, rows: Rows, helpers: Sequence[Client] = (),
               pool: ThreadPoolExecutor | None = None) -> int:
    """Insert mapped rows (table -> rows) into the client's database; returns the number of rows.

    With ``helpers`` (more clients on the same store) and a ``pool``, the tables before ``report_nlp``
    go in concurrently, one client per thread (the engine does the work outside the GIL); the header
    rows of ``report_nlp`` and the tables after it follow once they all succeeded."""
    unknown = set(rows) - set(INSERT_ORDER)
    if unknown:
        raise ValueError(f"unknown tables {sorted(unknown)}")
    tables = [t for t in INSERT_ORDER if rows.get(t)]
    split = INSERT_ORDER.index("report_nlp")
    children = [t for t in tables if INSERT_ORDER.index(t) < split]
    rest = [t for t in tables if INSERT_ORDER.index(t) >= split]
    clients = [client, *helpers]
    if pool is not None and len(clients) > 1 and len(children) > 1:
        groups = [children[k::len(clients)] for k in range(len(clients))]

        def insert_group(k: int) -> None:
            for table in groups[k]:
                _inserter(clients[k]).insert(clients[k], table, rows[table])

        for future in [pool.submit(insert_group, k) for k in range(len(clients)) if groups[k]]:
            future.result()  # the first failure is raised; the batch is retried whole (same keys)
    else:
        rest = tables
    ins = _inserter(client)
    for table in rest:
        ins.insert(client, table, rows[table])
    return sum(len(rows[t]) for t in tables)


def write_records(client: Client, contract: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Write decoded records of one contract directly (backfill path, no Kafka). Idempotent like the sink.

    ``client`` must have the warehouse database as its default (``open_client`` does that).
    Returns the number of table rows written.
    """
    if contract not in TABLES_OF:
        raise ValueError(f"no warehouse mapping for contract {contract!r}")
    rows: Rows = {}
    for rec in records:
        merge_rows(rows, rows_for(contract, rec))
    return write_rows(client, rows)


@dataclass
class SinkStats:
    messages: int = 0
    rows: int = 0
    flushes: int = 0
    failed_attempts: int = 0
    dead_letters: int = 0
    last_error: str = ""
    last_flush_time: float = 0.0


@dataclass
class _Item:
    origin: Origin
    key: bytes | None
    value: bytes | None
    rows: Rows


@dataclass
class _Batch:
    rows: Rows = field(default_factory=dict)
    n_rows: int = 0
    n_messages: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to commit
    first_at: float = 0.0
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    items: list[_Item] = field(default_factory=list)  # per message, to isolate a record ClickHouse refuses

    def __bool__(self) -> bool:
        return bool(self.offsets)


class ClickHouseSink:
    """``ClickHouseSink(settings).run(stop_event)``: the blocking consume -> insert -> commit loop.

    ``client``: an open client to use (default: ``open_client(settings)``). Migrations are applied on
    construction. ``self.client`` stays usable from other threads for queries (chDB clients lock).
    """

    def __init__(self, settings: Settings, client: Client | None = None, *,
                 group_id: str | None = None, consumer_conf: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self._own_client = client is None
        self.client: Client = client if client is not None else open_client(settings)
        migrate(self.client, settings)
        self.contracts = {spec.name: spec.contract for spec in topic_specs(settings)
                          if spec.contract in TABLES_OF}
        self.group_id = group_id or f"{settings.kafka.consumer_group}.clickhouse-sink"
        self.consumer_conf = dict(consumer_conf or {})
        self.batch_rows = max(1, settings.clickhouse.batch_rows)
        self.flush_s = max(0.01, min(settings.clickhouse.flush_ms, 500) / 1000.0)
        self.stats = SinkStats()
        self.assigned = threading.Event()
        self._batch = _Batch()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._last_offsets: list[TopicPartition] = []
        self._helpers: list[Client] = []
        self._pool: ThreadPoolExecutor | None = None

    def _insert_helpers(self) -> tuple[list[Client], ThreadPoolExecutor | None]:
        """More clients on the store for concurrent inserts (opened at the first flush)."""
        want = max(1, self.settings.clickhouse.insert_threads) - 1
        if want and self._pool is None:
            from sinks.clickhouse.client import client_like

            self._helpers = [client_like(self.client) for _ in range(want)]
            self._pool = ThreadPoolExecutor(want + 1, thread_name_prefix="clickhouse-insert")
        return self._helpers, self._pool

    def _drop_helpers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for helper in self._helpers:
            with contextlib.suppress(Exception):
                helper.close()
        self._helpers = []

    def close(self) -> None:
        """Close the ClickHouse clients and the read-only clients of the same store (after ``run``)."""
        from sinks.clickhouse.client import client_url
        from sinks.clickhouse.query import close_readonly_clients

        self._drop_helpers()
        close_readonly_clients(client_url(self.client))
        self.client.close()

    # -- Kafka ---------------------------------------------------------------------------------------
    def _make_consumer(self) -> Consumer:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.settings.kafka.bootstrap,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 50,
            "max.poll.interval.ms": 600_000,
            # a sink killed without leaving the group blocks its successor until the session times out
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            "on_commit": self._on_commit,
        }
        instance = static_instance_id(self.settings)
        if instance:
            conf["group.instance.id"] = instance
        conf.update(self.consumer_conf)
        consumer = Consumer(conf)
        consumer.subscribe(sorted(self.contracts), on_assign=self._on_assign, on_revoke=self._on_revoke)
        return consumer

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            log.warning("offset commit failed (the batch will be re-delivered, dedup by key): %s", err)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", [(p.topic, p.partition) for p in partitions])
        self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # eager rebalance: everything is revoked; what we did not commit is re-delivered to the next owner
        if self._batch:
            try:
                self._write_and_commit(consumer, wait_for_commit=True)
            except Exception as exc:
                log.warning("dropping an uncommitted batch on revoke (it will be re-delivered): %s", exc)
            self._batch = _Batch()
        self.assigned.clear()
        self._last_offsets = []

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        consumer = self._consumer = self._make_consumer()
        self._producer = make_producer(self.settings)
        try:
            while not stop.is_set():
                batch = self._batch
                wait = max(0.0, batch.first_at + self.flush_s - time.monotonic()) if batch else 0.2
                room = max(1, min(1000, self.batch_rows - batch.n_rows))
                for msg in consumer.consume(num_messages=room, timeout=wait):
                    self._add(msg)
                batch = self._batch
                if batch and (batch.n_rows >= self.batch_rows
                              or time.monotonic() >= batch.first_at + self.flush_s):
                    self._flush(consumer, stop)
            if self._batch:
                self._flush(consumer, stop, give_up_after_s=10.0, wait_for_commit=True)
            elif self._last_offsets:  # make sure the last asynchronous commit landed
                try:
                    consumer.commit(offsets=self._last_offsets, asynchronous=False)
                except KafkaException as exc:
                    log.warning("final commit failed (those messages will be re-delivered): %s", exc)
        finally:
            try:
                consumer.close()
            finally:
                self._producer.flush(10)
                self._consumer = None

    def _add(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consumer error: %s", err)
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            return
        batch = self._batch
        due = time.monotonic() - self._waited(msg)  # the batch's deadline counts from its oldest message
        batch.first_at = min(batch.first_at, due) if batch else due
        batch.offsets[(topic, partition)] = offset + 1
        batch.n_messages += 1
        contract = self.contracts.get(topic, "")
        value = msg.value()
        try:
            record = serde.decode(contract, value)
            rows = rows_for(contract, record, Origin(topic, partition, offset))
        except Exception as exc:  # anything we cannot store goes to the dead-letter topic
            log.warning("dead-letter %s[%d]@%d: %s", topic, partition, offset, exc)
            key = msg.key()
            batch.dead_letters.append(dead_letter_record(
                STAGE, value, exc, topic=topic, partition=partition, offset=offset,
                key=key.encode() if isinstance(key, str) else key))
            return
        batch.n_rows += merge_rows(batch.rows, rows)
        key = msg.key()
        key_bytes = key.encode() if isinstance(key, str) else key
        batch.items.append(_Item(Origin(topic, partition, offset), key_bytes, value, rows))

    def _waited(self, msg: Message) -> float:
        return waited(msg, self.flush_s, time.time())

    def _write_isolating(self, batch: _Batch, items: list[_Item]) -> None:
        """Some record cannot be stored (a value its column type refuses): bisect the batch, write the
        halves that go in, dead-letter the single records that do not. Rows already written are
        re-written harmlessly (same keys); a findings record that fails leaves no ``report_nlp`` row,
        so its partial child rows never show in the latest views."""
        rows: Rows = {}
        for item in items:
            merge_rows(rows, item.rows)
        try:
            write_rows(self.client, rows)
            return
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(items) == 1:
                o = items[0].origin
                log.warning("dead-letter %s[%d]@%d: ClickHouse refuses it: %s",
                            o.topic, o.partition, o.offset, exc)
                batch.dead_letters.append(dead_letter_record(
                    STAGE, items[0].value, exc, topic=o.topic, partition=o.partition, offset=o.offset,
                    key=items[0].key))
                return
        mid = len(items) // 2
        self._write_isolating(batch, items[:mid])
        self._write_isolating(batch, items[mid:])

    def _send_dead_letters(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        assert self._producer is not None
        errors: list[str] = []

        def done(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(str(err))

        for rec in records:
            produce(self._producer, self.settings.topics.dead_letter, "dead_letter", rec.get("key"), rec,
                    on_delivery=done)
        left = self._producer.flush(30)
        if left or errors:
            raise RuntimeError(f"dead-letter delivery failed ({left} undelivered): {errors[:3]}")

    def _write_and_commit(self, consumer: Consumer, wait_for_commit: bool = False) -> None:
        batch = self._batch
        if not batch:
            return
        t0 = time.monotonic()
        try:
            write_rows(self.client, batch.rows, *self._insert_helpers())
        except Exception as exc:
            if not is_data_error(exc):
                raise
            self._write_isolating(batch, batch.items)
        t1 = time.monotonic()
        self._send_dead_letters(batch.dead_letters)
        self.stats.dead_letters += len(batch.dead_letters)
        batch.dead_letters = []  # sent: do not send again if only the commit is retried
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(batch.offsets.items())]
        try:
            # after the inserts; not waiting for the broker's ack is safe: an offset that never lands
            # only means re-delivery, which the ReplacingMergeTree keys absorb
            if wait_for_commit:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
            self._last_offsets = offsets
        except KafkaException as exc:
            if exc.args and exc.args[0].code() in _REBALANCE_ERRORS:
                log.warning("commit refused by a rebalance; the batch will be re-delivered (dedup by key)")
            else:
                raise
        log.debug("flushed %d messages, %d rows: insert %.0f ms, commit %.0f ms, age %.0f ms",
                  batch.n_messages, batch.n_rows, (t1 - t0) * 1000, (time.monotonic() - t1) * 1000,
                  (time.monotonic() - batch.first_at) * 1000)
        self.stats.messages += batch.n_messages
        self.stats.rows += batch.n_rows
        self.stats.flushes += 1
        self.stats.last_flush_time = time.time()
        self._batch = _Batch()

    def _flush(self, consumer: Consumer, stop: threading.Event, give_up_after_s: float | None = None,
               wait_for_commit: bool = False) -> None:
        attempt = 0
        paused: list[TopicPartition] = []
        started = time.monotonic()
        try:
            while True:
                try:
                    self._write_and_commit(consumer, wait_for_commit)
                    if attempt:
                        log.info("flush succeeded after %d failed attempts", attempt)
                    return
                except Exception as exc:
                    attempt += 1
                    self.stats.failed_attempts += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("flush attempt %d failed: %s", attempt, self.stats.last_error)
                    self._maybe_reopen(exc)
                    if not paused:
                        paused = consumer.assignment()
                        if paused:
                            consumer.pause(paused)
                    delay = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** (attempt - 1))
                    out_of_time = give_up_after_s is not None and time.monotonic() - started > give_up_after_s
                    if out_of_time or stop.wait(0) or self._wait(consumer, delay, stop):
                        log.warning("giving up on an uncommitted batch (it will be re-delivered)")
                        self._batch = _Batch()
                        return
        finally:
            if paused:
                try:
                    consumer.resume(paused)
                except KafkaException as exc:
                    log.warning("resume failed: %s", exc)

    def _wait(self, consumer: Consumer, delay: float, stop: threading.Event) -> bool:
        """Sleep ``delay`` while serving the consumer (paused partitions deliver nothing); True if stopped."""
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:
            msg = consumer.poll(min(left, 0.2))
            if msg is not None:
                self._add(msg)  # fetched before the pause took effect: keep it, it is in order
            if stop.is_set():
                return True
        return False

    def _maybe_reopen(self, exc: BaseException) -> None:
        if self._own_client and "closed" in str(exc).lower():
            self._drop_helpers()  # opened again with the next flush
            try:
                self.client = open_client(self.settings)
                log.info("reopened the ClickHouse client")
            except Exception as reopen_exc:
                log.warning("reopening the ClickHouse client failed: %s", reopen_exc)


def main() -> None:
    """Run the sink standalone until SIGTERM/SIGINT (``python -m sinks.clickhouse.sink``)."""
    import signal

    from radstream.config import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ClickHouseSink(load_settings()).run(stop)


if __name__ == "__main__":
    main()
