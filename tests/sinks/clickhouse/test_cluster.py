"""The cluster DDL of ``db migrate --cluster``: no ClickHouse server installs here, so every statement is
checked with ClickHouse's own parser in chDB (``formatQuery``, ``EXPLAIN AST``), and the engines, keys and
columns of the rendered tables are compared with those of the single-node warehouse that the migrations
really create (read back from ``system.tables``), so a table added by a new migration is checked as well."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.cluster import ClusterLayoutError, cluster_statements, load_layout, schema

CLUSTER = "warehouse"


def canonical(ch: Client, sql: str) -> str:
    return str(ch.query("SELECT formatQuery({q:String})", parameters={"q": sql}).result_rows[0][0])


def clauses(formatted: str) -> dict[str, str]:
    """ENGINE / PARTITION BY / ORDER BY / SETTINGS of a formatted CREATE TABLE, and its column block."""
    out: dict[str, str] = {}
    start, end = formatted.find("\n(\n"), formatted.find("\n)\nENGINE = ")
    if start >= 0 and end > start:
        out["columns"] = formatted[start:end]
    for line in formatted.splitlines():
        for clause in ("ENGINE = ", "PARTITION BY ", "ORDER BY ", "SETTINGS "):
            if line.startswith(clause):
                out[clause.strip(" =")] = line[len(clause):]
    return out


def engine_args(engine: str) -> tuple[str, list[str]]:
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", engine)
    assert m, engine
    return m.group(1), [a.strip() for a in (m.group(2) or "").split(",") if a.strip()]


def created(stmt: str) -> str:
    """The object a rendered CREATE statement makes (without the database)."""
    m = re.match(r"CREATE (?:TABLE IF NOT EXISTS|OR REPLACE VIEW|DATABASE IF NOT EXISTS) (?:\w+\.)?(\w+)",
                 stmt)
    assert m, stmt
    return m.group(1)


def test_every_statement_parses_as_a_create_on_the_cluster(ch: Client) -> None:
    stmts = cluster_statements(ch, "rs", CLUSTER)
    assert len(stmts) > 40
    for stmt in stmts:
        text = canonical(ch, stmt)
        assert text.split("\n")[0].split(" ON CLUSTER ")[1].split()[0] == CLUSTER, text[:300]
        ast = str(ch.command(f"EXPLAIN AST {stmt}"))
        assert ast.startswith("CreateQuery"), (stmt[:200], ast[:300])
    assert stmts[0] == f"CREATE DATABASE IF NOT EXISTS rs ON CLUSTER {CLUSTER}"


def test_replicated_tables_keep_the_engines_keys_and_columns_of_the_single_node_tables(ch: Client) -> None:
    layout = load_layout()
    single = schema(ch, "rs")
    rendered = {created(s): canonical(ch, s) for s in cluster_statements(ch, "rs", CLUSTER)}
    bases = {n: t for n, t in single.items() if t.engine != "View"}
    assert {"findings", "reports", "report_nlp", "retrieval_events", "schema_migrations"} <= set(bases)
    paths = set()
    for name, info in bases.items():
        sharded = name in layout.sharded
        assert sharded != (name in layout.everywhere), name
        mine = clauses(rendered[name + "_local" if sharded else name])
        theirs = clauses(canonical(ch, info.create_query))
        assert mine["columns"] == theirs["columns"], name
        for clause in ("PARTITION BY", "ORDER BY", "SETTINGS"):
            assert mine.get(clause) == theirs.get(clause), (name, clause, mine, theirs)
        engine, args = engine_args(mine["ENGINE"])
        single_engine, single_args = engine_args(theirs["ENGINE"])
        assert engine == "Replicated" + single_engine == "Replicated" + info.engine, name
        assert args[2:] == single_args, (name, args, single_args)  # the version column of ReplacingMergeTree
        path = args[0].strip("'")
        assert args[1] == "'{replica}'" and path not in paths, (name, args)
        assert ("{shard}" in path) == sharded
        assert path.endswith(f"/rs/{name}_local" if sharded else f"/rs/{name}")
        paths.add(path)
        if sharded:
            engine, args = engine_args(clauses(rendered[name])["ENGINE"])
            assert (engine, args) == ("Distributed", [CLUSTER, "rs", f"{name}_local", layout.sharded[name]])
        else:
            assert name + "_local" not in rendered


def test_views_run_on_each_shard_over_local_tables_and_are_read_through_distributed(ch: Client) -> None:
    layout = load_layout()
    single = schema(ch, "rs")
    stmts = cluster_statements(ch, "rs", CLUSTER)
    rendered = {created(s): canonical(ch, s) for s in stmts}
    order = [created(s) for s in stmts]
    views = [n for n, t in single.items() if t.engine == "View"]
    assert {"findings_latest", "reports_latest", "note_nlp", "retrievals_latest"} <= set(views)
    local_views = {v for v in views if v + "_local" in rendered}
    assert local_views >= {"findings_latest", "nlp_latest", "image_occurrence", "retrievals_latest"}
    assert "concept_codes" in rendered and "concept_codes" not in local_views  # reads no table
    for v in views:
        name = v + "_local" if v in local_views else v
        reads = set(re.findall(r"\brs\.(\w+)", rendered[name])) - {name}
        # created after what it reads
        assert all(order.index(r) < order.index(name) for r in reads), (v, reads)
        if v not in local_views:
            continue
        # on a shard a view reads only that shard's rows and the tables held in full on every node
        assert all(r.endswith("_local") or r in layout.everywhere or r in views and r not in local_views
                   for r in reads), (v, reads)
        engine, args = engine_args(clauses(rendered[v])["ENGINE"])
        assert (engine, args) == ("Distributed", [CLUSTER, "rs", f"{v}_local"])


def _key_columns(expr: str) -> set[str]:
    return set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\()", expr))


def test_rows_that_replace_or_join_each_other_are_on_one_shard(ch: Client) -> None:
    layout = load_layout()
    single = schema(ch, "rs")
    for table, key in layout.sharded.items():
        sorting = {c.strip() for c in single[table].sorting_key.split(",")}
        if table not in layout.key_outside_sorting_key:
            assert _key_columns(key) <= sorting, (table, key, sorting)
    # every table a view reads, through other views too, is sharded by one key
    views = {n: t for n, t in single.items() if t.engine == "View"}

    def tables_read(v: str) -> set[str]:
        refs = set(re.findall(r"\brs\.(\w+)", views[v].as_select))
        return {r for r in refs if r not in views} | {t for r in refs if r in views for t in tables_read(r)}

    for v in views:
        keys = {layout.sharded[t] for t in tables_read(v) if t in layout.sharded}
        assert len(keys) <= 1, (v, keys)


def test_a_table_with_no_place_in_the_layout_is_refused(ch: Client) -> None:
    ch.command("CREATE TABLE rs.new_table (k String, v Int64) ENGINE = ReplacingMergeTree(v) ORDER BY k")
    with pytest.raises(ClusterLayoutError, match="new_table is in no place"):
        cluster_statements(ch, "rs", CLUSTER)
    ch.command("DROP TABLE rs.new_table")
    ch.command("CREATE TABLE rs.scratch (k String) ENGINE = Memory")
    with pytest.raises(ClusterLayoutError, match="engine Memory"):
        cluster_statements(ch, "rs", CLUSTER)


def test_cluster_ddl_is_applied_only_to_servers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from radstream.cli import main

    env = {"RADSTREAM_STATE_DIR": str(tmp_path), "RADSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}"}
    result = CliRunner().invoke(main, ["db", "migrate", "--cluster", CLUSTER], env=env)
    assert result.exit_code != 0 and "needs ClickHouse servers" in result.output, result.output
    result = CliRunner().invoke(main, ["db", "migrate", "--print"], env=env)
    assert result.exit_code != 0 and "--print goes with --cluster" in result.output, result.output
