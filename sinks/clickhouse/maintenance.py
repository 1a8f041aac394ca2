"""Keeping the FINAL reads cheap: merge each partition of the tables the views read with ``FINAL``
into one part, a partition at a time.

Every table is a ReplacingMergeTree (ddl/001), and the latest views and ``radstream sql`` (``final=1``)
read them with ``FINAL``, which merges the parts of a partition at query time. ClickHouse's background
merges stop at a few parts per partition (after a 1M-report backfill: 4-6 per partition, 8 parts of
``findings``); a partition of one part is read without that merge. At 1M reports the documented
analyst queries need 20-35% less CPU on a store merged this way (docs/benchmarks.md, "Warehouse at
scale"). ``OPTIMIZE ... PARTITION ID ... FINAL`` is ClickHouse's own merge; it also drops the replayed
duplicates the views would otherwise hide at each query.

The sink runs it (``Maintenance.step`` after a flush: one partition per step, so that the consumer
loop is held at most one partition's merge at a time), every ``clickhouse.optimize_interval_s``;
``radstream db optimize`` runs a whole round at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.cluster import LOCAL_SUFFIX

log = logging.getLogger("radstream.sink")

# the tables the views and the retrieval queue read with FINAL (ddl/*.sql; a test keeps this complete)
FINAL_TABLES: tuple[str, ...] = (
    "reports", "report_versions", "report_current", "report_nlp", "report_search",
    "findings", "measurements", "recommendations", "assessments", "critical_results", "chest_labels",
    "sections", "retrieval_events", "retrieval_requests", "received_instances", "concept",
)


@dataclass(frozen=True)
class Partition:
    table: str
    partition_id: str
    parts: int


def partitions_to_merge(client: Client, database: str,
                        tables: Sequence[str] = FINAL_TABLES) -> list[Partition]:
    """The partitions of ``tables`` (and of their ``_local`` tables of the cluster layout) that have more
    than one active part, largest part count first."""
    names = [*tables, *(f"{t}{LOCAL_SUFFIX}" for t in tables)]
    rows = client.query(
        "SELECT table, partition_id, count() AS n FROM system.parts "
        "WHERE database = {db:String} AND active AND has({tables:Array(String)}, table) "
        "GROUP BY table, partition_id HAVING n > 1 ORDER BY n DESC, table, partition_id",
        parameters={"db": database, "tables": names},
    ).result_rows
    return [Partition(str(t), str(p), int(n)) for t, p, n in rows]


def merge_partition(client: Client, database: str, part: Partition) -> None:
    """One partition into one part (blocks until done)."""
    pid = part.partition_id.replace("\\", "\\\\").replace("'", "\\'")
    client.command(f"OPTIMIZE TABLE {database}.{part.table} PARTITION ID '{pid}' FINAL")


def optimize(client: Client, database: str, tables: Sequence[str] = FINAL_TABLES) -> list[Partition]:
    """A whole round: every partition of ``tables`` with more than one part, merged. Returns them."""
    done = partitions_to_merge(client, database, tables)
    for part in done:
        merge_partition(client, database, part)
    return done


class Maintenance:
    """The sink's schedule: a round every ``interval_s`` (0: never), one partition per ``step``.

    The first round starts ``interval_s`` after the sink starts, so that a restart does not start one."""

    def __init__(self, database: str, interval_s: float, tables: Sequence[str] = FINAL_TABLES) -> None:
        self.database, self.interval_s, self.tables = database, interval_s, tuple(tables)
        self.next_round = time.monotonic() + interval_s
        self.todo: list[Partition] = []
        self.merged = 0  # partitions merged since start

    def step(self, client: Client) -> Partition | None:
        """Merge the next partition of the round when one is due; returns it (None: nothing due)."""
        if self.interval_s <= 0:
            return None
        if not self.todo:
            if time.monotonic() < self.next_round:
                return None
            self.next_round = time.monotonic() + self.interval_s
            self.todo = partitions_to_merge(client, self.database, self.tables)
            if not self.todo:
                return None
            log.info("warehouse maintenance: merging %d partitions, one per flush", len(self.todo))
        part = self.todo.pop(0)
        t0 = time.monotonic()
        try:
            merge_partition(client, self.database, part)
        except Exception:
            self.todo.clear()  # the next round, not the next flush, tries again
            raise
        self.merged += 1
        log.info("warehouse maintenance: %s partition %s (%d parts) merged in %.1f s", part.table,
                 part.partition_id, part.parts, time.monotonic() - t0)
        return part
