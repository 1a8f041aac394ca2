"""The table allowlists against the real warehouse schema (chDB, ClickHouse's own parser): what the
shipped role files let each role read, and that nothing an analyst may name reads a restricted table."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.access import ROLES_DIR, AccessDenied, check, policy_for
from sinks.clickhouse.query import _readonly_sibling, run_readonly

RESTRICTED = {"deid_map", "dead_letters", "report_text_original", "audit_log", "quarantine", "projects",
              "received_instances_identified", "retrieval_events_identified"}


def _objects(ch: Client) -> dict[str, str]:
    rows = ch.query("SELECT name, engine FROM system.tables WHERE database = 'rs'").result_rows
    return {str(n): str(e) for n, e in rows}


def test_every_analyst_object_reads_only_analyst_objects(ch: Client) -> None:
    """A view on the analysts' list that read a restricted table would be refused; none does."""
    ro = _readonly_sibling(ch)
    analyst = policy_for(["analyst"])
    objects = _objects(ch)
    assert not RESTRICTED & analyst.tables
    for name in sorted(analyst.tables & set(objects)):
        # * over these would show kafka_offset (refused for analysts): a named column reads the table
        what = "accession" if name in ("report_versions", "reports", "report_nlp") else "*"
        checked = check(ro, "rs", f"SELECT {what} FROM {name} LIMIT 1", analyst)
        assert not {t.split(".")[1] for t in checked.tables} & RESTRICTED, (name, checked.tables)
    # and every table the migrations create is on some list (a new table is a decision, not an accident)
    steward_only = set(objects) - analyst.tables
    assert steward_only <= RESTRICTED | {"schema_migrations"}, steward_only


def test_steward_reads_restricted_tables_analyst_does_not(ch: Client) -> None:
    for table in ("deid_map", "dead_letters", "audit_log"):
        with pytest.raises(AccessDenied, match=f"rs.{table} is not readable"):
            run_readonly(ch, f"SELECT count() FROM {table}", "tsv", policy=policy_for(["analyst"]))
        out = run_readonly(ch, f"SELECT count() FROM {table}", "csv", policy=policy_for(["steward"]))
        assert out == '"count()"\n0\n'


def test_ingest_role_may_not_query_and_unknown_roles_are_refused(ch: Client) -> None:
    with pytest.raises(AccessDenied, match="not readable"):
        run_readonly(ch, "SELECT count() FROM findings_latest", "tsv", policy=policy_for(["ingest"]))
    with pytest.raises(AccessDenied, match="unknown role"):
        policy_for(["superuser"])
    stems = sorted(p.stem for p in ROLES_DIR.glob("*.json"))
    assert stems == ["admin", "analyst", "functions_allowed", "ingest", "steward"]


def test_the_checked_text_is_what_runs_and_keeps_a_trailing_format(ch: Client) -> None:
    analyst = policy_for(["analyst"])
    out = run_readonly(ch, "SELECT count() AS n FROM findings_latest FORMAT JSONEachRow", "tsv",
                       policy=analyst)
    assert out == '{"n":0}\n'
    with pytest.raises(AccessDenied, match="only one SELECT"):
        run_readonly(ch, "SELECT 1 INTO OUTFILE '/tmp/radstream-access-test'", "tsv", policy=analyst)
    with pytest.raises(AccessDenied, match="Multi-statements"):
        run_readonly(ch, "SELECT 1; SELECT 2", "tsv", policy=analyst)
    # a name error says nothing of the engine's (its code: in the audit); a restricted name is refused before
    with pytest.raises(AccessDenied, match=r"^refused: the query could not be checked$"):
        run_readonly(ch, "SELECT nosuch FROM findings_latest", "tsv", policy=analyst)
    with pytest.raises(AccessDenied, match="rs.deid_map is not readable by this role"):
        run_readonly(ch, "SELECT toInt64((SELECT any(original) FROM deid_map)) + nosuch", "tsv",
                     policy=analyst)


def test_a_view_is_read_as_it_is_defined_now(ch: Client) -> None:
    """The check asks for a view's SELECT when a query reads it (not from a list read before): a view
    redefined to read a restricted table is refused at the next check, a dropped one is not found."""
    from dataclasses import replace

    ro = _readonly_sibling(ch)
    policy = replace(policy_for(["analyst"]), tables=policy_for(["analyst"]).tables | {"v_access"})
    ch.command("CREATE VIEW rs.v_access AS SELECT accession FROM rs.reports")
    assert check(ro, "rs", "SELECT count() FROM v_access", policy).tables == ["rs.reports", "rs.v_access"]
    ch.command("CREATE OR REPLACE VIEW rs.v_access AS SELECT original AS accession FROM rs.deid_map")
    with pytest.raises(AccessDenied, match=r"rs.deid_map \(read by the view rs.v_access\) is not readable"):
        check(ro, "rs", "SELECT count() FROM v_access", policy)
    ch.command("DROP VIEW rs.v_access")
    with pytest.raises(AccessDenied, match="could not be checked|does not exist") as info:
        check(ro, "rs", "SELECT count() FROM v_access", policy)
    assert "UNKNOWN_TABLE" in info.value.audit or "does not exist" in info.value.audit
