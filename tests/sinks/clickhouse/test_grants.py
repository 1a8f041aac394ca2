"""The server roles/GRANTs of ``db migrate``: no server newer than 18.16 installs here, so each statement
is checked with ClickHouse's own parser in chDB (``formatQuery`` and ``EXPLAIN AST``), and against the
warehouse that the migrations really create."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.grants import SERVER_ROLES, grant_statements

PARSED_AS = {"CREATE ROLE": "CreateRoleQuery", "REVOKE": "GrantQuery", "GRANT": "GrantQuery"}


def test_grant_statements_parse_and_follow_the_allowlists(ch: Client) -> None:
    rows = ch.query("SELECT name FROM system.tables WHERE database = 'rs'").result_rows
    objects = [str(n) for (n,) in rows]
    stmts = grant_statements("rs", objects)
    for stmt in stmts:
        canonical = ch.query("SELECT formatQuery({q:String})", parameters={"q": stmt}).result_rows[0][0]
        assert canonical.replace("\n", " ").split()[:2] == stmt.split()[:2], (stmt, canonical)
        kind = next(v for k, v in PARSED_AS.items() if stmt.startswith(k))
        ast = ch.command(f"EXPLAIN AST {stmt}")
        assert str(ast).startswith(kind), (stmt, ast)
    analyst = [s for s in stmts if s.endswith(f"TO `{SERVER_ROLES['analyst']}`")]
    granted = {s.split("ON `rs`.")[1].split()[0].strip("`") for s in analyst}
    assert "findings_latest" in granted and "findings" in granted  # a view and the table it reads
    assert not granted & {"deid_map", "dead_letters", "audit_log", "report_text_original"}
    writer = [s for s in stmts if s.endswith(f"`{SERVER_ROLES['writer']}`") and s.startswith("GRANT")]
    assert len(writer) == 1 and "INSERT" in writer[0]
    assert not any(w in writer[0] for w in ("DELETE", "UPDATE", "DROP TABLE", "TRUNCATE", " ALL "))


def test_a_column_name_denied_anywhere_is_granted_nowhere(ch: Client) -> None:
    rows = ch.query("SELECT table, name FROM system.columns WHERE database = 'rs'").result_rows
    columns: dict[str, list[str]] = {}
    for table, name in rows:
        columns.setdefault(str(table), []).append(str(name))
    stmts = grant_statements("rs", list(columns), columns=columns)
    analyst = [s for s in stmts if s.endswith(f"TO `{SERVER_ROLES['analyst']}`") and s.startswith("GRANT")]
    whole = {s.split("ON `rs`.")[1].split()[0].strip("`") for s in analyst if s.startswith("GRANT SELECT ON")}
    has_denied = {t for t, cs in columns.items() if {"inserted_at", "kafka_offset"} & set(cs)}
    assert {"retrieval_requests", "retrieval_events", "received_instances"} <= has_denied
    assert not whole & has_denied
    for s in analyst:
        if s.startswith("GRANT SELECT("):
            assert "`inserted_at`" not in s and "`kafka_offset`" not in s and "`kafka_partition`" not in s, s
    assert any("ON `rs`.`retrieval_requests`" in s for s in analyst)  # its other columns still readable
