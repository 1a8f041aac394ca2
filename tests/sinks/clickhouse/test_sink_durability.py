"""Acknowledge only what is durable (ddl/033, ddl/036): the sink commits its Kafka offsets once its INSERT
returned, so every table of the warehouse fsyncs a new part (its files and its directory) before the INSERT
returns, and a merge fsyncs the part it writes before that part replaces the inserted ones."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.cluster import cluster_statements
from sinks.clickhouse.sink import INSERT_ORDER, write_records

from .factories import finding, findings, report

pytestmark = pytest.mark.integration

FSYNC = ("fsync_after_insert = 1", "fsync_part_directory = 1", "min_rows_to_fsync_after_merge = 1")


def test_every_table_of_the_warehouse_fsyncs_its_new_parts(ch: Client) -> None:
    """A later migration's new or re-keyed table must say the settings itself: this fails until it does."""
    tables = {str(n): str(e) for n, e in ch.query(
        "SELECT name, engine_full FROM system.tables WHERE database = 'rs' AND engine LIKE '%MergeTree'"
    ).result_rows}
    assert set(INSERT_ORDER) <= set(tables)  # every table the sink writes is among them
    assert {n for n, engine in tables.items() if not all(s in engine for s in FSYNC)} == set()
    # and `db migrate --cluster` gives the replicated tables the same settings
    replicated = [s for s in cluster_statements(ch, "rs", "warehouse") if "ENGINE = Replicated" in s]
    assert len(replicated) == len(tables)
    assert [s[:80] for s in replicated if not all(x in s for x in FSYNC)] == []


def _syncs(ch: Client, events: tuple[str, ...] = ("FileSync", "DirectorySync")) -> int:
    return int(ch.query("SELECT sum(value) FROM system.events WHERE event IN {e:Array(String)}",
                        parameters={"e": list(events)}).result_rows[0][0] or 0)


def test_the_sinks_native_insert_fsyncs_and_its_rows_are_there(ch: Client) -> None:
    before = _syncs(ch)
    reps = [report(f"A{i}", 1) for i in range(3)]
    write_records(ch, "report_finalized", reps)
    write_records(ch, "report_findings", [findings(r, [finding("nodule", size_mm=4.0)]) for r in reps])
    assert _syncs(ch) > before  # the engine fsync'd the new parts (0 with ClickHouse's defaults)
    assert ch.query("SELECT count() FROM reports FINAL").result_rows == [(3,)]
    assert ch.query("SELECT count() FROM findings_latest").result_rows == [(3,)]


def test_a_merge_fsyncs_the_files_of_the_part_it_writes(ch: Client) -> None:
    """Without ddl/036 a merge syncs only the part's directory: FileSync stays where it was."""
    parts = ("SELECT count(), uniqExact(partition) FROM system.parts "
             "WHERE database = 'rs' AND table = 'reports' AND active")
    for _ in range(2):  # two INSERTs of one report each: two parts of one partition
        write_records(ch, "report_finalized", [report("M1", 1)])
    assert ch.query(parts).result_rows == [(2, 1)]
    before = _syncs(ch, ("FileSync",))
    ch.command("OPTIMIZE TABLE reports FINAL")
    assert ch.query(parts).result_rows == [(1, 1)]  # merged
    assert _syncs(ch, ("FileSync",)) > before


def test_the_embeddings_table_made_outside_the_migrations_fsyncs_too(ch: Client) -> None:
    """``report_embeddings`` is created by its writer (sinks/clickhouse/embeddings.py), also over a table
    an older version made without the settings."""
    from sinks.clickhouse.embeddings import DURABLE, TABLE, ddl, ensure_table

    old = ddl("rs", vector_index=False).replace(f"SETTINGS {DURABLE}", "")
    ch.command(old)
    ensure_table(ch, "rs")
    engine = ch.query("SELECT engine_full FROM system.tables WHERE database = 'rs' AND name = {t:String}",
                      parameters={"t": TABLE}).result_rows[0][0]
    assert all(s in engine for s in FSYNC), engine
