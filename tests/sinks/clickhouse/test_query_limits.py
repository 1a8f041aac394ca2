"""A non-admin's query runs within ``clickhouse.query_*`` limits (result rows and bytes, memory, time):
ClickHouse refuses one that would pass them with a clear message, not the worker's memory; an admin's is
not limited; and the defaults leave room for the documented million-row answers. Also: a query that
fails part-way leaves nothing in the next answer on the shared read-only handle (chDB hands the output
written before the failure to whoever asks next). A real embedded store (chDB), a real SQL page."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from radstream.warehouse import audited_query
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.query import run_readonly
from streams.audit import FileAudit
from streams.auth import Principal
from tests.sinks.clickhouse.sql_page import call


def small() -> dict[str, Any]:
    return ClickHouseConfig(query_max_result_rows=1000, query_max_result_bytes=1 << 20,
                            query_max_execution_time_s=1, query_max_memory_usage=64 << 20).query_limits()


def test_config_gives_the_limits_with_throw_and_checks_them() -> None:
    limits = ClickHouseConfig().query_limits()
    assert limits["result_overflow_mode"] == "throw"
    assert int(limits["max_result_rows"]) >= 1_000_000 and int(limits["max_execution_time"]) > 0
    assert ClickHouseConfig(query_max_result_rows=0, query_max_result_bytes=0, query_max_memory_usage=0,
                            query_max_execution_time_s=0).query_limits() == {}
    bad = ClickHouseConfig(url="chdb:///x", query_max_result_rows=-1).problems()
    assert bad == ["query_max_result_rows: must be 0 (no limit) or more, not -1"]


@pytest.mark.parametrize(("sql", "says"), [
    ("SELECT number FROM numbers(100000)", "Limit for result exceeded, max rows"),
    ("SELECT repeat(toString(number % 10), 2000) FROM numbers(900)", "Limit for result exceeded, max bytes"),
    ("SELECT groupArray(number) FROM numbers(50000000)", "memory limit exceeded"),
    ("SELECT count() FROM numbers(100000000000) WHERE number % 7 = 1", "Timeout exceeded"),
])
def test_a_limited_query_over_a_limit_is_refused_with_the_reason(ch: Client, sql: str, says: str) -> None:
    with pytest.raises(Exception, match=says):
        run_readonly(ch, sql, "tsv", limits=small())
    # the same handle answers the next query, and only it
    assert run_readonly(ch, "SELECT 7 AS x", "tsv", limits=small()) == "x\n7\n"
    assert run_readonly(ch, "SELECT count() FROM numbers(100000)", "tsv") == "count()\n100000\n"


def test_the_default_limits_refuse_an_unbounded_answer_and_pass_a_million_rows(ch: Client) -> None:
    limits = ClickHouseConfig().query_limits()
    with pytest.raises(Exception, match="Limit for result exceeded, max rows: 5.00 million"):
        run_readonly(ch, "SELECT number FROM numbers(6000000)", "tsv", limits=limits)
    # the shape of docs/analysts.md's latest_with_argmax at a million reports (130 MB as JSON lines)
    sql = ("SELECT toString(number % 3) AS site, concat('ACC', toString(number)) AS accession, "
           "toUInt32(number % 5) AS latest_version, 'final' AS latest_status, 'CT' AS latest_modality "
           "FROM numbers(1000000)")
    out = run_readonly(ch, sql, "jsonl", limits=limits)
    assert isinstance(out, str) and out.count("\n") == 1_000_000


@pytest.mark.parametrize("limited", [False, True])
def test_a_query_that_failed_part_way_leaves_nothing_for_the_next(ch: Client, limited: bool) -> None:
    """chDB 4.x keeps what a failed query had written and puts it before the next answer on the handle:
    on the shared read-only handle that is another user's answer, maybe of another role."""
    kw: dict[str, Any] = {"limits": small()} if limited else {}  # (without: as before the limits)
    failing = ("SELECT number FROM numbers(100000)" if limited
               else "SELECT number, throwIf(number = 150000) FROM numbers(200000)")
    with pytest.raises(Exception, match="Limit for result exceeded" if limited else "throwIf"):
        run_readonly(ch, failing, "tsv", **kw)
    assert run_readonly(ch, "SELECT 10 AS x", "tsv", **kw) == "x\n10\n"
    with pytest.raises(Exception, match="Limit for result exceeded" if limited else "throwIf"):
        run_readonly(ch, failing, "jsonl", **kw)
    assert run_readonly(ch, "SELECT 11 AS x", "rows", **kw).rows == [(11,)]  # type: ignore[union-attr]


def test_analysts_and_stewards_are_limited_admins_are_not(ch: Client, ch_settings: Settings) -> None:
    """``audited_query`` (the web app on a ClickHouse server, ``radstream sql`` on the store)."""
    s = ch_settings.replace(clickhouse={"query_max_result_rows": 1000})
    target = FileAudit(s.auth.audit_log)
    many = "SELECT number FROM numbers(5000)"
    for role in ("analyst", "steward"):
        with pytest.raises(Exception, match="Limit for result exceeded, max rows"):
            audited_query(ch, s, Principal("u", frozenset({role})), many, "tsv", target=target, endpoint="t")
    out = audited_query(ch, s, Principal("root", frozenset({"admin"})), many, "tsv", target=target,
                        endpoint="t")
    assert out.count("\n") == 5001


def test_the_sql_page_limits_an_analyst_not_an_admin(ch_settings: Settings, tmp_path: Path) -> None:
    from radstream import access
    from sinks.clickhouse.service import SinkService
    from sinks.clickhouse.sink import ClickHouseSink
    from sinks.clickhouse.web import SqlServer
    from streams.auth import TokenStore

    s = ch_settings.replace(clickhouse={"query_max_result_rows": 1000})
    service = SinkService(s.kafka, s.topics, s.clickhouse)
    service.sink = ClickHouseSink(s.clickhouse, s.topics)  # opens and migrates the store; no Kafka loop
    store = TokenStore(s.auth.token_file)
    store.add_user("ana", ["analyst"])
    store.add_user("root", ["admin"])
    ana, root = store.add_token("ana"), store.add_token("root")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gate = access.gate(s, "worker", audit=FileAudit(s.auth.audit_log))
    srv = SqlServer(service, "127.0.0.1", port, gate=gate)
    srv.start()
    try:
        status, body = call(port, "/sql", ana, "SELECT number FROM numbers(5000)")
        assert status == 400 and "Limit for result exceeded, max rows: 1.00 thousand" in body, body
        status, body = call(port, "/sql", root, "SELECT number FROM numbers(5000)")
        assert status == 200 and body.count("\n") == 5001
        status, body = call(port, "/sql", ana, "SELECT 1 AS one")
        assert (status, body) == (200, "one\n1\n")
        events = [json.loads(x) for x in Path(s.auth.audit_log).read_text().splitlines()]
        refused = [e for e in events if e["action"] == "sql.query" and not e["allowed"]]
        assert len(refused) == 1 and "TOO_MANY_ROWS_OR_BYTES" in json.dumps(refused[0])
    finally:
        srv.stop()
        service.sink.close()
