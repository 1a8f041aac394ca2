"""The SQL check's function allowlist (roles/functions_allowed.json) on a real store (chDB, ClickHouse's own
parser): analysts and stewards may call only the functions named there, however a query reaches one
(alias, case, combinator, APPLY, bare name, subquery, CTE, lambda, scalar subquery); admin may call any."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.access import ROLES_DIR, AccessDenied, check, policy_for
from sinks.clickhouse.query import _readonly_sibling

READERS = ("analyst", "steward")

# functions the old denylist let through; each tells about the server or the order rows were stored in
SERVER_STATE = ("hostName()", "version()", "uptime()", "currentUser()", "sleep(0)", "rowNumberInAllBlocks()",
                "blockNumber()", "serverUUID()", "getOSKernelVersion()", "errorCodeToName(1)", "timezone()")


def _refused(ro: Client, role: str, sql: str, name: str) -> None:
    message = rf"the function {name}\(\) is not allowed \(not on this role's function allowlist\)"
    with pytest.raises(AccessDenied, match=message):
        check(ro, "rs", sql, policy_for([role]))


@pytest.mark.parametrize("role", READERS)
def test_server_state_functions_are_refused_for_readers_and_allowed_for_admin(ch: Client, role: str) -> None:
    ro = _readonly_sibling(ch)
    for call in SERVER_STATE:
        _refused(ro, role, f"SELECT {call}", call.split("(")[0])
        check(ro, "rs", f"SELECT {call}", policy_for(["admin"]))
    # an ordinary function that is simply not on the list
    _refused(ro, role, "SELECT soundex('x')", "soundex")


@pytest.mark.parametrize("role", READERS)
def test_every_way_of_reaching_a_function_is_refused(ch: Client, role: str) -> None:
    ro = _readonly_sibling(ch)
    forms = {
        "SELECT fqdn()": "fqdn",  # alias of FQDN
        "SELECT HOSTNAME()": "HOSTNAME",  # case variant of an alias
        "SELECT soundexIf('a', 1)": "soundexIf",  # a combinator on something not an allowed aggregate
        "SELECT arrayMap(errorCodeToName, [1])": "errorCodeToName",  # passed by bare name
        "SELECT arrayMap((errorCodeToName AS f), [1])": "errorCodeToName",
        "SELECT count() FROM (SELECT hostName() AS h FROM findings_latest)": "hostName",  # subquery
        "WITH (SELECT version()) AS v SELECT v": "version",  # CTE / scalar
        "WITH h AS (SELECT uptime() AS u) SELECT u FROM h": "uptime",
        "SELECT arrayMap(x -> currentUser(), [1])": "currentUser",  # lambda
        "WITH x -> blockNumber() AS f SELECT f(1)": "blockNumber",
        "SELECT 1 WHERE (SELECT rowNumberInAllBlocks()) = 0": "rowNumberInAllBlocks",  # scalar subquery
        "SELECT accession FROM findings_latest WHERE accession IN (SELECT hostName())": "hostName",
    }
    for sql, name in forms.items():
        _refused(ro, role, sql, name)
    with pytest.raises(AccessDenied, match="APPLY is not allowed"):
        check(ro, "rs", "SELECT * APPLY(toString) FROM (SELECT 1 AS a)", policy_for([role]))
    # a view's own SELECT is checked too: a view calling a function off the list is refused
    ch.command("CREATE VIEW rs.v_host AS SELECT hostName() AS h")
    from dataclasses import replace
    policy = replace(policy_for([role]), tables=policy_for([role]).tables | {"v_host"})
    with pytest.raises(AccessDenied, match=r"hostName\(\) \(read by the view rs.v_host\) is not allowed"):
        check(ro, "rs", "SELECT h FROM v_host", policy)


def test_allowed_functions_aliases_and_combinators_pass(ch: Client) -> None:
    ro = _readonly_sibling(ch)
    analyst = policy_for(["analyst"])
    sql = ("SELECT sumIf(1, 1), countIf(1), argMaxIf(1, 2, 1), uniqExactIf(1, 1), groupArrayDistinct(1), "
           "quantileIf(0.5)(1, 1), medianIf(1, 1), sumMap(map('a', 1)), COUNT(DISTINCT 1), "
           "groupArrayIf(1, 1), avgOrNull(1), sumArray([1]), countState() IS NOT NULL, substr('abc', 2), "
           "SUBSTRING('abc', 2), lcase('A'), arrayMap(toString, [1]), arrayMap(x -> x + 1, [1]), "
           "currentDatabase(), now() > toDateTime('2020-01-01'), 1 IN (1, 2), [1][1], tuple(1, 2).1, "
           "CASE WHEN 1 THEN 'a' ELSE 'b' END, CASE 1 WHEN 1 THEN 'a' END, '1'::Int32, INTERVAL 1 DAY, "
           "EXISTS (SELECT 1), first_value(1), last_value(1)")
    check(ro, "rs", sql, analyst)
    check(ro, "rs", "WITH x -> x * 2 AS twice SELECT twice(2)", analyst)  # a lambda the query names
    check(ro, "rs", "SELECT accession, row_number() OVER (PARTITION BY accession ORDER BY report_version), "
          "lagInFrame(report_version) OVER (ORDER BY report_version) FROM findings_latest", analyst)
    # a column whose name is also a function's (version, path) is a column, not a call
    check(ro, "rs", "SELECT version, argMax(status, version) FROM report_versions GROUP BY version", analyst)


def test_the_list_names_canonical_engine_functions_and_nothing_left_out(ch: Client) -> None:
    """Every entry is a function of the engine under its canonical name (an alias or a typo would never
    match), and nothing the list's own doc says is left out is on it."""
    doc = json.loads((ROLES_DIR / "functions_allowed.json").read_text())
    names = [f for g in doc["groups"] for f in g["functions"]]
    assert len(names) == len(set(names))
    rows = ch.query("SELECT name, alias_to FROM system.functions").result_rows
    canonical = {str(n) for n, a in rows if not a}
    # the parser's names for EXISTS (...) and x -> ...
    assert [n for n in names if n not in canonical] == ["exists", "lambda"]
    left_out = {"file", "url", "dictGet", "joinGet", "getSetting", "getServerSetting", "getMacro", "hostName",
                "FQDN", "serverUUID", "uptime", "version", "currentUser", "currentRoles", "sleep",
                "sleepEachRow",
                "blockNumber", "rowNumberInBlock", "rowNumberInAllBlocks", "transactionID",
                "initialQueryID", "queryID", "buildId", "getClientHTTPHeader", "displayName", "shardNum",
                "errorCodeToName", "tcpPort", "globalVariable", "catboostEvaluate", "filesystemAvailable",
                "timezone", "serverTimezone", "arrayReduce", "initializeAggregation", "identity", "ignore"}
    assert sorted(left_out & set(names)) == []


def test_roles_combine_and_a_site_list_or_denylist_still_works(ch: Client, tmp_path: Path) -> None:
    """Several roles: a function may be called if one of them may. A site's own role may give a list
    inline, or "*" less ``denied_functions`` (matched as written and as the engine's canonical name)."""
    ro = _readonly_sibling(ch)
    _refused(ro, "analyst", "SELECT hostName()", "hostName")
    with pytest.raises(AccessDenied, match=r"hostName\(\) is not allowed"):
        check(ro, "rs", "SELECT hostName()", policy_for(["analyst", "ingest"]))
    check(ro, "rs", "SELECT hostName()", policy_for(["analyst", "admin"]))
    site = {"tables": ["*"], "system_tables": ["system.one"], "table_functions": []}
    (tmp_path / "narrow.json").write_text(json.dumps({**site, "allowed_functions": ["count", "soundex"]}))
    (tmp_path / "wide.json").write_text(json.dumps({**site, "allowed_functions": ["*"],
                                                    "denied_functions": ["hostName"]}))
    narrow, wide = policy_for(["narrow"], tmp_path), policy_for(["wide"], tmp_path)
    check(ro, "rs", "SELECT soundex('a'), count()", narrow)
    with pytest.raises(AccessDenied, match=r"lower\(\) is not allowed"):
        check(ro, "rs", "SELECT lower('a')", narrow)
    check(ro, "rs", "SELECT version()", wide)
    for call in ("hostName()", "hostname()", "HOSTNAME()"):
        with pytest.raises(AccessDenied, match="is not allowed"):
            check(ro, "rs", f"SELECT {call}", wide)
