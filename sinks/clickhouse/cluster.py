"""The warehouse on a ClickHouse cluster: ``radstream db migrate --cluster NAME``.

The cluster DDL is derived from the single-node schema that the migrations (``ddl/``) really create, read
back from ``system.tables``, so a new migration is in it without a second copy to keep in step:

* every MergeTree table ``T`` becomes ``T_local``, ``Replicated<engine>`` with the same columns, version
  column, PARTITION BY, ORDER BY and settings, replicated at ``/clickhouse/tables/{shard}/<db>/T_local``
  among the replicas of its shard; ``T`` itself becomes a ``Distributed`` table over them, sharded by the
  key in ``cluster_layout.json`` (writers insert into it, readers read it);
* the small tables listed there as ``everywhere`` keep their name and have one full replica on every node
  (replication path without ``{shard}``);
* a view that reads a sharded table becomes ``V_local`` on every node, over the ``_local`` tables and
  views (the layout puts the rows a view joins on one shard), and ``V`` a ``Distributed`` table over it;
  so analysts' queries keep their names, and FINAL and the joins run shard-local, where they are correct;
* other views (over ``everywhere`` tables or none) are created as they are, on every node.

Every statement carries ``ON CLUSTER`` and is idempotent (IF NOT EXISTS, OR REPLACE). It creates the
current schema on a new cluster; a running cluster gets the later migrations in their cluster form
(``sinks.clickhouse.cluster_migrate``).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.config import ClickHouseConfig

LAYOUT_FILE = Path(__file__).with_name("cluster_layout.json")
LOCAL_SUFFIX = "_local"
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClusterLayoutError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layout:
    sharded: dict[str, str]  # table -> sharding key expression
    everywhere: frozenset[str]
    key_outside_sorting_key: dict[str, str]  # table -> why its sharding key may be outside its sorting key


def load_layout(path: Path = LAYOUT_FILE) -> Layout:
    doc = json.loads(path.read_text())
    layout = Layout(dict(doc["sharded"]), frozenset(doc["everywhere"]),
                    dict(doc.get("key_outside_sorting_key", {})))
    both = set(layout.sharded) & layout.everywhere
    if both:
        raise ClusterLayoutError(f"{path.name}: both sharded and everywhere: {sorted(both)}")
    return layout


@dataclass(frozen=True)
class TableInfo:
    name: str
    engine: str
    engine_full: str
    create_query: str
    as_select: str
    sorting_key: str
    partition_key: str


def ident(name: str) -> str:
    """An identifier as ClickHouse prints it: plain when it may be, else back-quoted."""
    return name if _PLAIN.match(name) else "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def schema(client: Client, database: str) -> dict[str, TableInfo]:
    """The tables and views of a single-node ``database`` (after the migrations), by name."""
    rows = client.query(
        "SELECT name, engine, engine_full, create_table_query, as_select, sorting_key, partition_key "
        "FROM system.tables WHERE database = {db:String} ORDER BY name",
        parameters={"db": database}).result_rows
    return {str(r[0]): TableInfo(*(str(v) for v in r)) for r in rows}


def references(sql: str, database: str, names: set[str]) -> set[str]:
    """The objects of ``database`` among ``names`` that a statement names as ``db.name``."""
    pattern = rf"(?<![\w.`]){re.escape(ident(database))}\.`?([A-Za-z0-9_]+)`?(?![\w`])"
    return {m for m in re.findall(pattern, sql) if m in names}


def _split_engine(info: TableInfo) -> tuple[str, str]:
    """``ReplacingMergeTree(version) PARTITION BY ...`` -> ("version", " PARTITION BY ...")."""
    rest = info.engine_full[len(info.engine):]
    if not rest.startswith("("):
        return "", rest
    depth = 0
    for i, ch in enumerate(rest):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return rest[1:i], rest[i + 1:]
    raise ClusterLayoutError(f"unbalanced engine arguments of {info.name}: {info.engine_full}")


def _columns(info: TableInfo) -> str:
    """The ``(columns, indexes)`` part of a table's CREATE statement."""
    start = info.create_query.find(" (")
    end = info.create_query.rfind(" ENGINE = " + info.engine_full)
    if start < 0 or end < start:
        raise ClusterLayoutError(f"cannot read the columns of {info.name} from: {info.create_query[:200]}")
    return info.create_query[start + 1:end]


def _merge_tree(info: TableInfo) -> None:
    if not info.engine.endswith("MergeTree"):
        raise ClusterLayoutError(f"{info.name}: no cluster form for engine {info.engine} "
                                 "(sinks/clickhouse/cluster.py)")


def replication_path(database: str, name: str, *, local: bool, path_suffix: str = "") -> str:
    """The Keeper path of table ``name``'s replicated form (``name_local`` if ``local``)."""
    group = "{shard}" if local else "all"  # `everywhere` tables: one replication group spanning every node
    return f"/clickhouse/tables/{group}/{database}/{name + LOCAL_SUFFIX if local else name}{path_suffix}"


def replicated_table(info: TableInfo, database: str, cluster: str, *, local: bool,
                     path_suffix: str = "") -> str:
    """``CREATE TABLE`` of ``info``'s replicated form: ``T_local`` (``local``, a shard's replicas) or ``T``
    (one replication group spanning every node). ``path_suffix`` makes the Keeper path of a table that a
    later migration creates unique (a re-keyed table is renamed to the old name, keeping its path)."""
    name = info.name + LOCAL_SUFFIX if local else info.name
    path = replication_path(database, info.name, local=local, path_suffix=path_suffix)
    _merge_tree(info)
    args, rest = _split_engine(info)
    engine_args = ", ".join(a for a in (f"'{path}'", "'{replica}'", args) if a)
    return (f"CREATE TABLE IF NOT EXISTS {ident(database)}.{ident(name)} ON CLUSTER {ident(cluster)} "
            f"{_columns(info)} ENGINE = Replicated{info.engine}({engine_args}){rest}")


def distributed(name: str, database: str, cluster: str, shard_key: str | None, *,
                replace: bool = False) -> str:
    """The ``Distributed`` table ``name`` over ``name_local``; ``replace``: made again (OR REPLACE, atomic)
    where its columns changed, since it copies them when it is created."""
    db, c = ident(database), ident(cluster)
    args = ", ".join([c, db, ident(name + LOCAL_SUFFIX)] + ([shard_key] if shard_key else []))
    how = "OR REPLACE TABLE" if replace else "TABLE IF NOT EXISTS"
    return (f"CREATE {how} {db}.{ident(name)} ON CLUSTER {c} "
            f"AS {db}.{ident(name + LOCAL_SUFFIX)} ENGINE = Distributed({args})")


def _view_order(views: dict[str, set[str]]) -> list[str]:
    """Views after the views they read (``views``: view -> the views it reads)."""
    done: list[str] = []

    def visit(v: str, path: tuple[str, ...]) -> None:
        if v in done:
            return
        if v in path:
            raise ClusterLayoutError(f"views read each other in a cycle: {' -> '.join((*path, v))}")
        for dep in sorted(views[v]):
            visit(dep, (*path, v))
        done.append(v)

    for v in sorted(views):
        visit(v, ())
    return done


@dataclass(frozen=True)
class Views:
    """Where the views of a schema go: ``reads`` (view -> the objects it reads), ``sharded`` (the views
    that read a sharded table, directly or through another view: ``V_local`` and a Distributed ``V``),
    ``order`` (each after the views it reads)."""

    reads: dict[str, set[str]]
    sharded: set[str]
    order: list[str]


def views_of(tables: dict[str, TableInfo], database: str, layout: Layout) -> Views:
    views = {n for n, t in tables.items() if t.engine == "View"}
    reads = {v: references(tables[v].as_select, database, set(tables)) for v in views}
    order = _view_order({v: reads[v] & views for v in views})
    sharded: set[str] = set()
    for v in order:
        if reads[v] & (set(layout.sharded) | sharded):
            sharded.add(v)
    return Views(reads, sharded, order)


def view_statements(view: str, tables: dict[str, TableInfo], views: Views, layout: Layout, database: str,
                    cluster: str, *, replace: bool = False) -> list[str]:
    """A view's cluster form: itself, or ``V_local`` over the ``_local`` tables and views plus the
    Distributed ``V`` over it (``replace``: that one made again, for a view whose columns may change)."""
    db, c = ident(database), ident(cluster)
    select = tables[view].as_select
    if view not in views.sharded:
        return [f"CREATE OR REPLACE VIEW {db}.{ident(view)} ON CLUSTER {c} AS {select}"]
    local = set(layout.sharded) | views.sharded
    for ref in sorted(views.reads[view] & local, key=len, reverse=True):
        select = re.sub(rf"(?<![\w.`]){re.escape(db)}\.`?{ref}`?(?![\w`])",
                        f"{db}.{ident(ref + LOCAL_SUFFIX)}", select)
    return [f"CREATE OR REPLACE VIEW {db}.{ident(view + LOCAL_SUFFIX)} ON CLUSTER {c} AS {select}",
            distributed(view, database, cluster, None, replace=replace)]


def cluster_statements(client: Client, database: str, cluster: str,
                       layout: Layout | None = None) -> list[str]:
    """The cluster DDL for the single-node schema of ``database`` that ``client`` sees."""
    layout = layout or load_layout()
    tables = schema(client, database)
    bases = {n: t for n, t in tables.items() if t.engine != "View"}
    for name, info in bases.items():
        _merge_tree(info)
        if name not in layout.sharded and name not in layout.everywhere:
            raise ClusterLayoutError(f"{name} is in no place of {LAYOUT_FILE.name}: add it to `sharded` "
                                     "(with its sharding key) or to `everywhere`")
    views = views_of(tables, database, layout)
    out = [f"CREATE DATABASE IF NOT EXISTS {ident(database)} ON CLUSTER {ident(cluster)}"]
    out += [replicated_table(info, database, cluster, local=name in layout.sharded)
            for name, info in sorted(bases.items())]
    out += [distributed(name, database, cluster, layout.sharded[name]) for name in sorted(bases)
            if name in layout.sharded]
    for v in views.order:
        out += view_statements(v, tables, views, layout, database, cluster)
    return out


def render_from_migrations(database: str, cluster: str) -> list[str]:
    """The cluster DDL of the current migrations: they are applied to a scratch embedded store first.

    Opens an embedded chDB engine in this process (chDB hosts one per process: call it where no other
    embedded store is open)."""
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.migrate import migrate

    with tempfile.TemporaryDirectory(prefix="radstream-cluster-") as tmp:
        client = open_client(ClickHouseConfig(url=f"chdb://{tmp}/chdb", database=database))
        try:
            migrate(client, database)
            return cluster_statements(client, database, cluster)
        finally:
            client.close()
