"""Local commands that open the store themselves (``radstream sql --direct``, or no worker serving the
embedded store; always with a ClickHouse server) check the caller's roles and audit every query, as the
worker's /sql page does: real subprocesses on a real embedded store, the audit on the real audit topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from radstream.config import Settings, settings_env
from sinks.clickhouse.client import open_client
from sinks.clickhouse.migrate import migrate
from streams.auth import TokenStore
from streams.serde import decode
from tests.helpers_chdb import seed_store_of
from tests.streams.helpers import consume

ROOT = Path(__file__).resolve().parents[2]


def sql(settings: Settings, query: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    env.pop("RADSTREAM_TOKEN", None)
    if token is not None:
        env["RADSTREAM_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "radstream", "sql", query, "--direct", "--format", "csv"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_direct_query_is_checked_against_the_callers_roles_and_audited(topic_settings: Settings,
                                                                          tmp_path: Path) -> None:
    s = topic_settings.replace(state_dir=str(tmp_path / "state"),
                               clickhouse={"url": "", "database": "radstream"})
    Path(s.state_dir).mkdir(parents=True)
    seed_store_of(s.clickhouse.url, "radstream")  # a migrated copy (tests/helpers_chdb.py)
    client = open_client(s.clickhouse)
    try:
        migrate(client, "radstream")
        client.command("INSERT INTO radstream.report_text_original (site, accession, version, text) "
                       "VALUES ('default', 'A1', 1, 'Dr. Lee')")
    finally:
        client.close()
    store = TokenStore(s.auth.token_file)
    tokens = {}
    for user, role in (("ana", "analyst"), ("ing", "ingest")):
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)

    ok = sql(s, "SELECT count() AS n FROM reports_latest", tokens["analyst"])
    assert ok.returncode == 0 and ok.stdout.splitlines() == ["\"n\"", "0"], ok.stderr
    refused = sql(s, "SELECT text FROM report_text_original", tokens["analyst"])
    assert refused.returncode != 0 and "report_text_original" in refused.stderr and "Dr. Lee" not in (
        refused.stdout + refused.stderr)
    no_role = sql(s, "SELECT 1", tokens["ingest"])
    assert no_role.returncode != 0 and "Dr. Lee" not in no_role.stdout, no_role.stdout
    bad = sql(s, "SELECT 1", "rs_nobody_0000")
    assert bad.returncode != 0 and "not a valid token" in bad.stderr
    # the OS user who owns the store: its local token, role admin, reads everything
    owner = sql(s, "SELECT text FROM report_text_original", None)
    assert owner.returncode == 0 and "Dr. Lee" in owner.stdout, owner.stderr

    lines = [json.loads(x) for x in Path(s.auth.audit_log).read_text().splitlines()]
    queries = [(e["actor"], e["allowed"], e["query"]) for e in lines if e["action"] == "sql.query"]
    assert queries[:4] == [("ana", True, "SELECT count() AS n FROM reports_latest"),
                           ("ana", False, "SELECT text FROM report_text_original"),
                           ("ing", False, "SELECT 1"),  # no query role: refused before the store opens
                           ("?", False, "SELECT 1")]  # a bad token: refused, nobody known
    assert queries[4][1:] == (True, "SELECT text FROM report_text_original") and queries[4][0] != "ana"
    assert len(queries) == 5
    assert all(json.loads(e["detail"])["endpoint"] == "cli" for e in lines if e["action"] == "sql.query")
    assert [e["action"] for e in lines if e["action"] != "sql.query"] == ["auth.add-user", "auth.add-token"]
    on_topic = [decode("audit_event", m.value()) for m in consume(s, s.topics.audit, len(queries))]
    # the queries on the topic too (keyed by actor: the actors' partitions in any order); the local
    # token's making is in the file only, as every change of `radstream auth` is
    assert sorted(e["event_id"] for e in on_topic) == sorted(e["event_id"] for e in lines
                                                              if e["action"] == "sql.query")
    # a query the engine refuses after the role check is on record too
    broken = sql(s, "SELECT no_such_column FROM reports_latest", tokens["analyst"])
    assert broken.returncode != 0
    last = json.loads(Path(s.auth.audit_log).read_text().splitlines()[-1])
    assert (last["actor"], last["action"], last["allowed"]) == ("ana", "sql.query", False)
    # with the engine's error code, not its message (a message may quote values the engine computed)
    reason = json.loads(last["detail"])["reason"]
    assert reason == "refused: the query could not be analysed (UNKNOWN_IDENTIFIER)"
