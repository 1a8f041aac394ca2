"""The allowlist is decided on the syntax tree before anything is evaluated (sinks.clickhouse.access,
session 14): ClickHouse's analyzer folds constants and runs scalar subqueries while it resolves a query,
so a check that asked it first read files (file()) and answered yes/no questions about restricted
tables through its error messages. Real chDB store, the shipped role files."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from radstream.warehouse import audited_query
from sinks.clickhouse.access import AccessDenied, check, policy_for
from sinks.clickhouse.query import Result, _readonly_sibling, run_readonly, store_id
from streams import audit
from streams.audit import FileAudit
from streams.auth import Principal
from tests.sinks.clickhouse.sql_page import call

SECRET = "MRN-SECRET-4711"


def _refusal(ch: Client, sql: str, roles: tuple[str, ...] = ("analyst",)) -> str:
    with pytest.raises(AccessDenied) as info:
        run_readonly(ch, sql, "tsv", policy=policy_for(roles))
    return str(info.value)


def _secret(ch: Client) -> None:
    ch.command("INSERT INTO rs.deid_map (project_id, kind, original, pseudonym, time) VALUES "
               f"('p1', 'patient_id', '{SECRET}', 'PSEUDO-1', now64())")


def test_file_is_refused_before_it_is_read(ch: Client, tmp_path: Path) -> None:
    token = tmp_path / "local.token"
    token.write_text("rst_secret_token_value\n")
    for sql in (f"SELECT toInt64(file('{token}'))", f"SELECT toInt64(FILE('{token}'))",
                f"SELECT length(file('{token}')) > 3"):
        out = _refusal(ch, sql)
        assert "rst_secret" not in out, out
        assert "function" in out and "is not allowed" in out, out


def test_a_function_called_through_apply_or_by_its_bare_name_is_refused_before_it_is_read(
        ch: Client, tmp_path: Path) -> None:
    """The tree prints neither what APPLY calls nor a function passed by name (arrayMap(file, ...)) as a
    call; the analyzer would then read the file in a scalar subquery and answer yes/no through the
    refusal (a steward could read the admin token so too)."""
    token = tmp_path / "local.token"
    token.write_text("rst_secret_token_value\n")
    apply = ("SELECT (SELECT throwIf(ascii(substring((SELECT * APPLY(file) FROM values('p String', "
             f"'{token}')), 1, 1)) > {{}}))")
    by_name = f"SELECT (SELECT throwIf(ascii(substring(arrayMap(file, ['{token}'])[1], 1, 1)) > {{}}))"
    for roles in (("analyst",), ("steward",)):
        for probe in (apply, by_name):
            true, false = _refusal(ch, probe.format(0), roles), _refusal(ch, probe.format(200), roles)
            assert true == false and "rst_secret" not in true, (roles, probe, true, false)
            assert "is not allowed" in true, true
    # APPLY of an allowed function is refused too (its function is not in the tree); count(*) is no *
    assert "APPLY" in _refusal(ch, "SELECT * APPLY(length) FROM findings_latest")
    for sql in ("SELECT count(*) FROM reports", "SELECT countIf(*, 1) FROM report_nlp"):
        assert run_readonly(ch, sql, "csv", policy=policy_for(["analyst"])).startswith('"count'), sql
    for fn in ("getSettingOrDefault('readonly', 0)", "getMergeTreeSetting('index_granularity')"):
        assert "is not allowed" in _refusal(ch, f"SELECT {fn}"), fn


def test_an_alias_with_a_line_break_or_a_renamed_count_hides_no_column(ch: Client) -> None:
    """EXPLAIN prints names raw and splits its text at newlines: the rest of an alias became a node row
    of the caller's choosing (a fake `* EXCEPT` hid the next column's name), and a lambda named count
    made count(*) show every column; either gave a denied column to a yes/no probe."""
    ch.command("INSERT INTO rs.reports (site, accession, version, event_id, patient_id, status, "
               "received_time, exam_time, text, kafka_topic, kafka_partition, kafka_offset) VALUES ('s', "
               "'ACC-SPLIT', 1, 'e', 'PSEUDO-1', 'final', '2020-01-01 00:00:00', '2020-01-01 00:00:00', 't', "
               "'reports', 2, 987654)")
    where = "FROM reports WHERE accession = 'ACC-SPLIT')"
    for brk in ("\\n", "\x0b", "\x1c", "\u2028", "\x85"):
        alias = f"`a{brk}                ColumnsExceptTransformer x`"
        probe = f"SELECT (SELECT throwIf(countIf((toInt64({{}}) AS {alias}) < kafka_offset) > 0) {where}"
        true, false = _refusal(ch, probe.format(0)), _refusal(ch, probe.format(10**12))
        assert true == false == "refused: a name or alias with a line break or a backslash in it", (brk, true)
    for n in range(25, 40):  # whatever the table's number of columns
        params = ", ".join(f"p{i}" for i in range(1, n + 1))
        probe = f"WITH ({params}) -> p{n} AS count SELECT (SELECT throwIf(max(count(*)) > {{}}) {where}"
        true, false = _refusal(ch, probe.format(0)), _refusal(ch, probe.format(10**12))
        assert true == false and "* would show the column" in true, (n, true)


def test_a_scalar_subquery_over_a_restricted_table_is_no_oracle(ch: Client) -> None:
    _secret(ch)
    probe = "SELECT (SELECT throwIf(startsWith(any(original), '{}')) FROM deid_map)"
    true, false = _refusal(ch, probe.format("MRN")), _refusal(ch, probe.format("XYZ"))
    assert true == false == "refused for role analyst: rs.deid_map is not readable by this role"
    # the same through sleep(): refused before the subquery could run
    assert "rs.deid_map is not readable" in _refusal(
        ch, "SELECT (SELECT sleepEachRow(if(startsWith(any(original), 'M'), 1, 0)) FROM deid_map)")


def test_in_a_restricted_table_and_other_names_of_objects_are_refused(ch: Client) -> None:
    for sql in ("SELECT count() FROM reports WHERE accession IN deid_map",
                "SELECT 'x' IN rs.deid_map",
                "SELECT 1 IN system.users",
                "SELECT 1 IN merge('rs', 'deid')",
                "WITH deid_map AS (SELECT 1 AS a) SELECT * FROM deid_map"):
        out = _refusal(ch, sql)
        assert "is not readable by this role" in out or "is not allowed" in out, (sql, out)
    # readonly=1 refuses a SETTINGS clause of the query, not one of a subquery (asterisk_include_...)
    assert _refusal(ch, "SELECT * FROM (SELECT * FROM findings_latest SETTINGS "
                        "asterisk_include_materialized_columns = 1)") == \
        "refused: no SETTINGS clause, in a subquery either"
    # a CTE of another name reads nothing stored: fine
    assert run_readonly(ch, "WITH x AS (SELECT 1 AS a) SELECT a FROM x", "csv",
                        policy=policy_for(["analyst"])) == '"a"\n1\n'


def test_an_analysis_failure_says_its_code_not_the_values_it_computed(ch: Client) -> None:
    _secret(ch)
    # a steward may read deid_map, but the refusal of a query that does not analyse quotes nothing
    out = _refusal(ch, "SELECT toInt64(assumeNotNull((SELECT any(original) FROM deid_map)))", ("steward",))
    assert out == "refused: the query could not be checked"
    assert SECRET not in out


def test_arrival_order_columns_are_not_readable_by_analysts(ch: Client) -> None:
    for sql in ("SELECT kafka_offset, received_time FROM report_versions",
                "SELECT max(kafka_partition) FROM reports",
                "SELECT count() FROM report_nlp ORDER BY any(kafka_offset)",
                "SELECT kafka_offset FROM reports_latest",
                "SELECT _block_number, _part FROM report_versions",
                "SELECT count() FROM reports WHERE _part_offset > 0",
                "SELECT COLUMNS('kafka') FROM report_versions",
                "SELECT * FROM report_versions",
                "SELECT r.* FROM reports AS r",
                "SELECT (SELECT throwIf(count() > 0) FROM (SELECT COLUMNS('off') FROM report_nlp))"):
        out = _refusal(ch, sql)
        assert out.startswith("refused for role analyst:"), (sql, out)
    # the analysts' views leave them out (ddl/031), so SELECT * on a view still works
    analyst = policy_for(["analyst"])
    for view in ("reports_latest", "nlp_latest"):
        res = run_readonly(ch, f"SELECT * FROM {view}", "rows", policy=analyst)
        assert isinstance(res, Result)
        assert not {"kafka_partition", "kafka_offset", "inserted_at"} & set(res.columns), (view, res.columns)
    # stewards still read them
    assert str(run_readonly(ch, "SELECT max(kafka_offset) AS m FROM reports", "csv",
                            policy=policy_for(["steward"]))).startswith('"m"')


def test_every_analyst_object_is_readable_by_name_and_views_by_star(ch: Client) -> None:
    ro = _readonly_sibling(ch)
    analyst = policy_for(["analyst"])
    names = {str(n) for (n,) in ch.query("SELECT name FROM system.tables WHERE database = 'rs'").result_rows}
    for name in sorted(analyst.tables & names):
        if name in ("report_versions", "reports", "report_nlp"):  # * would show kafka_*: name the columns
            check(ro, "rs", f"SELECT accession FROM {name} LIMIT 1", analyst)
        else:
            check(ro, "rs", f"SELECT * FROM {name} LIMIT 1", analyst)


def test_a_query_that_fails_in_the_engine_is_audited_without_its_values(ch: Client, tmp_path: Path) -> None:
    """The web app against a ClickHouse server and ``radstream sql`` without a worker go through
    ``audited_query``: a query that passes the check but fails when it runs is audited as refused, with
    the error's code, not its message (which may quote values)."""
    settings = Settings(state_dir=str(tmp_path))
    target = FileAudit(tmp_path / "audit.log")
    ana = Principal("ana", frozenset({"analyst"}))
    with pytest.raises(Exception, match="FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"):
        audited_query(ch, settings, ana, "SELECT throwIf(count() = 0, 'no rows') FROM findings_latest",
                      "jsonl", target=target, endpoint="web")
    with pytest.raises(AccessDenied):
        audited_query(ch, settings, ana, "SELECT * FROM deid_map", "jsonl", target=target, endpoint="web")
    events = audit.read_log(tmp_path / "audit.log")
    assert [(e["actor"], e["action"], e["allowed"]) for e in events] == [("ana", "sql.query", False)] * 2
    reasons = [json.loads(e["detail"])["reason"] for e in events]
    assert reasons[0] == "the query failed in the engine (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)"
    assert "no rows" not in reasons[0] and "rs.deid_map is not readable" in reasons[1]


def test_health_gives_the_store_path_to_admins_only(ch_settings: Settings) -> None:
    from radstream import access
    from sinks.clickhouse.service import SinkService
    from sinks.clickhouse.sink import ClickHouseSink
    from sinks.clickhouse.web import SqlServer
    from streams.auth import TokenStore

    s = ch_settings
    service = SinkService(s.kafka, s.topics, s.clickhouse)
    service.sink = ClickHouseSink(s.clickhouse, s.topics)  # opens and migrates the store; no Kafka loop
    store = TokenStore(s.auth.token_file)
    store.add_user("ana", ["analyst"])
    store.add_user("root", ["admin"])
    ana, root = store.add_token("ana"), store.add_token("root")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    gate = access.gate(s, "worker", audit=FileAudit(s.auth.audit_log))
    srv = SqlServer(service, "127.0.0.1", port, gate=gate)
    srv.start()
    try:
        status, body = call(port, "/health", ana)
        assert status == 200
        health = json.loads(body)
        assert "store" not in health and s.state_dir not in body, body
        assert health["store_id"] == store_id(s.clickhouse_url)
        status, body = call(port, "/health", root)
        assert json.loads(body)["store"] == s.clickhouse_url
        # and the analyst's file() read of the token store is refused without its content
        status, out = call(port, "/sql?q=" + urllib.parse.quote(
            f"SELECT toInt64(file('{s.auth.token_file}'))"), ana)
        assert status == 403 and out.strip() == ("refused for role analyst: the function file() is not "
                                                 "allowed (not on this role's function allowlist)")
    finally:
        srv.stop()
        service.sink.close()


def test_031_takes_the_kafka_positions_out_of_the_views_and_keeps_them_in_the_tables(tmp_path: Path) -> None:
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.config import ClickHouseConfig
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.query import close_readonly_clients
    from sinks.clickhouse.rows import Origin, rows_for
    from sinks.clickhouse.sink import write_rows

    from .factories import ddl_until, report

    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 30))
        rec = report("K1", text="IMPRESSION: 6 mm nodule.")
        write_rows(client, rows_for("report_finalized", rec, Origin("reports", 0, 41)))
        assert "kafka_offset" in client.query("SELECT * FROM reports_latest").column_names
        assert "031_views_without_kafka_positions" in migrate(client, "rs")
        for view in ("reports_latest", "nlp_latest"):
            names = [str(r[0]) for r in client.query(f"DESCRIBE TABLE {view}").result_rows]
            assert "kafka_offset" not in names and "kafka_partition" not in names and "accession" in names
        assert client.query("SELECT accession FROM reports_latest").result_rows == [("K1",)]
        got = client.query("SELECT accession, kafka_offset FROM report_versions").result_rows
        assert got == [("K1", 41)]  # the sink's and the stewards' column is still there
    finally:
        close_readonly_clients()
        client.close()
