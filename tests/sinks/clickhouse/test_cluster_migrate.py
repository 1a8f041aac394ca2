"""``db migrate --cluster`` on a new and on a running cluster (``sinks.clickhouse.cluster_migrate``).

No ClickHouse server installs here. What is real: every statement is checked with ClickHouse's own parser
in chDB, and the runner runs against chDB through clickhouse-connect configured with a cluster
`warehouse` of one shard, this process's engine: the Distributed tables, the views over them and the
inserts through them execute as sent. chDB refuses ``ON CLUSTER`` ("Replicated DDL queries are
disabled"), so every client boundary here takes it out of each statement, and records what the runner
sent as sent. Replication: ``OneNode`` takes it out too, so that rows can be written and mutated; the
mutations' test runs real ReplicatedMergeTree tables on an engine with ClickHouse's in-process test
keeper in a child process (the engine's checks of a mutation; its replicas are read-only, so it runs
without rows). A re-key's resume after its RENAME (``Rekey``) has no test here: on that test keeper the
engine hangs or crashes after a replicated table is renamed or dropped (docs/operations.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.cluster import LOCAL_SUFFIX, ClusterLayoutError, Layout, load_layout
from sinks.clickhouse.cluster_migrate import (
    ClusterMigrationError,
    ClusterPlan,
    literal_sets,
    migrate_cluster,
    plan_cluster,
)
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate

from .test_cluster import CLUSTER, canonical, one_node

OLD = 11  # a cluster made before the re-keys (012, 014, 023, 032), 022's moves and 035's UPDATE
# one shard whose only replica is this process (is_local: the port is the configured tcp_port, where
# nothing listens: a local replica is read and written in process)
CONFIG = f"""<clickhouse><tcp_port>9000</tcp_port><remote_servers><{CLUSTER}><shard><replica>
<host>localhost</host><port>9000</port></replica></shard></{CLUSTER}></remote_servers>{{keeper}}</clickhouse>"""
# ClickHouse's in-process test keeper and the macros of the replicated tables' paths
KEEPER = """<zookeeper><implementation>testkeeper</implementation></zookeeper>
<macros><shard>1</shard><replica>r1</replica></macros>"""
REKEYS = {12, 14, 23, 32}


@pytest.fixture(scope="module")
def plans() -> dict[str, ClusterPlan]:
    """The plan of every migration, and of those up to ``OLD`` (made before any store of a test is open:
    chDB hosts one engine per process)."""
    return {"now": plan_cluster("rs", CLUSTER), "old": plan_cluster("rs", CLUSTER, upto=OLD),
            "13": plan_cluster("rs", CLUSTER, upto=13), "22": plan_cluster("rs", CLUSTER, upto=22)}


def cluster_store(tmp_path: Path) -> Client:
    """An embedded store whose engine has the cluster ``CLUSTER`` of one local shard."""
    (tmp_path / "cluster.xml").write_text(CONFIG.replace("{keeper}", ""))
    url = f"chdb://{tmp_path / 'chdb'}?config-file={tmp_path / 'cluster.xml'}"
    return open_client(ClickHouseConfig(url=url, database="default"), create_database=False)


@pytest.fixture
def store(tmp_path: Path, plans: dict[str, ClusterPlan]) -> Iterator[Client]:
    client = cluster_store(tmp_path)
    try:
        yield client
    finally:
        client.close()


class OneNode:
    """The client boundary: what the runner sends, recorded as sent, then run without ``ON CLUSTER`` and
    replication (``one_node``); ``fail`` makes the call that would send that statement fail."""

    def __init__(self, client: Client, fail: str | None = None) -> None:
        self.client, self.fail, self.sent = client, fail, cast(list[str], [])

    def command(self, cmd: str, settings: dict[str, Any] | None = None) -> Any:
        if cmd == self.fail:
            self.fail = None
            raise ConnectionError("the server went away")
        self.sent.append(cmd)
        return self.client.command(one_node(cmd), settings=settings)

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.query(*args, **kwargs)

    def insert(self, table: str, rows: list[list[Any]], column_names: list[str]) -> Any:
        self.sent.append(f"record {[r[0] for r in rows]}")
        return self.client.insert(table, rows, column_names=column_names)


def run(client: Client, plan: ClusterPlan, node: OneNode | None = None,
        writers_stopped: bool = True) -> tuple[tuple[str, list[str]], list[str]]:
    node = node or OneNode(client)
    return migrate_cluster(cast(Client, node), "rs", plan, writers_stopped=writers_stopped), node.sent


def recorded(client: Client) -> list[int]:
    return [int(r[0]) for r in client.query("SELECT version FROM rs.schema_migrations ORDER BY version, "
                                            "applied_at").result_rows]


def columns(client: Client, database: str) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for r in client.query("SELECT table, name, type, default_kind, default_expression FROM system.columns "
                          "WHERE database = {d:String} ORDER BY table, position", parameters={"d": database}
                          ).result_rows:
        out.setdefault(str(r[0]), []).append(tuple(r[1:]))
    return out


def test_every_statement_of_every_migration_parses_in_its_cluster_form(plans: dict[str, ClusterPlan],
                                                                     store: Client) -> None:
    layout = load_layout()
    kinds = {"ALTER": "AlterQuery", "CREATE": "CreateQuery", "INSERT": "InsertQuery", "RENAME": "Rename",
             "DROP": "DropQuery", "OPTIMIZE": "OptimizeQuery"}
    seen: set[str] = set()
    for version, stmts in plans["now"].upgrades.items():
        assert stmts, version
        for stmt in stmts:
            kind = stmt.split()[0]
            seen.add(kind)
            ast = str(store.command(f"EXPLAIN AST {stmt}"))
            assert ast.startswith(kinds[kind]), (version, stmt[:200], ast[:200])
            text = canonical(store, stmt)
            if kind == "INSERT":  # once, through the Distributed tables
                assert " ON CLUSTER " not in text, (version, stmt[:200])
                continue
            assert re.search(rf"\bON CLUSTER {CLUSTER}\b", text), (version, text[:300])
            m = re.match(r"(?:ALTER|OPTIMIZE) TABLE rs\.(\w+)", stmt)
            if m:  # a mutation, an index, a setting: on the shard-local tables
                assert m.group(1) not in layout.sharded, stmt
    assert seen == set(kinds)
    (update,) = plans["now"].upgrades[35]
    assert re.match(rf"ALTER TABLE rs\.sections_local ON CLUSTER {CLUSTER}\s+UPDATE title = name\s", update)
    assert "mutations_sync = 2" in canonical(store, update)


def test_a_new_cluster_gets_the_create_set_then_every_migration_recorded(plans: dict[str, ClusterPlan],
                                                                        store: Client) -> None:
    plan = plans["now"]
    (how, names), sent = run(store, plan)
    versions = [m.version for m in plan.migrations]
    assert how == "created" and len(names) == len(versions)
    assert sent == [*plan.fresh, f"record {versions}"]
    assert recorded(store) == versions
    assert run(store, plan) == (("migrated", []), [])  # again: nothing to run, nothing sent
    # the sink's inserts go through the Distributed tables to the shard-local ones
    store.command("INSERT INTO rs.sections (site, accession, report_version, name, title) "
                  "VALUES ('s', 'A1', 1, 'impression', 'Impression')")
    assert store.query("SELECT accession FROM rs.sections_local").result_rows == [("A1",)]


def test_a_running_cluster_runs_each_later_migration_then_records_it_and_resumes_after_a_failure(
        plans: dict[str, ClusterPlan], store: Client) -> None:
    old, now = plans["old"], plans["now"]
    assert run(store, old)[0][0] == "created" and recorded(store) == list(range(1, OLD + 1))
    # rows of the old cluster, written through its Distributed tables: a section title with a date and a
    # name in it (035 rewrites it to the section's name), an instance of a de-identified project
    store.command("INSERT INTO rs.sections (site, accession, report_version, processed_time, section_idx, "
                  "name, title) VALUES ('s', 'A7', 1, '2025-03-04 05:06:07', 0, 'impression', "
                  "'IMPRESSION (read by Dr. Q on 2025-03-04)'), ('s', 'A8', 1, '2025-03-04 05:06:07', 0, "
                  "'findings', 'Findings')")
    # a de-identified and an identified project, an event of each naming a study by its UID
    store.command("INSERT INTO rs.projects (project_id, identified, time) VALUES ('P-de', false, "
                  "'2025-01-01 00:00:00'), ('P-id', true, '2025-01-01 00:00:00')")
    store.command("INSERT INTO rs.retrieval_events (request_id, project_id, state, study_instance_uid, time) "
                  "VALUES ('q1', 'P-de', 'completed', '1.2.3', '2025-03-04 05:06:07'), "
                  "('q2', 'P-id', 'completed', '1.2.4', '2025-03-04 05:06:07')")
    later = [m.version for m in now.migrations if m.version > OLD]
    fail_in = 33
    failing = now.upgrades[fail_in][5]
    node = OneNode(store, fail=failing)
    with pytest.raises(ConnectionError):
        migrate_cluster(cast(Client, node), "rs", now, writers_stopped=True)
    before = [m for m in later if m < fail_in]
    expected: list[str] = []
    for v in before:
        expected += [*literal_sets(store, now.upgrades[v]), f"record [{v}]"]
    # each migration's statements in order, each recorded right after its last statement ran
    assert node.sent == expected + now.upgrades[fail_in][:5]
    assert recorded(store) == [*range(1, OLD + 1), *before]
    (how, names), sent = run(store, now)
    rest = [m for m in later if m >= fail_in]
    assert how == "migrated" and [int(n[:3]) for n in names] == rest
    expected = []
    for v in rest:
        expected += [*literal_sets(store, now.upgrades[v]), f"record [{v}]"]
    assert sent == expected  # the failed migration again from its first statement
    # every mutation went with its IN set as literals, read from the cluster (P-de: the one de-identified)
    alters = [s for s in node.sent + sent if s.startswith("ALTER")]
    assert not [s for s in alters if re.search(r"IN\s*\(\s*SELECT", s, re.I)]
    assert [s for s in alters if s.startswith("ALTER TABLE rs.retrieval_events_local ON CLUSTER warehouse"
                                              "\nUPDATE") and "NOT IN ('P-de')" in s]
    assert recorded(store) == [m.version for m in now.migrations]  # each once

    # the rows: kept through the re-keys, the title rewritten on the shard-local table
    rows = store.query("SELECT accession, title FROM rs.sections ORDER BY accession").result_rows
    assert rows == [("A7", "impression"), ("A8", "Findings")]
    # 024: the UIDs of the identified project's events moved to the stewards' table, blanked in the
    # analysts' one; the de-identified project's kept
    uids = "SELECT project_id, study_instance_uid FROM rs.{} ORDER BY project_id"
    assert store.query(uids.format("retrieval_events")).result_rows == [("P-de", "1.2.3"), ("P-id", "")]
    assert store.query(uids.format("retrieval_events_identified")).result_rows == [("P-id", "1.2.4")]
    # the upgraded cluster has the tables and views of a new one: compared with a single node migrated
    # in the same engine (database `single`)
    migrate(store, "single")
    single, cluster = columns(store, "single"), columns(store, "rs")
    layout = load_layout()
    kinds = dict(store.query("SELECT name, engine FROM system.tables WHERE database = 'single'").result_rows)
    for name, cols in single.items():
        if name in layout.sharded or kinds[name] == "View" and name + LOCAL_SUFFIX in cluster:
            assert cluster[name + LOCAL_SUFFIX] == cols, name
        assert cluster[name] == cols, name  # the Distributed tables too: made again when columns changed
    leftovers = set(cluster) - set(single) - {n + LOCAL_SUFFIX for n in single}
    assert not leftovers  # no _rekey or _preNNN table left
    keys = {str(r[0]): (str(r[1]), str(r[2])) for r in store.query(
        "SELECT name, sorting_key, partition_key FROM system.tables WHERE database = 'rs'").result_rows}
    for r in store.query("SELECT name, sorting_key, partition_key FROM system.tables "
                         "WHERE database = 'single' AND engine LIKE '%MergeTree'").result_rows:
        name = str(r[0])
        assert keys[name + LOCAL_SUFFIX if name in layout.sharded else name] == (str(r[1]), str(r[2])), name


def _ddl(tmp_path: Path, files: dict[str, str]) -> Path:
    ddl = tmp_path / "ddl"
    ddl.mkdir()
    for name, sql in files.items():
        (ddl / name).write_text(sql)
    return ddl


ENGINES = "SELECT name, engine FROM system.tables WHERE database = 'rs'"
TINY = Layout({"t": "cityHash64(k)"}, frozenset({"e", "schema_migrations"}), {})
TINY_DDL = {
    "001_tables.sql": "CREATE TABLE IF NOT EXISTS {db}.t (k String, v Int64) ENGINE = ReplacingMergeTree(v) "
                      "ORDER BY k;\nCREATE TABLE IF NOT EXISTS {db}.e (k String) ENGINE = ReplacingMergeTree "
                      "ORDER BY k;\nCREATE OR REPLACE VIEW {db}.v AS SELECT k FROM {db}.e;\n",
    # the view comes to read the sharded table: V_local and a Distributed V in place of the view
    "002_view_sharded.sql": "CREATE OR REPLACE VIEW {db}.v AS SELECT k FROM {db}.t FINAL;\n",
    # and back: the Distributed V and V_local go, V is a view on every node again
    "003_view_all_nodes.sql": "CREATE OR REPLACE VIEW {db}.v AS SELECT k FROM {db}.e;\n",
}


def test_a_view_that_comes_to_read_a_sharded_table_and_back_is_replaced(tmp_path: Path) -> None:
    ddl = _ddl(tmp_path, TINY_DDL)
    old = plan_cluster("rs", CLUSTER, ddl, upto=1, layout=TINY)
    now = plan_cluster("rs", CLUSTER, ddl, layout=TINY)
    on = f"ON CLUSTER {CLUSTER}"
    assert [s.split(" AS ")[0] for s in now.upgrades[2]] == [
        f"CREATE OR REPLACE VIEW rs.v_local {on}", f"CREATE OR REPLACE TABLE rs.v {on}"]
    assert [s.split(" AS ")[0] for s in now.upgrades[3]] == [
        f"DROP TABLE IF EXISTS rs.v {on} SYNC", f"CREATE OR REPLACE VIEW rs.v {on}",
        f"DROP VIEW IF EXISTS rs.v_local {on} SYNC"]
    client = cluster_store(tmp_path)
    try:
        assert run(client, old)[0][0] == "created"
        client.command("INSERT INTO rs.t VALUES ('in-t', 1)")
        client.command("INSERT INTO rs.e VALUES ('in-e')")
        assert client.query("SELECT k FROM rs.v").result_rows == [("in-e",)]
        assert run(client, plan_upto(now, 2))[0] == ("migrated", ["002_view_sharded"])
        engines = dict(client.query(ENGINES).result_rows)
        assert engines["v"] == "Distributed" and engines["v_local"] == "View"
        assert client.query("SELECT k FROM rs.v").result_rows == [("in-t",)]
        assert run(client, now)[0] == ("migrated", ["003_view_all_nodes"])
        engines = dict(client.query(ENGINES).result_rows)
        assert engines["v"] == "View" and "v_local" not in engines
        assert client.query("SELECT k FROM rs.v").result_rows == [("in-e",)]
    finally:
        client.close()


def plan_upto(plan: ClusterPlan, version: int) -> ClusterPlan:
    return replace(plan, migrations=[m for m in plan.migrations if m.version <= version])


def test_a_statement_without_a_cluster_form_or_a_table_without_a_place_is_refused(tmp_path: Path) -> None:
    ddl = _ddl(tmp_path, {**TINY_DDL, "004_truncate.sql": "TRUNCATE TABLE {db}.t;\n"})
    with pytest.raises(ClusterLayoutError, match="no cluster form for: TRUNCATE TABLE"):
        plan_cluster("rs", CLUSTER, ddl, layout=TINY)
    (ddl / "004_truncate.sql").write_text("CREATE TABLE {db}.n (k String) ENGINE = MergeTree ORDER BY k;\n")
    with pytest.raises(ClusterLayoutError, match="n is in no place"):
        plan_cluster("rs", CLUSTER, ddl, layout=TINY)


def test_a_rekey_runs_only_when_the_operator_says_the_writers_are_stopped(plans: dict[str, ClusterPlan],
                                                                          store: Client) -> None:
    old, now = plans["old"], plans["now"]
    assert set(now.rekeys) == REKEYS  # the migrations with a RENAME: those that copy tables to a new key
    run(store, old)
    node = OneNode(store)
    with pytest.raises(ClusterMigrationError, match=r"012_nlp_version_keys, 014_report_current, "
                       r"023_audit_replays_only, 032_dead_letters_key copy tables.*--writers-stopped; "
                       "nothing was run"):
        run(store, now, node, writers_stopped=False)
    assert node.sent == [] and recorded(store) == list(range(1, OLD + 1))
    # past the re-keys, a run needs no such word
    assert run(store, now)[0][0] == "migrated"
    assert run(store, now, writers_stopped=False) == (("migrated", []), [])


# Run in a child process: after a mutation was tried on a test keeper replica, chDB's engine hangs or aborts
# when it shuts down, so the child reports on stdout and leaves with os._exit, before that.
_TRY_MUTATIONS = f"""
import json, os, sys
from pathlib import Path
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.cluster_migrate import literal_sets
job = json.load(sys.stdin)
tmp = Path(job["dir"])
(tmp / "c.xml").write_text(job["config"])
url = f"chdb://{{tmp}}/chdb?config-file={{tmp}}/c.xml"
client = open_client(ClickHouseConfig(url=url, database="default"), create_database=False)
for stmt in job["fresh"]:
    client.command(stmt.replace(" ON CLUSTER {CLUSTER}", ""))
print(json.dumps(client.query("SELECT name, engine FROM system.tables WHERE database = 'rs'").result_rows))
for planned in job["migrations"]:
    for stmt, sent in zip(planned, literal_sets(client, planned), strict=True):
        if not (stmt.startswith("ALTER") and "(SELECT" in stmt):
            continue
        out = {{"sent": sent}}
        for form, sql in (("planned_error", stmt), ("sent_error", sent)):
            try:
                client.command(sql.replace(" ON CLUSTER {CLUSTER}", ""), settings={{"mutations_sync": 2}})
                out[form] = ""
            except Exception as e:
                out[form] = str(e).splitlines()[0]
        print(json.dumps(out))
sys.stdout.flush()
os._exit(0)
"""


def test_mutations_with_an_in_subquery_go_to_replicated_tables_as_literal_sets(
        plans: dict[str, ClusterPlan], tmp_path: Path) -> None:
    """On a real ReplicatedMergeTree: the planned form of 024, 027 and 028's mutations (IN (SELECT ...)) is
    refused (Code 36), the form the runner sends passes the engine's checks (then this read-only test
    keeper replica cannot assign it: Code 236; a server's replica runs it)."""
    import json
    import os
    import subprocess
    import sys

    now = plans["now"]
    job = {"dir": str(tmp_path), "config": CONFIG.replace("{keeper}", KEEPER),
           "fresh": [s for s in now.fresh if "rs.schema_migrations " not in s],
           "migrations": [now.upgrades[v] for v in (24, 27, 28)]}
    child = subprocess.run([sys.executable, "-c", _TRY_MUTATIONS], input=json.dumps(job), text=True,
                           capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    lines = child.stdout.splitlines()
    assert child.returncode == 0 and lines, child.stderr[-2000:]
    engines = dict(json.loads(lines[0]))
    for table in ("received_instances_local", "retrieval_events_local", "projects"):
        assert engines[table].startswith("Replicated"), table
    tried = [json.loads(line) for line in lines[1:]]
    assert len(tried) == 4  # 024's UPDATE, 027's DELETE and UPDATE, 028's DELETE
    for t in tried:
        assert re.search(r"\bIN \(\)", t["sent"]) and "SELECT" not in t["sent"], t  # no project registered
        assert re.match(r"Code: 36\b.*nondeterministic", t["planned_error"]), t
        assert re.match(r"Code: 236\b.*Cannot assign mutation", t["sent_error"]), t
