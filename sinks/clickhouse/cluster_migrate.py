"""``radstream db migrate --cluster NAME``: the migrations on a ClickHouse cluster.

A new cluster (no ``schema_migrations`` rows) gets the CREATE set of the current schema
(``sinks.clickhouse.cluster.cluster_statements``), then every migration is recorded. A running cluster
gets each migration it has not recorded in its cluster form, in order, and each is recorded only after
all of its statements ran; one that fails stops the run unrecorded, and the next run starts again at its
first statement (the statements are idempotent), or, for a re-key whose ``RENAME`` ran on every host,
right after that ``RENAME`` (``Rekey``). A re-key (a migration with a ``RENAME``: 012, 014, 023, 032)
runs only when the operator says the writers are stopped (``writers_stopped``).

The cluster form of a migration is made statement by statement while the statement runs on a scratch
single-node store (embedded chDB), which tells what the statement made:

* ``CREATE TABLE``: the replicated table as the single node has it now (``T_local`` and a Distributed
  ``T`` for a sharded table), its Keeper path suffixed with the migration's number (``@012``): a
  re-keyed table is renamed to the old name and keeps its path, which a later re-key must not reuse;
* ``CREATE OR REPLACE VIEW``: the view (``V_local`` and the Distributed ``V`` made again for a view that
  reads sharded tables);
* ``ALTER TABLE`` (columns, indexes, settings, ``UPDATE``/``DELETE``/``MATERIALIZE`` mutations):
  ``ON CLUSTER`` on ``T_local`` of a sharded table (a Distributed table takes no mutation), on ``T`` of
  an all-node one; the Distributed ``T`` made again when the table's columns changed. A mutation's
  ``IN (SELECT ...)`` is read by the runner, once per migration, and sent as a literal set
  (``literal_sets``), in the mutation and in the migration's other statements with the same subquery;
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
    replication_path,
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
# statement and the record see it); an INSERT through a Distributed table returns once the shards have its
# rows; a query over Distributed tables runs its IN/JOIN subqueries over Distributed tables once, on the
# initiator (GLOBAL). A mutation's IN (SELECT ...) is no setting's business: `literal_sets`.
CLUSTER_SETTINGS: dict[str, object] = {
    "alter_sync": 2, "mutations_sync": 2, "distributed_foreground_insert": 1,
    "distributed_product_mode": "global",
}
# ClickHouse's default max_query_size (bytes); a statement with a longer literal set raises it
_MAX_QUERY_SIZE = 262144

_MUTATION = re.compile(r"ALTER TABLE \S+ ON CLUSTER \S+\s+(?:UPDATE|DELETE)\b", re.S)
_IN_SELECT = re.compile(r"\bIN\s*\(\s*SELECT\b", re.I)


class ClusterMigrationError(RuntimeError):
    """The runner stopped before a migration's next statement; the message says why and what to do."""

_NAME = r"(?:`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*))"
# statement heads (before ``db.name``) and the form each takes
_FORMS = ((r"CREATE OR REPLACE VIEW", "view"), (r"CREATE TABLE(?:\s+IF NOT EXISTS)?", "create"),
          (r"ALTER TABLE", "alter"), (r"DROP TABLE(?:\s+IF EXISTS)?", "drop"),
          (r"OPTIMIZE TABLE", "optimize"))


@dataclass(frozen=True)
class Rekey:
    """A migration that re-keys tables: its cluster form's ``RENAME`` is statement ``rename_at``, and after
    it each table of ``paths`` (a cluster table name) is the copy the migration made, replicated at that
    Keeper path, which no table had before (``@NNN``): the mark, on each host, that the RENAME ran there."""

    rename_at: int
    paths: dict[str, str]


@dataclass(frozen=True)
class ClusterPlan:
    """What ``migrate_cluster`` may run: ``fresh`` (the CREATE set of the schema after ``migrations``) and,
    per migration version, its cluster form."""

    migrations: list[Migration]
    fresh: list[str]
    upgrades: dict[int, list[str]]
    cluster: str = ""
    rekeys: dict[int, Rekey] = field(default_factory=dict)


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
        self.rekeys: dict[int, Rekey] = {}
        self._made: dict[str, str] = {}  # table -> Keeper path, of the tables the current migration made

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
        self._made = {}
        for i, stmt in enumerate(stmts):
            self.scratch.command(stmt)
            after, cols_after = schema(self.scratch, self.database), self.columns()
            if stmt.upper().startswith("RENAME TABLE"):
                self._rekey(mig.version, stmts[:i], stmt, place, len(out))
            out += self.statement(stmt, mig.version, place, before, after, cols_before, cols_after)
            before, cols_before = after, cols_after
        return out

    def _rekey(self, version: int, earlier: Sequence[str], stmt: str, place: dict[str, str | None],
               at: int) -> None:
        """Note where a re-key resumes: right after its RENAME, once each copy it made has the old name.
        Skipping what came before is right only if those statements concern the renamed tables alone."""
        pairs = _renames(stmt, self.database)
        moved = {n for p in pairs for n in p}
        if version in self.rekeys:
            raise ClusterLayoutError(f"migration {version:03d} has two RENAMEs: it could not be resumed")
        db = rf"(?:`{re.escape(self.database)}`|{re.escape(self.database)})"
        heads = "|".join(["INSERT INTO", *(h for h, _ in _FORMS)])
        for s in earlier:
            target = re.match(rf"(?:{heads})\s+{db}\.{_NAME}", s, re.S)
            if target is None or (target.group(1) or target.group(2)) not in moved:
                raise ClusterLayoutError(f"migration {version:03d}: a statement before its RENAME concerns "
                                         f"other tables, so it could not be resumed after it: {s[:120]}")
        paths = {b + LOCAL_SUFFIX if self._place(a, place, stmt) is not None else b: self._made[a]
                 for a, b in pairs if a in self._made}
        if paths:
            self.rekeys[version] = Rekey(at, paths)

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
        suffix = f"@{version:03d}"
        self._made[info.name] = replication_path(self.database, info.name, local=key is not None,
                                                 path_suffix=suffix)
        out = [replicated_table(info, self.database, self.cluster, local=key is not None, path_suffix=suffix)]
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
            return ClusterPlan(found, cluster_statements(scratch, database, cluster, layout), upgrades,
                               cluster, translate.rekeys)
        finally:
            scratch.close()


def _has_migrations_table(client: Client, database: str) -> bool:
    rows = client.query("SELECT count() FROM system.tables WHERE database = {db:String} AND "
                        "name = 'schema_migrations'", parameters={"db": database}).result_rows
    return bool(rows[0][0])


def _record(client: Client, database: str, migs: Sequence[Migration]) -> None:
    client.insert(f"{database}.schema_migrations", [[m.version, m.name, m.checksum] for m in migs],
                  column_names=["version", "name", "checksum"])


def _closing(sql: str, start: int) -> int:
    """The index of the parenthesis that closes the one at ``start`` (quotes skipped)."""
    depth, quote, i = 0, "", start
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ClusterLayoutError(f"unbalanced parentheses: {sql[start:start + 120]}")


def in_subqueries(stmt: str) -> list[str]:
    """The ``(SELECT ...)`` of each ``IN (SELECT ...)`` of a statement, parentheses included."""
    out = []
    for m in _IN_SELECT.finditer(stmt):
        start = stmt.index("(", m.start())
        out.append(stmt[start:_closing(stmt, start) + 1])
    return out


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise ClusterMigrationError(f"no literal for a {type(value).__name__} in a mutation's IN set")


def literal_sets(client: Client, stmts: Sequence[str]) -> Iterator[str]:
    """``stmts`` with each ``IN (SELECT ...)`` of a mutation replaced by the set it reads, as literals.

    A Replicated table refuses a mutation with a subquery (Code 36): each replica would run it when it
    mutates each of its parts, against its own copy of the tables read, at its own time, and the replicas
    could differ. ``mutations_execute_subqueries_on_initiator`` replaces scalar subqueries only, and
    ``allow_nondeterministic_mutations`` would just let them differ. So the runner reads the set once,
    through the cluster, when the first statement that has the subquery comes (lazily: it sees what the
    statements before did), and every statement of the migration with that subquery gets the same set
    (024 copies to retrieval_events_identified exactly the rows whose UIDs it then blanks)."""
    wanted = {q for stmt in stmts if _MUTATION.match(stmt) for q in in_subqueries(stmt)}
    sets: dict[str, str] = {}
    for stmt in stmts:
        for q in sorted((q for q in wanted if q in stmt), key=len, reverse=True):
            if q not in sets:
                rows = client.query(q[1:-1]).result_rows
                if any(len(r) != 1 for r in rows):
                    raise ClusterMigrationError(f"a mutation's IN set must have one column: {q[:120]}")
                sets[q] = "(" + ", ".join(_literal(r[0]) for r in rows) + ")"
            stmt = stmt.replace(q, sets[q])
        yield stmt


def _renamed(client: Client, database: str, plan: ClusterPlan, mig: Migration) -> int:
    """Where a re-key starts: 0 where its RENAME ran on no host, right after it where it ran on every
    host; else ClusterMigrationError (some hosts or tables renamed, others not)."""
    rekey = plan.rekeys.get(mig.version)
    if rekey is None:
        return 0
    where = _literal(plan.cluster)
    hosts = {str(r[0]) for r in client.query(
        f"SELECT DISTINCT hostName() FROM clusterAllReplicas({where}, system.one)").result_rows}
    rows = client.query(
        f"SELECT hostName(), name, engine_full FROM clusterAllReplicas({where}, system.tables) "
        "WHERE database = {db:String} AND name IN {names:Array(String)}",
        parameters={"db": database, "names": sorted(rekey.paths)}).result_rows
    engines = {(str(h), str(n)): str(e) for h, n, e in rows}
    state = {(h, n): f"'{p}'" in engines.get((h, n), "")
             for h in sorted(hosts) for n, p in rekey.paths.items()}
    if not any(state.values()):
        return 0
    if all(state.values()):
        return rekey.rename_at + 1
    done = ", ".join(f"{n} on {h}" for (h, n), ok in state.items() if ok)
    todo = ", ".join(f"{n} on {h}" for (h, n), ok in state.items() if not ok)
    raise ClusterMigrationError(
        f"{mig.version:03d}_{mig.name}: its RENAME ran for {done} but not for {todo}, so it can neither "
        "start again nor go on. A host that was away runs the RENAME when it is back (system."
        "distributed_ddl_queue): wait for it; else run on each such host, without ON CLUSTER, the renames "
        f"it lacks from `python -m sinks.clickhouse.migrate --cluster {plan.cluster} {mig.version}`; then "
        "run `db migrate --cluster` again")


def _settings(stmt: str) -> dict[str, object]:
    if len(stmt) < _MAX_QUERY_SIZE // 2:
        return CLUSTER_SETTINGS
    return {**CLUSTER_SETTINGS, "max_query_size": 2 * len(stmt)}


def migrate_cluster(client: Client, database: str, plan: ClusterPlan, *,
                    writers_stopped: bool = False) -> tuple[str, list[str]]:
    """Bring the cluster that ``client`` reaches to ``plan``: ("created", every migration) for a new one,
    else ("migrated", the migrations run, in order). A pending re-key needs ``writers_stopped``: rows a
    sink writes between its copy and its RENAME would be dropped with the old table, after the sink
    committed their Kafka offsets; without it nothing runs (ClusterMigrationError)."""
    applied = applied_checksums(client, database) if _has_migrations_table(client, database) else {}
    if not applied:
        for stmt in plan.fresh:
            client.command(stmt, settings=CLUSTER_SETTINGS)
        _record(client, database, plan.migrations)
        return "created", [f"{m.version:03d}_{m.name}" for m in plan.migrations]
    todo = pending(plan.migrations, applied)
    rekeys = [f"{m.version:03d}_{m.name}" for m in todo if m.version in plan.rekeys]
    if rekeys and not writers_stopped:
        raise ClusterMigrationError(
            f"{', '.join(rekeys)} copy tables to new keys: rows written during the copy would be lost. Stop "
            "every writer of the warehouse (`radstream db sink`, workers that sink), then run again with "
            "--writers-stopped; nothing was run")
    done: list[str] = []
    for mig in todo:
        start = _renamed(client, database, plan, mig)
        for stmt in literal_sets(client, plan.upgrades[mig.version][start:]):
            client.command(stmt, settings=_settings(stmt))
        _record(client, database, [mig])
        done.append(f"{mig.version:03d}_{mig.name}")
    return "migrated", done
