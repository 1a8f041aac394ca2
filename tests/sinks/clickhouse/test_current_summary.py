"""report_current's arrays (ddl/015): the current NLP run's findings, assessments, critical results and
recommendations beside its row, written by the sink, and filled by the migration for an existing store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from sinks.clickhouse.rows import COLUMNS, Rows, merge_rows, rows_for_many
from sinks.clickhouse.sink import write_records, write_rows

from .factories import ddl_until, finding, findings, report

pytestmark = pytest.mark.integration

SUMMARY = ("report_version", "nlp_version", "status", "has_nlp", "body_region", "finding_concepts",
           "finding_negated", "finding_uncertain", "finding_size_mm", "assessment_systems",
           "assessment_categories", "critical_concepts", "recommendation_kinds", "recommendation_days")
FOLLOW_UP = {"kind": "imaging_followup", "text": "CT in 3 months", "start": 0, "end": 5, "modality": "CT",
             "interval_days_min": 90, "interval_days_max": 120, "guideline": ""}


def records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Reports and NLP results with what the current row must follow: a correction, a newer NLP
    version, a cancellation, a version still waiting for its NLP result."""
    b1, c1, d1, e1 = report("B1"), report("C1"), report("D1"), report("E1")
    c2 = report("C1", 2, status="corrected")
    d2 = report("D1", 2, status="cancelled")
    e2 = report("E1", 2, status="corrected")  # no NLP result yet
    nlp = [
        findings(b1, [finding("nodule", size_mm=7.0), finding("effusion", negated=True),
                      finding("mass", uncertain=True)],
                 assessments=[("BI-RADS", "4A"), ("Lung-RADS", "2")], critical=["pneumothorax"],
                 recommendations=[FOLLOW_UP]),
        findings(c1, [finding("nodule", size_mm=12.0)]),
        findings(c2, [finding("nodule", negated=True)]),
        findings(d1, [finding("mass")]),
        findings(d2, []),
        findings(e1, [finding("fracture")]),
    ]
    newer = findings(b1, [finding("nodule", size_mm=7.5)],
                     processed_time=b1["status_time"] + timedelta(days=3))
    newer["nlp_version"] = "test-2"
    return [b1, c1, c2, d1, d2, e1, e2], [*nlp, newer]


def expected(reps: list[dict[str, Any]], nlp: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """The sink's own mapping, the highest rank per accession (what FINAL must show)."""
    rows: Rows = {}
    merge_rows(rows, rows_for_many("report_finalized", reps))
    merge_rows(rows, rows_for_many("report_findings", nlp))
    cols = COLUMNS["report_current"]
    best: dict[str, list[Any]] = {}
    for row in rows["report_current"]:
        acc, rank = row[cols.index("accession")], row[cols.index("rank")]
        if acc not in best or rank > best[acc][cols.index("rank")]:
            best[acc] = row
    return {acc: tuple(row[cols.index(c)] for c in SUMMARY) for acc, row in best.items()}


def current(ch: Client) -> dict[str, tuple[Any, ...]]:
    got = ch.query(f"SELECT accession, {', '.join(SUMMARY)} FROM report_current FINAL").result_rows
    return {str(r[0]): tuple(r[1:]) for r in got}


def test_the_sink_writes_the_current_runs_arrays_and_replays_add_no_rows(ch: Client) -> None:
    reps, nlp = records()
    for _ in range(3):  # at-least-once: every batch again, in the other order too
        write_records(ch, "report_findings", nlp)
        write_records(ch, "report_finalized", reps)
    want = expected(reps, nlp)
    assert current(ch) == want
    assert want["B1"][1] == "test-2" and want["B1"][5] == ["nodule"]  # the newer NLP version
    assert want["C1"][5:7] == (["nodule"], [True])  # the correction, not the 12 mm of version 1
    assert want["E1"][3] is False and want["E1"][5] == []  # waiting for its NLP: no stale arrays
    ch.command("OPTIMIZE TABLE report_current FINAL")
    assert ch.query("SELECT count() FROM report_current").result_rows == [(4,)]
    assert current(ch) == want


def test_a_store_from_before_015_is_filled_by_the_migration(tmp_path: Path) -> None:
    """A store migrated up to 014 and written by the sink of then (report_current without the arrays)
    gets the arrays the sink writes now, for every accession."""
    old_ddl = ddl_until(tmp_path / "ddl", 14)
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", old_ddl)
        reps, nlp = records()
        rows: Rows = {}
        merge_rows(rows, rows_for_many("report_finalized", reps))
        merge_rows(rows, rows_for_many("report_findings", nlp))
        old_cols = ["site", "accession", "report_version", "processed_time", "nlp_version", "status",
                    "has_nlp", "rank"]
        assert list(COLUMNS["report_current"][:8]) == old_cols
        cur = rows.pop("report_current")
        rows.pop("report_search")  # ddl/018, after this store's time
        write_rows(client, rows)
        client.insert("report_current", [r[:8] for r in cur], column_names=old_cols)
        assert migrate(client, "rs")[0] == "015_current_summary"
        assert current(client) == expected(reps, nlp)
        assert client.query("SELECT count() FROM report_current").result_rows == [(4,)]  # merged
        assert migrate(client, "rs") == []
    finally:
        close_readonly_clients()
        client.close()
