"""Which tables a query reads, decided by ClickHouse's own parser and analyzer, and whether a role may.

For each query (``check``), on the read-only client of the store, never with regexes over SQL:

1. ``SELECT formatQuery('<text>')``: ClickHouse parses the text; a syntax error or more than one
   statement is refused ("Multi-statements are not allowed"). The canonical text it returns is what is
   analysed and then run, so the checked query and the executed one are the same.
2. ``EXPLAIN AST``: the statement must be one SELECT (``SelectWithUnionQuery``: no INSERT, DDL, SHOW
   or EXPLAIN, no INTO OUTFILE, no FORMAT clause but a trailing one, which the caller takes off first);
   a SETTINGS clause is refused by ``readonly=1`` already at this step.
3. ``EXPLAIN QUERY TREE``: the analyzer resolves every name (CTEs, aliases, ``IN table``, subqueries at
   any depth, UNION branches, JOINs). Its ``TABLE`` nodes are the tables and views read, its
   ``TABLE_FUNCTION`` nodes the table functions, its ``FUNCTION`` nodes the functions called.
4. Views are expanded: a view's own query (``system.tables.as_select``, asked for when the query
   reads the view) goes through step 3 as well,
   recursively, so a view counts as read together with everything it reads, and a view over a
   restricted table is refused.

The role's allowlist (``roles/<role>.json``, data) names the tables/views of the warehouse database,
the system tables and the table functions it may read, and the functions it may not call. A principal
with several roles gets the union of their allowlists.

``denied_columns`` (table -> columns) are columns of readable tables that the role may not read: a query
(or a view it reads) whose analyzed tree has a ``COLUMN`` node of such a column, its ``source_id`` that
table's ``TABLE`` node, is refused, whether the column is selected, filtered on or aggregated. Such a
column should be MATERIALIZED (ddl/026) so that ``SELECT *`` and the views that use it leave it out.

The analyzer evaluates scalar subqueries while it resolves (step 3), so an error there could quote
a value read from a table; such an error message is shown only when every table the syntax tree
names (step 2's ``TableIdentifier`` nodes, a superset of what is read directly) is allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

ROLES_DIR = Path(__file__).with_name("roles")
MAX_VIEW_DEPTH = 16
MARK = "FORMAT TSVRaw"  # the output format of our EXPLAINs: one row a line, nothing escaped

# rows of ClickHouse's EXPLAIN QUERY TREE output (not SQL), e.g.
# "TABLE id: 3, alias: __table1, table_name: db.t"; an alias may contain anything, so a row that does
# not carry exactly one such field is refused rather than guessed at
_TREE_FIELDS = {"TABLE id:": "table_name", "TABLE_FUNCTION id:": "table_function_name",
                "FUNCTION id:": "function_name"}
_AST_TABLE = re.compile(r"^\s*TableIdentifier (?P<name>\S+)")


class AccessDenied(ValueError):
    """The role may not run this query; the message says why (shown to the caller)."""


@dataclass(frozen=True)
class Policy:
    roles: tuple[str, ...]
    tables: frozenset[str] = frozenset()
    system_tables: frozenset[str] = frozenset()
    table_functions: frozenset[str] = frozenset()
    denied_functions: frozenset[str] = frozenset()
    denied_columns: frozenset[tuple[str, str]] = frozenset()  # (table of the warehouse, column)

    @property
    def all_tables(self) -> bool:
        return "*" in self.tables

    def may_call(self, function: str) -> bool:
        low = function.lower()
        return not any(low == d.lower() or (d.startswith("dict") and low.startswith(d.lower()))
                       for d in self.denied_functions)

    def may_use_table_function(self, name: str) -> bool:
        # ClickHouse registers some table functions case-insensitively (VALUES = values)
        return "*" in self.table_functions or name.lower() in {f.lower() for f in self.table_functions}

    def may_read(self, qualified: str, database: str) -> bool:
        db, _, name = qualified.partition(".")
        if db == "system":
            return "*" in self.system_tables or qualified in self.system_tables
        if db != database:
            return False
        return self.all_tables or name in self.tables

    def may_read_column(self, qualified: str, column: str, database: str) -> bool:
        db, _, name = qualified.partition(".")
        return db != database or (name, column) not in self.denied_columns


def _load_role(role: str, roles_dir: Path) -> dict[str, Any]:
    path = roles_dir / f"{role}.json"
    if not path.is_file():
        raise AccessDenied(f"unknown role {role!r} (no {path.name} in {roles_dir})")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@lru_cache(maxsize=64)
def _policy(roles: tuple[str, ...], roles_dir: Path) -> Policy:
    docs = [_load_role(r, roles_dir) for r in roles]
    denied = [set(d.get("denied_functions", ())) for d in docs]
    columns = [{(t, c) for t, cs in d.get("denied_columns", {}).items() for c in cs} for d in docs]
    return Policy(
        roles=roles,
        tables=frozenset(t for d in docs for t in d.get("tables", ())),
        system_tables=frozenset(t for d in docs for t in d.get("system_tables", ())),
        table_functions=frozenset(t for d in docs for t in d.get("table_functions", ())),
        # union of roles: a function is denied only if every role denies it
        denied_functions=frozenset(set.intersection(*denied)) if denied else frozenset(),
        # likewise a column: denied only if every role denies it
        denied_columns=frozenset(set.intersection(*columns)) if columns else frozenset(),
    )


def policy_for(roles: Iterable[str], roles_dir: Path = ROLES_DIR) -> Policy:
    """The allowlist of a principal holding ``roles`` (admin: everything the read-only engine allows)."""
    return _policy(tuple(sorted(set(roles))), roles_dir)


@dataclass
class Checked:
    """A query that passed: the canonical text to run and what it reads."""

    sql: str
    tables: list[str] = field(default_factory=list)  # db.name, views and what they read
    table_functions: list[str] = field(default_factory=list)


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lines(client: Client, sql: str, settings: dict[str, Any] | None = None) -> list[str]:
    """The rows of an EXPLAIN, one a line. The FORMAT is ours: EXPLAIN AST shows it as the statement's
    last child (a client would otherwise append its own). A newline inside an alias splits a row;
    ``_tree`` then finds a node row without its name field and refuses."""
    raw = client.raw_query(f"{sql}\n{MARK}", fmt=None, settings=settings or {})
    return [line for line in raw.decode("utf-8", errors="replace").splitlines() if line.strip()]


def _message(exc: Exception) -> str:
    text = str(exc).strip()
    return text.split("\n")[0][:800]


@dataclass
class _Tree:
    tables: set[str] = field(default_factory=set)
    table_functions: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    columns: set[tuple[str, str]] = field(default_factory=set)  # (db.table, column) read from tables


_NODE_ID = re.compile(r"^(?:TABLE|COLUMN) id: (\d+),")


def _tree(client: Client, select: str, settings: dict[str, Any] | None = None) -> _Tree:
    out = _Tree()
    sets = {"table_name": out.tables, "table_function_name": out.table_functions,
            "function_name": out.functions}
    rows = _lines(client, f"EXPLAIN QUERY TREE {select}", settings)
    if not rows or not rows[0].startswith(("QUERY id:", "UNION id:")):
        raise AccessDenied("refused: unexpected analyzer output")
    table_of: dict[str, str] = {}  # TABLE node id -> db.name
    column_rows: list[tuple[str, str]] = []  # (column name, source node id)
    for row in rows:
        text = row.lstrip()
        for head, key in _TREE_FIELDS.items():
            if text.startswith(head):
                values = re.findall(rf", {key}: ([^,\s]+)", text)
                if len(values) != 1:
                    raise AccessDenied(f"refused: cannot tell which object a node of the query reads ({head} "
                                       "with an unusual alias?)")
                sets[key].add(values[0])
                if head == "TABLE id:" and (m := _NODE_ID.match(text)):
                    table_of[m.group(1)] = values[0]
                break
        else:
            if text.startswith("COLUMN id:"):
                names = re.findall(r", column_name: ([^,\s]+)", text)
                sources = re.findall(r", source_id: (\d+)", text)
                if len(names) != 1 or len(sources) > 1:
                    raise AccessDenied("refused: cannot tell which column a node of the query reads (a "
                                       "column with an unusual alias?)")
                if sources:
                    column_rows.append((names[0], sources[0]))
    out.columns = {(table_of[src], name) for name, src in column_rows if src in table_of}
    return out


def _check_columns(tree: _Tree, policy: Policy, database: str, who: str, via: str = "") -> None:
    for table, column in sorted(tree.columns):
        if not policy.may_read_column(table, column, database):
            through = f" (read by the view {via})" if via else ""
            raise AccessDenied(f"refused for role {who}: the column {column} of {table}{through} is not "
                               "readable by this role")


def _views(client: Client, settings: dict[str, Any] | None = None) -> set[str]:
    """db.name of every view the engine knows (our database and others). Their SELECTs are asked for
    one by one (``_view_select``) when a query reads them: ``as_select`` costs the engine a formatting
    of every view's query (~10 ms for the warehouse's views), most queries read none."""
    rows = client.query("SELECT database, name FROM system.tables WHERE engine = 'View'",
                        settings=settings or {}).result_rows
    return {f"{db}.{name}" for db, name in rows}


def _view_select(client: Client, qualified: str, settings: dict[str, Any] | None = None) -> str:
    """The SELECT of one view now; a view gone since ``_views`` is refused (it cannot be analysed)."""
    db, _, name = qualified.partition(".")
    rows = client.query(f"SELECT as_select FROM system.tables WHERE database = {_literal(db)} "
                        f"AND name = {_literal(name)} AND engine = 'View'",
                        settings=settings or {}).result_rows
    if not rows:
        raise AccessDenied(f"refused: the view {qualified} could not be analysed: it is gone")
    return str(rows[0][0])


def check(client: Client, database: str, sql: str, policy: Policy,
          settings: dict[str, Any] | None = None) -> Checked:
    """Decide whether ``policy`` may run ``sql``; raises AccessDenied (with the reason) if not.

    ``client``: a client whose default database is ``database``, read-only itself (chDB) or made so
    by ``settings`` (readonly=1 on each request to a server).
    """
    who = "+".join(policy.roles)
    try:
        canonical = str(client.query(f"SELECT formatQuery({_literal(sql)})",
                                     settings=settings or {}).result_rows[0][0])
    except Exception as exc:
        raise AccessDenied(f"not one valid statement: {_message(exc)}") from None
    try:
        ast = _lines(client, f"EXPLAIN AST {canonical}", settings)
    except Exception as exc:
        raise AccessDenied(f"refused: {_message(exc)}") from None
    # our own FORMAT is the one extra child: a second one (INTO OUTFILE) is refused
    if not ast or ast[0].strip() != "SelectWithUnionQuery (children 2)" or ast[-1] != " Identifier TSVRaw":
        kind = ast[0].split()[0] if ast else "nothing"
        raise AccessDenied(f"refused: only one SELECT may run here (got {kind}; no INTO OUTFILE, FORMAT or "
                           "SETTINGS clause: ask for the output format with ?format=)")
    named = {m["name"].replace("`", "") for line in ast if (m := _AST_TABLE.match(line))}
    # a table function is the first child of its TableExpression node; refused before anything runs
    for parent, child in zip(ast, ast[1:], strict=False):
        if parent.strip().startswith("TableExpression") and child.strip().startswith("Function "):
            fn = child.split()[1]
            if not policy.may_use_table_function(fn):
                raise AccessDenied(f"refused for role {who}: the table function {fn}() is not allowed")
    try:
        tree = _tree(client, canonical, settings)
    except AccessDenied:
        raise
    except Exception as exc:
        # resolving may have evaluated scalar subqueries: their values may be in the message
        hidden = [n for n in named if not policy.may_read(n if "." in n else f"{database}.{n}", database)]
        if hidden and not policy.all_tables:
            raise AccessDenied(f"refused for role {who}: the query names {', '.join(sorted(hidden))}, "
                               "which the role may not read") from None
        raise AccessDenied(f"the query could not be analysed: {_message(exc)}") from None

    _check_columns(tree, policy, database, who)
    views = _views(client, settings)
    read: list[str] = []
    functions, table_functions = set(tree.functions), set(tree.table_functions)
    pending = [(t, 0, "") for t in sorted(tree.tables)]
    seen: set[str] = set()
    while pending:
        name, depth, via = pending.pop(0)
        if name in seen:
            continue
        seen.add(name)
        read.append(name)
        if not policy.may_read(name, database):
            through = f" (read by the view {via})" if via else ""
            raise AccessDenied(f"refused for role {who}: {name}{through} is not readable by this role")
        if name in views and not (policy.all_tables and "*" in policy.system_tables):
            if depth >= MAX_VIEW_DEPTH:
                raise AccessDenied(f"refused: views nested deeper than {MAX_VIEW_DEPTH} at {name}")
            try:
                inner = _tree(client, _view_select(client, name, settings), settings)
            except AccessDenied:
                raise
            except Exception as exc:
                raise AccessDenied(f"refused: the view {name} could not be analysed: "
                                   f"{_message(exc)}") from None
            _check_columns(inner, policy, database, who, name)
            functions |= inner.functions
            table_functions |= inner.table_functions
            pending.extend((t, depth + 1, name) for t in sorted(inner.tables))
    for fn in sorted(table_functions):
        if not policy.may_use_table_function(fn):
            raise AccessDenied(f"refused for role {who}: the table function {fn}() is not allowed")
    for fn in sorted(functions):
        if not policy.may_call(fn):
            raise AccessDenied(f"refused for role {who}: the function {fn}() is not allowed")
    return Checked(canonical, sorted(read), sorted(table_functions))
