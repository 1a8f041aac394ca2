"""``radstream db migrate --cluster NAME``: the migrations on a ClickHouse cluster.

A new cluster (no ``schema_migrations`` rows) gets the CREATE set of the current schema
(``sinks.clickhouse.cluster.cluster_statements``), then every migration is recorded. A running cluster
gets each migration it has not recorded in its cluster form, in order, and each is recorded only after
all of its statements ran; one that fails stops the run unrecorded, and the next run starts again at its
first statement (as the single-node runner: the statements are idempotent, but a ``RENAME``).

The cluster form of a migration is made statement by statement while the statement runs on a scratch
single-node store (embedded chDB), which tells what the statement made:

* ``CREATE TABLE``: the replicated table as the single node has it now (``T_local`` and a Distributed
  ``T`` for a sharded table), its Keeper path suffixed with the migration's number (``@012``): a
  re-keyed table is renamed to the old name and keeps its path, which a later re-key must not reuse;
* ``CREATE OR REPLACE VIEW``: the view (``V_local`` and the Distributed ``V`` made again for a view that
  reads sharded tables);
* ``ALTER TABLE`` (columns, indexes, settings, ``UPDATE``/``DELETE``/``MATERIALIZE`` mutations):
  ``ON CLUSTER`` on ``T_local`` of a sharded table (a Distributed table takes no mutation), on ``T`` of
  an all-node one; the Distributed ``T`` made again when the table's columns changed;
* ``INSERT ... SELECT``: as it is, once, through the Distributed tables (they send each row to its
  shard and read every shard);
* ``RENAME TABLE``: the ``_local`` tables renamed ``ON CLUSTER``, the Distributed tables of the new
  names made over them, those of the old names dropped;
* ``DROP TABLE`` and ``OPTIMIZE TABLE``: ``ON CLUSTER`` on the ``_local`` table (and the Distributed one);
* anything else: refused (ClusterLayoutError), so that nothing is recorded that did not run.

Each statement is sent with ``CLUSTER_SETTINGS`` (docs/operations.md).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.cluster import (
    LOCAL_SUFFIX,
    ClusterLayoutError,
    Layout,
    TableInfo,
    cluster_statements,
    distributed,
    ident,
    load_layout,
    replicated_table,
    schema,
    view_statements,
    views_of,
)
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import (
    DDL_DIR,
    Migration,
    applied_checksums,
    ensure_migrations_table,
    migrations,
    pending,
    statements,
)

# an ALTER returns once every replica has it, a mutation once it is done on every replica (so the next
# statement and the record see it); a mutation's subqueries (ddl/024, 027, 028 read `projects`) run where
# it is started and go to the replicas as literals, as Replicated tables need; an INSERT through a
# Distributed table returns once the shards have its rows; a query over Distributed tables runs its
# IN/JOIN subqueries over Distributed tables once, on the initiator (GLOBAL)
CLUSTER_SETTINGS: dict[str, object] = {
    "alter_sync": 2, "mutations_sync": 2, "mutations_execute_subqueries_on_initiator": 1,
    "distributed_foreground_insert": 1, "distributed_product_mode": "global",
}

_NAME = r"(?:`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*))"
# statement heads (before ``db.name``) and the form each takes
_FORMS = ((r"CREATE OR REPLACE VIEW", "view"), (r"CREATE TABLE(?:\s+IF NOT EXISTS)?", "create"),
          (r"ALTER TABLE", "alter"), (r"DROP TABLE(?:\s+IF EXISTS)?", "drop"),
          (r"OPTIMIZE TABLE", "optimize"))


@dataclass(frozen=True)
class ClusterPlan:
    """What ``migrate_cluster`` may run: ``fresh`` (the CREATE set of the schema after ``migrations``) and,
    per migration version, its cluster form."""

    migrations: list[Migration]
    fresh: list[str]
    upgrades: dict[int, list[str]]


def _object(stmt: str, head: str, database: str) -> tuple[str, str] | None:
    """(name, the rest of the statement) when ``stmt`` starts with ``head db.name``."""
    m = re.match(rf"{head}\s+(?:`{re.escape(database)}`|{re.escape(database)})\.{_NAME}", stmt, re.S)
    if m is None:
        return None
    return m.group(1) or m.group(2), stmt[m.end():]


def _renames(stmt: str, database: str) -> list[tuple[str, str]]:
    db = rf"(?:`{re.escape(database)}`|{re.escape(database)})"
    return [(a or b, c or d) for a, b, c, d in re.findall(rf"{db}\.{_NAME}\s+TO\s+{db}\.{_NAME}", stmt)]


def _placements(stmts: Sequence[str], database: str, layout: Layout) -> dict[str, str | None]:
    """Table -> its sharding key (None: on every node), the tables a migration renames included: the
    new copy of a re-keyed table (``T_rekey``) and the old one (``T_pre012``) are placed as ``T``."""
    place: dict[str, str | None] = {**layout.sharded, **{t: None for t in layout.everywhere}}
    pairs = [p for s in stmts if s.upper().startswith("RENAME TABLE") for p in _renames(s, database)]
    for _ in range(len(pairs) + 1):
        for a, b in pairs:
            if b in place and a not in place:
                place[a] = place[b]
            if a in place and b not in place:
                place[b] = place[a]
    return place


class _Translator:
    """The cluster form of migration statements, made while they run on a scratch single-node store."""

    def __init__(self, scratch: Client, database: str, cluster: str, layout: Layout) -> None:
        self.scratch, self.database, self.cluster, self.layout = scratch, database, cluster, layout
        self.db, self.c = ident(database), ident(cluster)

    def columns(self) -> dict[str, list[tuple[str, ...]]]:
        rows = self.scratch.query(
            "SELECT table, name, type, default_kind, default_expression, comment FROM system.columns "
            "WHERE database = {db:String} ORDER BY table, position",
            parameters={"db": self.database}).result_rows
        out: dict[str, list[tuple[str, ...]]] = {}
        for r in rows:
            out.setdefault(str(r[0]), []).append(tuple(str(v) for v in r[1:]))
        return out

    def migration(self, mig: Migration) -> list[str]:
        stmts = statements(mig.text, self.database)
        place = _placements(stmts, self.database, self.layout)
        before, cols_before = schema(self.scratch, self.database), self.columns()
        out: list[str] = []
        for stmt in stmts:
            self.scratch.command(stmt)
            after, cols_after = schema(self.scratch, self.database), self.columns()
            out += self.statement(stmt, mig.version, place, before, after, cols_before, cols_after)
            before, cols_before = after, cols_after
        return out

    def _place(self, name: str, place: dict[str, str | None], stmt: str) -> str | None:
        if name not in place:
            raise ClusterLayoutError(f"{name} is in no place of cluster_layout.json: {stmt[:120]}")
        return place[name]

    def _target(self, name: str, sharded: bool) -> str:
        return f"{self.db}.{ident(name + LOCAL_SUFFIX if sharded else name)}"

    def statement(self, stmt: str, version: int, place: dict[str, str | None], before: dict[str, TableInfo],
                  after: dict[str, TableInfo], cols_before: dict[str, list[tuple[str, ...]]],
                  cols_after: dict[str, list[tuple[str, ...]]]) -> list[str]:
        upper = stmt.upper()
        if upper.startswith("INSERT INTO"):
            return [stmt]  # through the Distributed tables (CLUSTER_SETTINGS)
        if upper.startswith("RENAME TABLE"):
            return self._rename(stmt, place)
        for head, form in _FORMS:
            found = _object(stmt, head, self.database)
            if found is None:
                continue
            name, rest = found
            if form == "view":
                return self._view(name, before, after)
            if form == "drop" and name in before and before[name].engine == "View":
                return self._drop_view(name, before)
            if form in ("alter", "create") and (name not in after or after[name].engine == "View"):
                break  # an ALTER of a view, a CREATE that made nothing: no form for them
            key = self._place(name, place, stmt)
            if form == "create":
                return self._create(after[name], key, version)
            if form == "alter":
                return self._alter(name, rest, key, cols_before.get(name) != cols_after.get(name))
            if form == "drop":
                return self._drop_table(name, key is not None)
            return [f"OPTIMIZE TABLE {self._target(name, key is not None)} ON CLUSTER {self.c}{rest}"]
        raise ClusterLayoutError(f"no cluster form for: {stmt[:120]} (sinks/clickhouse/cluster_migrate.py)")

    def _view(self, name: str, before: dict[str, TableInfo], after: dict[str, TableInfo]) -> list[str]:
        views = views_of(after, self.database, self.layout)
        # a view that no longer reads a sharded table: its Distributed table and V_local go
        unsharded = name in views_of(before, self.database, self.layout).sharded and name not in views.sharded
        out = [self._drop(name, False)] if unsharded else []
        out += view_statements(name, after, views, self.layout, self.database, self.cluster, replace=True)
        if unsharded:
            out.append(self._drop(name, True, "VIEW"))
        return out

    def _create(self, info: TableInfo, key: str | None, version: int) -> list[str]:
        out = [replicated_table(info, self.database, self.cluster, local=key is not None,
                                path_suffix=f"@{version:03d}")]
        if key is not None:
            out.append(distributed(info.name, self.database, self.cluster, key))
        return out

    def _alter(self, name: str, rest: str, key: str | None, columns_changed: bool) -> list[str]:
        out = [f"ALTER TABLE {self._target(name, key is not None)} ON CLUSTER {self.c}{rest}"]
        if key is not None and columns_changed:
            out.append(distributed(name, self.database, self.cluster, key, replace=True))
        return out

    def _rename(self, stmt: str, place: dict[str, str | None]) -> list[str]:
        pairs = _renames(stmt, self.database)
        keys = {a: self._place(a, place, stmt) for a, _ in pairs}
        moves = ", ".join(f"{self._target(a, keys[a] is not None)} TO {self._target(b, keys[a] is not None)}"
                          for a, b in pairs)
        out = [f"RENAME TABLE {moves} ON CLUSTER {self.c}"]
        targets = {b for _, b in pairs}
        out += [distributed(b, self.database, self.cluster, keys[a], replace=True)
                for a, b in pairs if keys[a] is not None]
        return out + [self._drop(a, False) for a, _ in pairs if keys[a] is not None and a not in targets]

    def _drop_view(self, name: str, before: dict[str, TableInfo]) -> list[str]:
        if name not in views_of(before, self.database, self.layout).sharded:
            return [self._drop(name, False, "VIEW")]
        return [self._drop(name, False), self._drop(name, True, "VIEW")]

    def _drop_table(self, name: str, sharded: bool) -> list[str]:
        # the Distributed table first: nothing reads the local one through it while it goes
        return ([self._drop(name, False)] if sharded else []) + [self._drop(name, sharded)]

    def _drop(self, name: str, local: bool, what: str = "TABLE") -> str:
        return f"DROP {what} IF EXISTS {self._target(name, local)} ON CLUSTER {self.c} SYNC"


def plan_cluster(database: str, cluster: str, ddl_dir: Path = DDL_DIR, upto: int | None = None,
                 layout: Layout | None = None) -> ClusterPlan:
    """The plan of the migrations of ``ddl_dir`` (up to version ``upto``), made on a scratch embedded store.

    Opens an embedded chDB engine in this process (chDB hosts one per process: call it where no other
    embedded store is open)."""
    from sinks.clickhouse.client import open_client

    layout = layout or load_layout()
    found = [m for m in migrations(ddl_dir) if upto is None or m.version <= upto]
    with tempfile.TemporaryDirectory(prefix="radstream-cluster-") as tmp:
        scratch = open_client(ClickHouseConfig(url=f"chdb://{tmp}/chdb", database=database))
        try:
            ensure_migrations_table(scratch, database)
            translate = _Translator(scratch, database, cluster, layout)
            upgrades = {m.version: translate.migration(m) for m in found}
            return ClusterPlan(found, cluster_statements(scratch, database, cluster, layout), upgrades)
        finally:
            scratch.close()


def _has_migrations_table(client: Client, database: str) -> bool:
    rows = client.query("SELECT count() FROM system.tables WHERE database = {db:String} AND "
                        "name = 'schema_migrations'", parameters={"db": database}).result_rows
    return bool(rows[0][0])


def _record(client: Client, database: str, migs: Sequence[Migration]) -> None:
    client.insert(f"{database}.schema_migrations", [[m.version, m.name, m.checksum] for m in migs],
                  column_names=["version", "name", "checksum"])


def migrate_cluster(client: Client, database: str, plan: ClusterPlan) -> tuple[str, list[str]]:
    """Bring the cluster that ``client`` reaches to ``plan``: ("created", every migration) for a new one,
    else ("migrated", the migrations run, in order)."""
    applied = applied_checksums(client, database) if _has_migrations_table(client, database) else {}
    if not applied:
        for stmt in plan.fresh:
            client.command(stmt, settings=CLUSTER_SETTINGS)
        _record(client, database, plan.migrations)
        return "created", [f"{m.version:03d}_{m.name}" for m in plan.migrations]
    done: list[str] = []
    for mig in pending(plan.migrations, applied):
        for stmt in plan.upgrades[mig.version]:
            client.command(stmt, settings=CLUSTER_SETTINGS)
        _record(client, database, [mig])
        done.append(f"{mig.version:03d}_{mig.name}")
    return "migrated", done
