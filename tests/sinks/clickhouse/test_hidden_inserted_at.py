"""inserted_at of the analysts' report tables (ddl/026, roles/analyst.json denied_columns): the real time a
row was stored, which against the shifted received_time gives the patient's date shift. Analysts may not
read it in any form; SELECT * and the views leave it out; stewards still read it; a store migrated by an
older release keeps its rows and values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.access import AccessDenied, policy_for
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.grants import SERVER_ROLES, grant_statements
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import Result, close_readonly_clients, run_readonly
from sinks.clickhouse.sink import write_records

from .factories import ddl_until, finding, findings, report

pytestmark = pytest.mark.integration

# every way of reading the column: selected, renamed, filtered on, aggregated, in a subquery or a CTE,
# set against the shifted received time
READS = [
    "SELECT inserted_at FROM report_versions",
    "SELECT inserted_at FROM reports",
    "SELECT x.inserted_at AS t FROM report_nlp AS x",
    "SELECT count() FROM report_nlp WHERE inserted_at > now64(3) - toIntervalHour(1)",
    "SELECT dateDiff('day', received_time, inserted_at) FROM report_versions",
    "SELECT toStartOfHour(inserted_at) AS h, count() FROM report_versions GROUP BY h",
    "SELECT accession FROM report_versions WHERE accession IN (SELECT accession FROM report_nlp "
    "WHERE inserted_at > toDateTime64('2020-01-01', 3))",
    "WITH r AS (SELECT * , inserted_at AS i FROM report_versions) SELECT max(i) FROM r",
    "SELECT (SELECT max(inserted_at) FROM report_nlp) AS q",
]


def write_one(client: Client) -> None:
    rep = report("H1", text="IMPRESSION: 6 mm nodule.")
    write_records(client, "report_finalized", [rep])
    write_records(client, "report_findings", [findings(rep, [finding("nodule", start=12)])])


def columns(client: Client, sql: str, policy: Any) -> list[str]:
    got = run_readonly(client, sql + " LIMIT 1", "rows", policy=policy)
    assert isinstance(got, Result)
    return list(got.columns)


def test_analysts_cannot_read_inserted_at(ch: Client) -> None:
    write_one(ch)
    for sql in READS:
        with pytest.raises(AccessDenied, match="the column inserted_at (of rs.report(_versions|s|_nlp) )?is"):
            run_readonly(ch, sql, "tsv", policy=policy_for(["analyst"]))
        run_readonly(ch, sql, "tsv", policy=policy_for(["steward"]))  # the operators' column


def test_select_star_and_the_views_leave_it_out(ch: Client) -> None:
    write_one(ch)
    analyst = policy_for(["analyst"])
    for name in ("report_versions", "reports", "report_nlp", "nlp_latest", "reports_latest"):
        # analysts may not SELECT * over the base tables (kafka_offset, ddl/031): a steward's * shows it
        policy = analyst if name.endswith("_latest") else policy_for(["steward"])
        got = columns(ch, f"SELECT * FROM {name}", policy)
        assert "inserted_at" not in got and "accession" in got, name
    # no object an analyst may read has it among its columns but the retrieval tables (times of the
    # research team's own requests and images, not of the patients' reports)
    shown = ch.query("SELECT table FROM system.columns WHERE database = 'rs' AND name = 'inserted_at' "
                     "AND default_kind != 'MATERIALIZED'").result_rows
    having = {str(t) for (t,) in shown}
    assert having & analyst.tables == {"retrieval_requests", "retrieval_events", "received_instances"}
    assert "inserted_at" in columns(ch, "SELECT *, inserted_at FROM report_versions", policy_for(["steward"]))


def test_a_store_from_before_026_keeps_its_rows_and_times(tmp_path: Path) -> None:
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 25))
        write_one(client)
        before = client.query("SELECT accession, inserted_at FROM report_nlp").result_rows
        assert "inserted_at" in [c for c in client.query("SELECT * FROM nlp_latest").column_names]
        assert migrate(client, "rs")[0] == "026_hide_inserted_at"
        assert client.query("SELECT accession, inserted_at FROM report_nlp").result_rows == before
        for view in ("nlp_latest", "reports_latest"):
            assert "inserted_at" not in client.query(f"SELECT * FROM {view}").column_names
        assert len(client.query("SELECT * FROM nlp_latest").result_rows) == 1
        write_one(client)  # a later insert still gets its time
        (n,) = client.query("SELECT countIf(inserted_at > toDateTime64('2020-01-01', 3)) "
                            "FROM report_versions").result_rows[0]
        assert n == 2
    finally:
        close_readonly_clients()
        client.close()


def test_server_grants_leave_the_column_out(ch: Client) -> None:
    stmts = apply_grants_statements(ch)
    analyst = [s for s in stmts if s.endswith(f"TO `{SERVER_ROLES['analyst']}`") and s.startswith("GRANT")]
    for table in ("report_versions", "reports", "report_nlp"):
        (grant,) = [s for s in analyst if f"ON `rs`.`{table}` " in s]
        assert grant.startswith("GRANT SELECT(`site`, `accession`") and "inserted_at" not in grant, grant
        parsed = ch.query("SELECT formatQuery({q:String})", parameters={"q": grant}).result_rows[0][0]
        assert "inserted_at" not in parsed
    assert any("ON `rs`.`findings` " in s and s.startswith("GRANT SELECT ON") for s in analyst)
    # without the columns known, no grant at all on such a table rather than the whole table
    blind = grant_statements("rs", ["report_versions", "findings"])
    assert not any("report_versions" in s for s in blind if s.startswith("GRANT"))


def apply_grants_statements(ch: Client) -> list[str]:
    """The statements ``apply_grants`` makes for this warehouse (chDB has no roles to run them on)."""
    rows = ch.query("SELECT name FROM system.tables WHERE database = 'rs'").result_rows
    objects = [str(n) for (n,) in rows]
    cols: dict[str, list[str]] = {}
    for table, name in ch.query("SELECT table, name FROM system.columns WHERE database = 'rs' "
                                "ORDER BY table, position").result_rows:
        cols.setdefault(str(table), []).append(str(name))
    return grant_statements("rs", objects, columns=cols)
