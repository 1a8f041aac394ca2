"""report_current (ddl/014): the latest version / NLP run of each accession, written by the sink, which the
*_latest views read; and the hash partitioning of the report tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.rows import NO_RUN, current_rank
from sinks.clickhouse.sink import write_records

from .factories import finding, findings, report

pytestmark = pytest.mark.integration


def q(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


def current(ch: Client, acc: str) -> tuple[Any, ...]:
    (row,) = q(
        ch,
        "SELECT report_version, has_nlp, nlp_version, status FROM report_current FINAL "
        f"WHERE accession = '{acc}'",
    )
    return row


def test_the_sinks_rank_is_the_tables_default(ch: Client) -> None:
    """Rows the migration fills from existing tables get the DEFAULT; rows the sink writes, its own rank."""
    cases = [
        (1, None),
        (3, None),
        (2, datetime(2026, 3, 2, 9, 0, 3, 123456, tzinfo=UTC)),
        (20260302090000, datetime(2030, 1, 1, tzinfo=UTC)),
    ]
    for i, (version, run) in enumerate(cases):
        ch.command(
            "INSERT INTO report_current (site, accession, report_version, processed_time, status, "
            f"has_nlp) VALUES ('s', 'R{i}', {version}, "
            f"'{(run or NO_RUN).strftime('%Y-%m-%d %H:%M:%S.%f')}', 'final', {run is not None})"
        )
    got = dict(q(ch, "SELECT accession, toString(rank) FROM report_current"))
    assert got == {f"R{i}": str(current_rank(v, run)) for i, (v, run) in enumerate(cases)}
    # a run outranks its bare version, a later version outranks every run of an earlier one
    assert current_rank(1, None) < current_rank(1, NO_RUN + timedelta(days=1)) < current_rank(2, None)


def test_the_current_row_follows_versions_and_runs_in_any_order(ch: Client) -> None:
    v1, v2 = report("C1", 1), report("C1", 2, status="corrected")
    nlp1 = findings(v1, [finding("nodule")])
    write_records(ch, "report_findings", [nlp1])  # the NLP result may land before its report row
    write_records(ch, "report_finalized", [v1])
    assert current(ch, "C1") == (1, True, "test-1", "final")
    write_records(ch, "report_finalized", [v2])
    assert current(ch, "C1") == (2, False, "", "corrected")  # waiting for its NLP: no stale rows
    assert q(ch, "SELECT count() FROM findings_latest") == [(0,)]
    write_records(ch, "report_findings", [nlp1])  # a late redelivery of the old result changes nothing
    write_records(ch, "report_finalized", [v1])
    assert current(ch, "C1") == (2, False, "", "corrected")
    write_records(ch, "report_findings", [findings(v2, [finding("mass")])])
    assert current(ch, "C1") == (2, True, "test-1", "corrected")
    assert q(ch, "SELECT concept FROM findings_latest") == [("mass",)]
    # a newer NLP version of the same report version wins, and the latest views follow it
    newer = findings(
        v2, [finding("mass"), finding("nodule")], processed_time=v2["status_time"] + timedelta(days=9)
    )
    newer["nlp_version"] = "test-2"
    write_records(ch, "report_findings", [newer])
    assert current(ch, "C1") == (2, True, "test-2", "corrected")
    assert q(ch, "SELECT concept FROM findings_latest ORDER BY concept") == [("mass",), ("nodule",)]
    assert q(ch, "SELECT latest_version FROM latest_versions") == [(2,)]


def test_redelivered_batches_count_once_in_the_latest_views(ch: Client) -> None:
    reps = [
        report(f"D{i}", 1, exam_time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i)) for i in range(5)
    ]
    nlp = [findings(r, [finding("nodule", size_mm=7.0)]) for r in reps]
    for _ in range(3):  # at-least-once: the same batch three times
        write_records(ch, "report_finalized", reps)
        write_records(ch, "report_findings", nlp)
    assert q(ch, "SELECT count() FROM report_current FINAL") == [(5,)]
    assert q(ch, "SELECT count() FROM findings_latest") == [(5,)]
    assert q(ch, "SELECT count() FROM nlp_latest") == [(5,)]
    assert q(ch, "SELECT count() FROM reports_latest") == [(5,)]
    ch.command("OPTIMIZE TABLE report_current FINAL")
    assert q(ch, "SELECT count() FROM report_current") == [(5,)]


def test_cancelled_latest_version_has_no_nlp_rows(ch: Client) -> None:
    v1 = report("E1", 1)
    write_records(ch, "report_finalized", [v1])
    write_records(ch, "report_findings", [findings(v1, [finding("nodule")])])
    cancel = report("E1", 2, status="cancelled")
    write_records(ch, "report_finalized", [cancel])
    write_records(ch, "report_findings", [findings(cancel, [])])
    assert current(ch, "E1") == (2, True, "test-1", "cancelled")
    assert q(ch, "SELECT count() FROM nlp_latest") == [(0,)]
    assert q(ch, "SELECT count() FROM findings_latest") == [(0,)]


def test_an_archive_of_many_years_loads_in_one_insert(ch: Client) -> None:
    """Partitioned by month, one insert of 15 years of reports failed (more than 100 partitions)."""
    start = datetime(2010, 1, 15, tzinfo=UTC)
    reps = [report(f"F{m}", 1, exam_time=start + timedelta(days=31 * m)) for m in range(180)]
    write_records(ch, "report_finalized", reps)
    assert q(ch, "SELECT count() FROM reports_latest") == [(180,)]
    parts = q(
        ch,
        "SELECT uniqExact(partition) FROM system.parts WHERE database = currentDatabase() "
        "AND table = 'reports' AND active",
    )
    assert parts[0][0] <= 8


def test_findings_current_has_the_rows_of_findings_latest(ch: Client) -> None:
    v1 = report("G1", 1)
    write_records(ch, "report_finalized", [v1, report("G2", 1)])
    write_records(ch, "report_findings", [findings(v1, [finding("nodule"), finding("mass", negated=True)])])
    v2 = report("G1", 2, status="corrected")
    write_records(ch, "report_finalized", [v2])
    write_records(ch, "report_findings", [findings(v2, [finding("mass")])])
    cols = "site, accession, report_version, nlp_version, finding_idx, concept, negated"
    latest = q(ch, f"SELECT {cols} FROM findings_latest ORDER BY accession, finding_idx")
    assert latest == [("default", "G1", 2, "test-1", 0, "mass", False)]
    assert q(ch, f"SELECT {cols} FROM findings_current ORDER BY accession, finding_idx") == latest
