"""report_search (ddl/018): every report version's own search columns and de-identified text, written by
the sink beside report_versions and filled by the migration for an existing store."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from sinks.clickhouse.rows import SEARCH_COLUMNS, Rows, merge_rows, rows_for_many
from sinks.clickhouse.sink import write_records, write_rows

from .factories import BASE_TIME, ddl_until, report

pytestmark = pytest.mark.integration

COLS = ", ".join(SEARCH_COLUMNS)


def records() -> list[dict[str, Any]]:
    """Versions as they come: a correction in another month and modality (a new row under its own
    key), an addendum in the same month, a cancellation, a single version."""
    f1, g1, h1, k1 = report("F1", text="Small effusion."), report("G1"), report("H1"), report("K1")
    f2 = report("F1", 2, status="corrected", modality="MR", exam_time=BASE_TIME + timedelta(days=40),
                text="No effusion.")
    g2 = report("G1", 2, status="addendum", text="FINDINGS: normal. ADDENDUM: no change.")
    h2 = report("H1", 2, status="cancelled")
    return [f1, f2, g1, g2, h1, h2, k1]


def search_rows(ch: Client) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in ch.query(f"SELECT {COLS} FROM report_search FINAL "
                                       "ORDER BY accession, version").result_rows]


def version_rows(ch: Client) -> list[tuple[Any, ...]]:
    """The same columns of report_versions: what the search must hold, version by version."""
    return [tuple(r) for r in ch.query(f"SELECT {COLS} FROM report_versions FINAL "
                                       "ORDER BY accession, version").result_rows]


def test_the_sink_writes_every_version_and_replays_add_no_rows(ch: Client) -> None:
    reps = records()
    for batch in (reps, list(reversed(reps)), reps):  # at-least-once, in the other order too
        write_records(ch, "report_finalized", batch)
    got = search_rows(ch)
    assert len(got) == 7 and got == version_rows(ch)
    f = [r for r in got if r[1] == "F1"]
    assert [(r[2], r[5], r[3]) for r in f] == [(1, "CT", "final"), (2, "MR", "corrected")]
    ch.command("OPTIMIZE TABLE report_search FINAL")
    assert ch.query("SELECT count() FROM report_search").result_rows == [(7,)]


def test_the_original_text_never_reaches_the_search(ch: Client) -> None:
    """report_original (the identifying text, stewards' table) writes report_text_original only."""
    rep = report("O1", text="FINDINGS: de-identified.")
    write_records(ch, "report_original", [{**rep, "text": "FINDINGS: Mr Jones, MRN 123."}])
    write_records(ch, "report_finalized", [rep])
    assert ch.query("SELECT text FROM report_search").result_rows == [("FINDINGS: de-identified.",)]
    assert ch.query("SELECT count() FROM report_search WHERE text LIKE '%Jones%'").result_rows == [(0,)]


def test_a_store_from_before_018_is_filled_by_the_migration(tmp_path: Path) -> None:
    """A store migrated up to 017 and written by the sink of then (no report_search rows) gets a row for
    every version it holds, the rows the sink writes now."""
    old_ddl = ddl_until(tmp_path / "ddl", 17)
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", old_ddl)
        rows: Rows = {}
        merge_rows(rows, rows_for_many("report_finalized", records()))
        now = rows.pop("report_search")
        write_rows(client, rows)
        write_rows(client, rows)  # duplicates of the old tables collapse in the copy too
        assert "018_report_search" in migrate(client, "rs")
        naive = [tuple(v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in r) for r in now]
        assert search_rows(client) == sorted(naive) == version_rows(client)
        assert client.query("SELECT count() FROM report_search").result_rows == [(7,)]  # merged
        assert migrate(client, "rs") == []
    finally:
        close_readonly_clients()
        client.close()
