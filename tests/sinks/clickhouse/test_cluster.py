"""The cluster DDL of ``db migrate --cluster``: no ClickHouse server installs here, so every statement is
checked with ClickHouse's own parser in chDB (``formatQuery``, ``EXPLAIN AST``), and the engines, keys and
columns of the rendered tables are compared with those of the single-node warehouse that the migrations
really create (read back from ``system.tables``), so a table added by a new migration is checked as well."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.cluster import ClusterLayoutError, cluster_statements, load_layout, schema
from sinks.clickhouse.sink import write_records

from .factories import BASE_TIME, finding, findings, registered, report

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


def one_node(stmt: str) -> str:
    """A statement as one node without Keeper runs it: no ON CLUSTER, the engine without replication."""
    stmt = stmt.replace(f" ON CLUSTER {CLUSTER}", "")
    return re.sub(r"ENGINE = Replicated(\w+)\('[^']*', '\{replica\}'(?:, )?", r"ENGINE = \1(", stmt)


def _sorted_rows(ch: Client, sql: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in ch.query(sql).result_rows), key=repr)


def test_on_a_one_shard_cluster_the_shard_local_views_answer_as_the_single_node_views(ch: Client) -> None:
    """The rewritten views run: on one node, over `_local` copies of the tables, each `V_local` returns
    exactly the rows of the single-node view `V` (so a cluster's answer is the union over its shards)."""
    reps = [report(f"A{i}", 1, patient_id=f"P{i % 3}", exam_time=BASE_TIME + timedelta(days=i))
            for i in range(6)]
    corrected = report("A0", 2, status="corrected", text="FINDINGS: small nodule only.")
    cancelled = report("A5", 2, status="cancelled")
    write_records(ch, "report_finalized", [*reps, corrected, cancelled])
    nlp = [findings(r, [finding("nodule", size_mm=float(i)), finding("effusion", negated=True)],
                    assessments=[("BI-RADS", str(i % 6))], critical=["pneumothorax"] if i % 2 else [],
                    communication_after=timedelta(minutes=i), chest_labels={"Nodule": "positive"})
           for i, r in enumerate(reps)]
    write_records(ch, "report_findings", [*nlp, findings(corrected, [finding("nodule", size_mm=3.0)])])
    write_records(ch, "retrieval_requested", [{"request_id": "q1", "project_id": "P-1", "requester": "ana",
                                              "accession": "A1", "destination_ae": "RESEARCH",
                                              "requested_time": BASE_TIME}])
    write_records(ch, "project_registration", [registered("P-1")])
    write_records(ch, "retrieval_status", [{"request_id": "q1", "project_id": "P-1", "state": st,
                                           "time": BASE_TIME + timedelta(seconds=i)}
                                          for i, st in enumerate(["queued", "moving", "completed"])])
    write_records(ch, "received_instance", [{
        "project_id": "P-1", "calling_ae": "ORTHANC", "called_ae": "RESEARCH",
        "study_instance_uid": reps[1]["study_instance_uid"], "series_instance_uid": f"1.9.{k}",
        "sop_instance_uid": f"1.9.{k}.1", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "accession": "A1",
        "modality": "CT", "path": f"/store/P-1/1.9.{k}/1.dcm", "size_bytes": 100, "time": BASE_TIME,
        "deidentified": True}
        for k in range(2)])

    layout = load_layout()
    stmts = cluster_statements(ch, "rs", CLUSTER)
    for stmt in stmts:
        if "ENGINE = Distributed" not in stmt and not stmt.startswith("CREATE DATABASE"):
            ch.command(one_node(stmt))
    for table in layout.sharded:
        ch.command(f"INSERT INTO rs.{table}_local SELECT * FROM rs.{table}")
    local_views = [created(s)[:-len("_local")] for s in stmts if s.startswith("CREATE OR REPLACE VIEW")
                   and created(s).endswith("_local")]
    expected = {"findings_latest", "nlp_latest", "note_nlp", "image_occurrence", "retrievals_latest"}
    assert expected <= set(local_views)
    for v in local_views:
        single = _sorted_rows(ch, f"SELECT * FROM rs.{v}")
        assert single or v in ("measurements_latest", "recommendations_latest"), v  # the data reach the view
        assert _sorted_rows(ch, f"SELECT * FROM rs.{v}_local") == single, v


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
    assert result.exit_code != 0 and "--print and --writers-stopped go with --cluster" in result.output, \
        result.output
