"""Roles on the worker's read-only SQL page, with a real worker process and real HTTP calls: an analyst
reads the de-identified views but is refused the restricted tables however it names them (join,
subquery, CTE, IN, UNION, table function, a view over them, system tables); a steward reads them; no
token or a bad one gets 401, the ingest role 403; and every call is in the audit table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.config import Settings, settings_env
from sinks.clickhouse.access import ROLES_DIR
from sinks.clickhouse.client import open_client
from sinks.clickhouse.migrate import migrate
from streams.auth import TokenStore
from tests.helpers_chdb import seed_store_of
from tests.streams.helpers import free_port, worker_process

from .factories import report
from .kafka_helpers import produce_all, produce_raw, wait_until

ROOT = Path(__file__).resolve().parents[3]
TRAP_VIEW = ("CREATE OR REPLACE VIEW radstream.pseudonym_lookup AS "
             "SELECT pseudonym, original FROM radstream.deid_map")
NESTED_VIEW = ("CREATE OR REPLACE VIEW radstream.innocent_counts AS "
               "SELECT count() AS n FROM radstream.pseudonym_lookup")


def call(settings: Settings, path: str, token: str | None = None, body: str | None = None) -> tuple[int, str]:
    url = f"http://{settings.worker.web_host}:{settings.worker.web_port}{path}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=body.encode() if body is not None else None, headers=headers,
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:  # not listening yet
        return 0, str(exc)


@pytest.fixture
def secured(topic_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    # the site's allowlists: ours, plus (a site's mistake) two views whose bottom one reads deid_map
    roles = tmp_path / "roles"
    shutil.copytree(ROLES_DIR, roles)
    analyst = json.loads((roles / "analyst.json").read_text())
    analyst["tables"] += ["innocent_counts", "pseudonym_lookup"]
    (roles / "analyst.json").write_text(json.dumps(analyst))
    settings = topic_settings.replace(
        state_dir=str(tmp_path / "state"), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()}, clickhouse={"url": "", "database": "radstream"},
        auth={"roles_dir": str(roles)})
    Path(settings.state_dir).mkdir(parents=True)
    seed_store_of(settings.clickhouse.url, "radstream")  # a migrated copy (tests/helpers_chdb.py)
    client = open_client(settings.clickhouse)  # before the worker owns the store
    try:
        migrate(client, "radstream")
        for ddl in (TRAP_VIEW, NESTED_VIEW):
            client.command(ddl)
        client.command("INSERT INTO radstream.report_text_original (site, accession, version, text) "
                       "VALUES ('default', 'A1', 1, 'Dr. Lee')")
    finally:
        client.close()
    store = TokenStore(settings.auth.token_file)
    tokens = {}
    for user, role in (("ana", "analyst"), ("stu", "steward"), ("ing", "ingest")):
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)
    with worker_process(settings, tmp_path / "worker.log") as proc:
        yield settings, tokens
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]


REFUSED_FOR_ANALYSTS = [
    "SELECT * FROM deid_map",
    "SELECT count() FROM dead_letters",
    "SELECT text FROM report_text_original",
    "SELECT f.concept, d.original FROM findings_latest AS f JOIN deid_map AS d ON d.pseudonym = f.patient_id",
    "SELECT count() FROM findings_latest WHERE patient_id IN (SELECT pseudonym FROM deid_map)",
    "WITH o AS (SELECT * FROM report_text_original) SELECT count() FROM o",
    "SELECT accession FROM reports_latest UNION ALL SELECT accession FROM report_text_original",
    "SELECT (SELECT any(original) FROM radstream.deid_map)",
    "SELECT * FROM merge('radstream', '^deid')",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT * FROM view(SELECT * FROM radstream.deid_map)",
    "SELECT * FROM pseudonym_lookup",
    "SELECT * FROM innocent_counts",
    "SELECT name FROM system.tables",
    "SELECT 1; SELECT * FROM deid_map",
    "SELECT count() FROM findings_latest SETTINGS readonly = 0",
    "INSERT INTO findings VALUES (1)",
    "SELECT * FROM deid_map AS `x, table_name: radstream.findings`",
]


def test_roles_on_the_sql_page_and_the_audit_trail(secured: tuple[Settings, dict[str, str]]) -> None:
    s, tok = secured
    reps = [report(f"AC{i}", text="FINDINGS: 9 mm nodule in the right upper lobe.") for i in range(2)]
    produce_all(s, [(s.topics.reports, "report_finalized", f"default|{r['accession']}", r) for r in reps])
    produce_raw(s, s.topics.reports, b"default|BAD", b"not avro at all")  # -> a dead letter

    def loaded() -> bool:
        status, out = call(s, "/sql?format=csv", tok["steward"],
                           "SELECT toUInt8((SELECT count() FROM findings_latest) > 0 AND "
                           "(SELECT count() FROM dead_letters) > 0) AS ok")
        loaded.last = (status, out)  # type: ignore[attr-defined]
        return status == 200 and out.splitlines()[-1:] == ["1"]

    try:
        wait_until(loaded, timeout=120, every=1.0, what="findings and a dead letter in the warehouse")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {loaded.last}") from None  # type: ignore[attr-defined]
    calls = 0

    # analysts: the de-identified views
    for sql in ("SELECT count() FROM findings_latest", "SELECT accession, text FROM reports_latest",
                "SELECT number FROM numbers(3)", "SELECT 1"):
        status, out = call(s, "/sql?format=csv", tok["analyst"], sql)
        calls += 1
        assert status == 200, (sql, out)
    # ... and nothing restricted, however it is named
    for sql in REFUSED_FOR_ANALYSTS:
        status, out = call(s, "/sql", tok["analyst"], sql)
        calls += 1
        assert status == 403, (sql, status, out)
        assert "refused" in out or "not one valid statement" in out, (sql, out)
    status, out = call(s, "/sql", tok["analyst"], "SELECT * FROM deid_map")
    calls += 1
    assert "radstream.deid_map is not readable" in out
    status, out = call(s, "/sql", tok["analyst"], "SELECT * FROM innocent_counts")
    calls += 1
    assert "radstream.deid_map (read by the view radstream.pseudonym_lookup)" in out, out

    # stewards: the restricted tables too
    for sql in ("SELECT count() FROM deid_map", "SELECT count() FROM dead_letters",
                "SELECT text FROM report_text_original", "SELECT * FROM innocent_counts"):
        status, out = call(s, "/sql?format=csv", tok["steward"], sql)
        calls += 1
        assert status == 200, (sql, out)
    assert "Dr. Lee" in call(s, "/sql?format=csv", tok["steward"], "SELECT text FROM report_text_original")[1]
    calls += 1

    # no token, a bad token: 401; a role that may not query: 403
    assert call(s, "/sql", None, "SELECT 1")[0] == 401
    assert call(s, "/sql", "rst_000000000000_wrong", "SELECT 1")[0] == 401
    assert call(s, "/health")[0] == 401
    status, out = call(s, "/sql", tok["ingest"], "SELECT 1")
    assert status == 403 and "lacks the role" in out
    status, out = call(s, "/health", tok["analyst"])
    assert status == 200 and json.loads(out)["sink"] == "ok"

    # every query is in the audit table, with who, allowed or not, and the tables read
    def audited() -> list[dict[str, object]]:
        status, out = call(s, "/sql?format=jsonl", tok["steward"],
                           "SELECT actor, action, allowed, query, tables, rows, duration_ms, detail "
                           "FROM audit_log WHERE action IN ('sql.query', 'login.failure', 'http.request')")
        assert status == 200, out
        return [json.loads(line) for line in out.splitlines() if line]

    def complete() -> bool:
        events = audited()
        return sum(e["actor"] == "ana" and e["action"] == "sql.query" for e in events) >= len(
            REFUSED_FOR_ANALYSTS) + 6 and sum(e["action"] == "login.failure" for e in events) >= 3 and any(
            e["actor"] == "ing" for e in events)
    wait_until(complete, timeout=60, every=1.0, what="the audit events in audit_log")
    events = audited()
    analyst = [e for e in events if e["actor"] == "ana" and e["action"] == "sql.query"]
    assert len(analyst) == len(REFUSED_FOR_ANALYSTS) + 6
    for sql in REFUSED_FOR_ANALYSTS:
        assert any(e["query"] == sql and e["allowed"] is False for e in analyst), sql
    ok = next(e for e in analyst if e["query"] == "SELECT count() FROM findings_latest")
    assert ok["allowed"] is True and ok["rows"] == 1 and ok["duration_ms"] is not None
    assert {"radstream.findings_latest", "radstream.findings"} <= set(ok["tables"])  # the view expanded
    steward = [e for e in events if e["actor"] == "stu" and e["action"] == "sql.query"]
    assert any("report_text_original" in e["query"] and e["allowed"] for e in steward)
    assert sum(e["action"] == "login.failure" for e in events) == 3
    assert any(e["actor"] == "ing" and e["allowed"] is False for e in events)  # the 403
    assert calls > 0

    # the CLI: `radstream sql` as the analyst (RADSTREAM_TOKEN) is refused too; `radstream audit` lists
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(ROOT), "RADSTREAM_TOKEN": tok["analyst"]}
    out = subprocess.run([sys.executable, "-m", "radstream", "sql", "SELECT * FROM deid_map"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "not readable" in out.stderr, out.stderr
    env.pop("RADSTREAM_TOKEN")  # the OS user's local admin token
    out = subprocess.run([sys.executable, "-m", "radstream", "audit", "--user", "ana", "--refused",
                          "--format", "jsonl", "--limit", "100"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = [json.loads(line) for line in out.stdout.splitlines() if line]
    # the refusals above, the two with their message checked, and the CLI's
    assert len(listed) == len(REFUSED_FOR_ANALYSTS) + 3 and all(not e["allowed"] for e in listed)
    # the local audit log file has them too
    lines = Path(s.auth.audit_log).read_text().splitlines()
    assert sum('"actor": "ana"' in line for line in lines) >= len(REFUSED_FOR_ANALYSTS) + 6
