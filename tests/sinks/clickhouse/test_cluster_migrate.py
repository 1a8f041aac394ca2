"""``db migrate --cluster`` on a new and on a running cluster (``sinks.clickhouse.cluster_migrate``).

No ClickHouse server or Keeper installs here. What is real: every statement is checked with ClickHouse's
own parser in chDB, and the runner runs against chDB through clickhouse-connect configured with a cluster
`warehouse` of one shard, this process's engine: the Distributed tables, the views over them and the
inserts through them execute as sent. What is not: ``ON CLUSTER`` and the replication of
Replicated*MergeTree need Keeper, so the client boundary (``OneNode``) takes those two out of each
statement before chDB runs it; it records what the runner sent as sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.cluster import LOCAL_SUFFIX, load_layout
from sinks.clickhouse.cluster_migrate import ClusterPlan, migrate_cluster, plan_cluster
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate

from .test_cluster import CLUSTER, canonical, one_node

OLD = 11  # a cluster made before the re-keys (012, 014, 023, 032), 022's moves and 035's UPDATE
# one shard whose only replica is this process (is_local: the port is the configured tcp_port, where
# nothing listens: a local replica is read and written in process)
CONFIG = f"""<clickhouse><tcp_port>9000</tcp_port><remote_servers><{CLUSTER}><shard><replica>
<host>localhost</host><port>9000</port></replica></shard></{CLUSTER}></remote_servers></clickhouse>"""


@pytest.fixture(scope="module")
def plans() -> dict[str, ClusterPlan]:
    """The plan of every migration, and of those up to ``OLD`` (made before any store of a test is open:
    chDB hosts one engine per process)."""
    return {"now": plan_cluster("rs", CLUSTER), "old": plan_cluster("rs", CLUSTER, upto=OLD)}


@pytest.fixture
def store(tmp_path: Path, plans: dict[str, ClusterPlan]) -> Iterator[Client]:
    (tmp_path / "cluster.xml").write_text(CONFIG)
    url = f"chdb://{tmp_path / 'chdb'}?config-file={tmp_path / 'cluster.xml'}"
    client = open_client(ClickHouseConfig(url=url, database="default"), create_database=False)
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


def run(client: Client, plan: ClusterPlan) -> tuple[tuple[str, list[str]], list[str]]:
    node = OneNode(client)
    return migrate_cluster(cast(Client, node), "rs", plan), node.sent


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
    later = [m.version for m in now.migrations if m.version > OLD]
    fail_in = 33
    failing = now.upgrades[fail_in][5]
    node = OneNode(store, fail=failing)
    with pytest.raises(ConnectionError):
        migrate_cluster(cast(Client, node), "rs", now)
    before = [m for m in later if m < fail_in]
    expected: list[str] = []
    for v in before:
        expected += [*now.upgrades[v], f"record [{v}]"]
    # each migration's statements in order, each recorded right after its last statement ran
    assert node.sent == expected + now.upgrades[fail_in][:5]
    assert recorded(store) == [*range(1, OLD + 1), *before]
    (how, names), sent = run(store, now)
    rest = [m for m in later if m >= fail_in]
    assert how == "migrated" and [int(n[:3]) for n in names] == rest
    expected = []
    for v in rest:
        expected += [*now.upgrades[v], f"record [{v}]"]
    assert sent == expected  # the failed migration again from its first statement
    assert recorded(store) == [m.version for m in now.migrations]  # each once

    # the rows: kept through the re-keys, the title rewritten on the shard-local table
    rows = store.query("SELECT accession, title FROM rs.sections ORDER BY accession").result_rows
    assert rows == [("A7", "impression"), ("A8", "Findings")]
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
