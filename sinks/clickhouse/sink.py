"""The ClickHouse sink: Kafka topics -> warehouse tables, batched, at-least-once, idempotent.

A ``Handler`` of the streams layer's one consumer loop (``streams.loop``), which polls, commits,
pauses, retries and dead-letters for it:

* Consumes the reports, findings, retrieval request/status, received-instance and dead-letter topics,
  maps each record to rows (``rows.py``) and inserts one block per table when
  ``ClickHouseConfig.batch_rows`` rows are buffered or ``flush_ms`` (at most 500 ms) passed since the
  oldest buffered message was produced (whichever comes first). A findings message counts from when
  its report was produced (the ``radstream-origin-ms`` header the NLP agent sets), so the NLP step's
  time is part of the same 500 ms, not added to it.
* Offsets are committed by the loop only after every insert of the batch succeeded (and dead letters
  were acknowledged by Kafka). A crash before the commit re-delivers the batch.
* Idempotency: every table is a ReplacingMergeTree whose sort key is the natural key of a row, so
  re-delivered or replayed records collapse into one row at read time (FINAL / the views / ``radstream
  sql``) and in background merges. No insert-deduplication tokens: batch boundaries differ after a
  restart, so a token would not match anyway.
* ClickHouse failing: the loop pauses the partitions and retries the flush with exponential backoff;
  nothing is committed meanwhile.
* Undecodable or unmappable messages go to the dead-letter topic with the reason; the loop goes on.
  So does a decodable record whose values a column refuses (clickhouse-connect ``DataError``): the
  batch is bisected until that record is alone, the rest is written, nothing stalls.
"""

from __future__ import annotations

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

from sinks.clickhouse import metrics
from sinks.clickhouse.client import client_like, open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.maintenance import Maintenance
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.rows import (
    COLUMNS,
    TABLES_OF,
    Origin,
    Rows,
    for_identified_project,
    merge_rows,
    restricted_instances,
    rows_for,
    rows_for_many,
)
from streams import serde
from streams.config import KafkaConfig, TopicsConfig
from streams.handlers import origin_ms
from streams.loop import Acks, ConsumerLoop, Handler, LoopConfig, Record
from streams.topics import topic_specs

log = logging.getLogger("radstream.sink.clickhouse")

STAGE = "clickhouse-sink"
PROJECTS_REFRESH_S = 5.0  # at most this often a status event's unknown project sends the sink to `projects`
# children before their header row (report_nlp), so a reader never sees a header without its rows; the
# pointer to the latest run (report_current) after both
INSERT_ORDER = ("report_text_original", "report_versions", "reports", "report_search", "sections", "findings",
                "measurements",
                "recommendations",
                "assessments", "critical_results", "chest_labels", "report_nlp", "report_current",
                "retrieval_requests", "retrieval_events", "retrieval_events_identified", "received_instances",
                "received_instances_identified", "deid_map", "projects", "quarantine", "dead_letters",
                "audit_log")

def static_instance_id(ch: ClickHouseConfig) -> str:
    """Kafka static group membership for an embedded store: exactly one process can own a chDB store,
    so one stable member id per (host, store) lets a restarted sink take over its partitions at once
    instead of waiting for the dead member's session to time out. Server mode: dynamic membership
    (several sinks may share the load). ``sink_instance_id`` other than "auto" overrides ('' = off).
    """
    if ch.sink_instance_id != "auto":
        return ch.sink_instance_id
    if not ch.embedded:
        return ""
    digest = hashlib.sha1(f"{socket.gethostname()}|{ch.url}".encode()).hexdigest()[:12]
    return f"clickhouse-sink-{digest}"


def is_data_error(exc: BaseException) -> bool:
    """A record's values do not fit the table (retrying cannot help), as opposed to ClickHouse being
    unavailable. clickhouse-connect raises DataError while serialising a block."""
    return isinstance(exc, DataError | OverflowError | struct.error)


def waited(rec: Record, flush_s: float, now: float) -> float:
    """How long a live record has already waited, so the flush deadline counts from its production
    rather than from when the sink got to it (e.g. during its previous insert). A derived record
    (findings) counts from its source's production (``ORIGIN_HEADER``: the report, so the NLP step
    spends the same budget), or from its own when the source is older than the flush interval.
    Backlog (older than the flush interval: a replay, a catch-up) counts from now (0), so that batches
    stay large."""
    own = now - rec.timestamp_ms / 1000.0 if rec.timestamp_ms is not None else None
    if own is not None and not 0.0 < own < flush_s:
        return 0.0  # backlog (its source is older still) or a clock ahead: no header to read
    origin = origin_ms(rec.headers)
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
    """Write decoded records of one contract directly (no Kafka). Idempotent like the sink.

    ``client`` must have the warehouse database as its default (``open_client`` does that).
    Returns the number of table rows written.
    """
    if contract not in TABLES_OF:
        raise ValueError(f"no warehouse mapping for contract {contract!r}")
    if contract == "retrieval_status":
        known = deidentified_projects(client)
        rows: Rows = {}
        for rec in records:
            one = rows_for(contract, rec)
            merge_rows(rows, one if rec["project_id"] in known else for_identified_project(one))
        return write_rows(client, rows)
    if contract == "received_instance":
        known = deidentified_projects(client)
        rows = {}
        for rec in records:
            one = rows_for(contract, rec)
            merge_rows(rows, one if rec["project_id"] in known else restricted_instances(one))
        return write_rows(client, rows)
    return write_rows(client, rows_for_many(contract, records))


# every registration of the project is de-identified without "Retain UIDs": the only projects whose
# instances and status events analysts get whole. A project once registered identified or with "Retain
# UIDs" stays private for good: an instance or a status event of that time, delivered late or again,
# carries the hospital's UIDs, and nothing in it says so
_KEYED_EXPR = "countIf(identified OR retain_uids) = 0"
_KEYED = f"SELECT project_id FROM projects GROUP BY project_id HAVING {_KEYED_EXPR}"


def project_states(client: Client) -> dict[str, bool]:
    """Per registered project: True if every registration of it is de-identified without "Retain UIDs"."""
    res = client.query(f"SELECT project_id, {_KEYED_EXPR} FROM projects GROUP BY project_id")
    return {str(pid): bool(keyed) for pid, keyed in res.result_rows}


def deidentified_projects(client: Client) -> set[str]:
    """The projects every registration of which is de-identified without "Retain UIDs" (``_KEYED``). A
    status event of any other project names the PACS's UIDs (``rows.for_identified_project``; the DICOM
    worker keys them only for such projects); an instance of any other project (identified, "Retain
    UIDs" now or before, or not registered in the warehouse yet) goes to the stewards' table
    (``rows.restricted_instances``; ``release_instances`` moves it once the project is known). This is the
    second condition for an instance: one that says it kept the hospital's UIDs goes to the stewards'
    table whatever its project's registrations say (``rows.received_instance_rows``)."""
    return {pid for pid, keyed in project_states(client).items() if keyed}


_INSTANCE_KEY = "(project_id, study_instance_uid, series_instance_uid, sop_instance_uid)"


def release_instances(client: Client, projects: Iterable[str] | None = None, *, wait: bool = False) -> int:
    """Move the de-identified instances that went to the stewards' ``received_instances_identified`` only
    because their project was not known yet (its registration reached the warehouse after them) to the
    analysts' ``received_instances``, for the projects every registration of which is de-identified
    without "Retain UIDs" (``projects``: only these; None: all). A row whose instance says it kept its
    original UIDs (``uids_retained``, ddl/030) is never moved. Returns the number of rows copied.

    Idempotent: a row already in the analysts' table is not copied again, and only rows that are there are
    deleted from the stewards' (an instance held back meanwhile stays until the next call). The DELETE is a
    mutation (applied in the background on a server; ``wait`` waits for it). On a cluster the stewards'
    table is Distributed and cannot be deleted from: the copy is made and the stewards' row stays (logged).
    """
    # never a row whose instance says it kept the hospital's UIDs (v4), whatever the registrations say
    cond = f"deidentified AND NOT ifNull(uids_retained, false) AND project_id IN ({_KEYED})"
    params: dict[str, Any] = {}
    if projects is not None:
        params["p"] = sorted(set(projects))
        if not params["p"]:
            return 0
        cond += " AND project_id IN %(p)s"
    candidates = f"received_instances_identified WHERE {cond}"
    if not int(client.query(f"SELECT count() FROM {candidates}", parameters=params).result_rows[0][0]):
        return 0  # the usual case: nothing held back
    # the analysts' rows of the candidates only (a set of every instance of a project could be large)
    in_analysts = (f"{_INSTANCE_KEY} IN (SELECT {_INSTANCE_KEY} FROM received_instances WHERE {cond} AND "
                   f"sop_instance_uid IN (SELECT sop_instance_uid FROM {candidates}))")
    n = int(client.query(f"SELECT count() FROM (SELECT DISTINCT {_INSTANCE_KEY} FROM {candidates} AND NOT "
                         f"{in_analysts})", parameters=params).result_rows[0][0])
    if n:
        cols = ", ".join(COLUMNS["received_instances"])
        # FINAL: one row per instance (a replayed instance may be there twice until merged)
        client.command(f"INSERT INTO received_instances ({cols}) SELECT {cols} FROM "
                       f"received_instances_identified FINAL WHERE {cond} AND NOT {in_analysts}",
                       parameters=params)
    leftover = int(client.query(f"SELECT count() FROM received_instances_identified WHERE {cond} AND "
                                f"{in_analysts}", parameters=params).result_rows[0][0])
    if leftover:
        try:
            client.command(f"ALTER TABLE received_instances_identified DELETE WHERE {cond} AND {in_analysts}",
                           parameters=params, settings={"mutations_sync": 1} if wait else None)
        except Exception:  # noqa: BLE001 - the copy is made; a duplicate with stewards leaks nothing
            log.warning("%d released instances are in the analysts' table, but could not be deleted from "
                        "received_instances_identified (a Distributed table on a cluster?)", leftover,
                        exc_info=True)
    if n:
        log.info("released %d de-identified instances of projects registered after them to analysts", n)
    return n


@dataclass
class _Item:
    record: Record
    rows: Rows


@dataclass
class _Batch:
    rows: Rows = field(default_factory=dict)
    n_rows: int = 0
    first_at: float = 0.0
    items: list[_Item] = field(default_factory=list)  # per message, to isolate a record ClickHouse refuses

    def __bool__(self) -> bool:
        return bool(self.items)


class ClickHouseSink(Handler):
    """Decoded records -> rows -> batched inserts; plugs into ``streams.loop.ConsumerLoop``
    (``warehouse_loop`` builds that loop).

    ``client``: an open client to use (default: ``open_client(ch)``). Migrations are applied on
    construction. ``self.client`` stays usable from other threads for queries (chDB clients lock).
    """

    def __init__(self, ch: ClickHouseConfig, topics: TopicsConfig, client: Client | None = None) -> None:
        self.ch = ch
        self._own_client = client is None
        self.client: Client = client if client is not None else open_client(ch)
        migrate(self.client, ch.database)
        # the projects analysts get whole (every registration keyed) and those once registered otherwise,
        # from the warehouse and this sink's own batches; a project in neither is not known yet
        self._deidentified: set[str] = set()
        self._private: set[str] = set()
        self._unknown_held: set[str] = set()  # not known when an instance of it went to stewards
        # projects that became known as de-identified: their held-back instances move to analysts after
        # the next flush (``release_instances``); None = every project (once, at the first flush)
        self._to_release: set[str] | None = None
        for pid, keyed in project_states(self.client).items():
            self._register(pid, keyed)
        self._projects_read = time.monotonic()
        self.contracts = {spec.name: spec.contract for spec in topic_specs(topics)
                          if spec.contract in TABLES_OF}
        # the reports topic carries the original text: only the restricted table gets it
        self.mappings = {**self.contracts, topics.reports: "report_original"}
        metrics.started(STAGE, self.mappings)
        self.batch_rows = max(1, ch.batch_rows)
        self.flush_s = max(0.01, min(ch.flush_ms, 500) / 1000.0)
        self.rows_written = 0
        self._batch = _Batch()
        self._acks: Acks | None = None
        self._helpers: list[Client] = []
        self._pool: ThreadPoolExecutor | None = None
        self.maintenance = Maintenance(ch.database, ch.optimize_interval_s)

    def _insert_helpers(self) -> tuple[list[Client], ThreadPoolExecutor | None]:
        """More clients on the store for concurrent inserts (opened at the first flush)."""
        want = max(1, self.ch.insert_threads) - 1
        if want and self._pool is None:
            self._helpers = [client_like(self.client) for _ in range(want)]
            self._pool = ThreadPoolExecutor(want + 1, thread_name_prefix="clickhouse-insert")
        return self._helpers, self._pool

    def _drop_helpers(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for helper in self._helpers:
            try:
                helper.close()
            except Exception:  # noqa: BLE001 - closing a broken helper: nothing left to release
                log.debug("closing an insert helper failed", exc_info=True)
        self._helpers = []

    def close(self) -> None:
        """Close the ClickHouse clients and the read-only clients of the same store (after the loop)."""
        from sinks.clickhouse.client import client_url
        from sinks.clickhouse.query import close_readonly_clients

        self._drop_helpers()
        close_readonly_clients(client_url(self.client))
        self.client.close()

    # -- the loop's Handler ----------------------------------------------------------------------------
    def add(self, records: Sequence[Record], acks: Acks) -> None:
        self._acks = acks
        now = time.time()
        batch = self._batch
        self._learn_projects(records)
        self._refresh_projects()
        for rec in records:
            contract = self.contracts.get(rec.topic, "")
            try:
                decoded = serde.decode(contract, rec.value)
                rows = rows_for(self.mappings.get(rec.topic, contract), decoded,
                                Origin(rec.topic, rec.partition, rec.offset))
                if contract == "retrieval_status" and not self._is_deidentified(decoded["project_id"]):
                    rows = for_identified_project(rows)  # identified, or not known yet: private
                # an instance that carries the hospital's UIDs (``deidentified`` false, ``uids_retained``
                # true) is the stewards' by its own content already (``rows_for``); the registrations may
                # only hold back more, never release it
                if contract == "received_instance" and not self._is_deidentified(decoded["project_id"]):
                    if rows["received_instances"] and decoded["project_id"] not in self._private:
                        self._unknown_held.add(decoded["project_id"])  # released once the project is known
                    rows = restricted_instances(rows)  # identified, retains UIDs, or not known yet: private
            except Exception as exc:  # anything we cannot store goes to the dead-letter topic
                acks.dead_letter(rec, exc)
                continue
            due = time.monotonic() - waited(rec, self.flush_s, now)  # counts from the oldest message
            batch.first_at = min(batch.first_at, due) if batch else due
            batch.n_rows += merge_rows(batch.rows, rows)
            batch.items.append(_Item(rec, rows))

    def _is_deidentified(self, project_id: str) -> bool:
        return project_id in self._deidentified

    def _refresh_projects(self) -> None:
        """Read the warehouse's registrations again, at most every ``PROJECTS_REFRESH_S``: another sink
        may have written one, of a project not known here yet or of one registered again as identified.
        A failure keeps what is known (a project not known stays private) and is tried again later; it
        never fails a record."""
        if time.monotonic() < self._projects_read + PROJECTS_REFRESH_S:
            return
        self._projects_read = time.monotonic()
        try:
            states = project_states(self.client)
        except Exception:  # noqa: BLE001 - the warehouse is down: the flush will say so
            log.warning("reading the project registrations failed; tried again in %.0f s",
                        PROJECTS_REFRESH_S, exc_info=True)
            return
        for pid, keyed in states.items():
            self._register(pid, keyed)

    def _register(self, project_id: str, keyed: bool) -> None:
        """A registration of ``project_id``. One that is identified or retains UIDs makes the project
        private for good (``_KEYED``)."""
        self._unknown_held.discard(project_id)  # known now, either way
        if not keyed:
            self._private.add(project_id)
            self._deidentified.discard(project_id)
        elif project_id not in self._private and project_id not in self._deidentified:
            self._deidentified.add(project_id)
            self._release({project_id})

    def tick(self) -> None:
        """Between batches: a project whose instances went to stewards because it was not known may have
        been registered through another sink since; its instances are released without waiting for more
        of its records."""
        if self._batch:
            return
        if self._unknown_held:
            self._refresh_projects()
        if self._to_release:
            self._release_held()

    def _release(self, projects: set[str]) -> None:
        if self._to_release is not None:
            self._to_release |= projects

    def _learn_projects(self, records: Sequence[Record]) -> None:
        """Which projects are de-identified, from the registrations of this batch first (a status event
        follows its project's registration, but may come in the same batch from another topic)."""
        for rec in records:
            if self.contracts.get(rec.topic) == "project_registration":
                try:
                    reg = serde.decode("project_registration", rec.value)
                except Exception:  # noqa: BLE001 - add() dead-letters it
                    continue
                self._register(reg["project_id"], not reg["identified"] and not reg.get("retain_uids"))

    def due(self) -> float | None:
        return self._batch.first_at + self.flush_s if self._batch else None

    def full(self) -> bool:
        return self._batch.n_rows >= self.batch_rows

    def flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        t0 = time.monotonic()
        try:
            write_rows(self.client, batch.rows, *self._insert_helpers())
        except Exception as exc:
            if not is_data_error(exc):
                raise
            self._write_isolating(batch.items)
        log.debug("flushed %d messages, %d rows: insert %.0f ms, age %.0f ms", len(batch.items),
                  batch.n_rows, (time.monotonic() - t0) * 1000, (time.monotonic() - batch.first_at) * 1000)
        self.rows_written += batch.n_rows
        metrics.flushed(STAGE, batch.rows, [item.record for item in batch.items], self.mappings)
        self._batch = _Batch()
        self._release_held()
        try:
            self.maintenance.step(self.client)
        except Exception:  # noqa: BLE001 - the merge only makes reads cheaper; ingestion goes on
            log.warning("warehouse maintenance: a merge failed; the next round tries again", exc_info=True)

    def _release_held(self) -> None:
        """Instances held back while their project was unknown go to analysts once it is known (the
        registration is written by now: this flush, or the warehouse's). Idempotent; a failure is tried
        again after the next flush."""
        if self._to_release == set():
            return
        try:
            release_instances(self.client, self._to_release)
            self._to_release = set()
        except Exception:  # noqa: BLE001 - the rows stay with stewards meanwhile: nothing leaks
            log.warning("releasing held-back instances failed; the next flush tries again", exc_info=True)

    def abandon(self) -> None:
        self._batch = _Batch()

    def on_revoke(self, partitions: Sequence[tuple[str, int]]) -> None:
        self._batch = _Batch()  # flushed by the loop before the revoke, or abandoned

    def on_flush_error(self, exc: BaseException) -> None:
        if self._own_client and "closed" in str(exc).lower():
            self._drop_helpers()  # opened again with the next flush
            try:
                self.client = open_client(self.ch)
                log.info("reopened the ClickHouse client")
            except Exception as reopen_exc:
                log.warning("reopening the ClickHouse client failed: %s", reopen_exc)

    def _write_isolating(self, items: list[_Item]) -> None:
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
                assert self._acks is not None
                self._acks.dead_letter(items[0].record, exc)  # ClickHouse refuses its values
                return
        mid = len(items) // 2
        self._write_isolating(items[:mid])
        self._write_isolating(items[mid:])


def warehouse_loop(kafka: KafkaConfig, topics: TopicsConfig, sink: ClickHouseSink, *,
                   group_id: str | None = None,
                   consumer_conf: Mapping[str, Any] | None = None) -> ConsumerLoop:
    """The consumer loop that feeds ``sink`` from every topic the warehouse stores."""
    conf: dict[str, Any] = {"fetch.wait.max.ms": 50}
    instance = static_instance_id(sink.ch)
    if instance:
        conf["group.instance.id"] = instance
    conf.update(consumer_conf or {})
    return ConsumerLoop(kafka, LoopConfig(
        group_id=group_id or f"{kafka.consumer_group}.clickhouse-sink", topics=sorted(sink.contracts),
        stage=STAGE, dead_letter_topic=topics.dead_letter, max_batch=1000, conf=conf), sink)
