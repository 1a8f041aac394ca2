"""Which objects a query reads, decided by ClickHouse's own parser and analyzer, and whether a role may.

For each query (``check``), on the read-only client of the store, never with regexes over SQL:

1. ``SELECT formatQuery('<text>')``: ClickHouse parses the text; a syntax error or more than one
   statement is refused ("Multi-statements are not allowed"; the parser's message quotes only the
   query). The canonical text it returns is what is checked and then run. Read token by token (string
   literals whole), a quoted name holding a line break or a backslash is refused (EXPLAIN prints names
   raw: its line break would add rows of the caller's choosing to the EXPLAINs below).
2. ``EXPLAIN AST`` (parse only: nothing is evaluated, nothing read): the statement must be one SELECT
   (``SelectWithUnionQuery``: no INSERT, DDL, SHOW or EXPLAIN, no INTO OUTFILE, no FORMAT clause but
   a trailing one, which the caller takes off first; a SETTINGS clause is refused by ``readonly=1``).
   Its rows must form the tree they say ("(children n)": n rows one level below), else refused.
   Then, conservatively, on every node of the syntax tree, before anything is evaluated:
   * every ``TableIdentifier`` and every ``Identifier`` (``x IN deid_map``, ``rs.deid_map.col``) that
     names an object of the store (table, view, dictionary; ``system.*``, another database) must be
     readable by the role; a readable view's own SELECT goes through this step too (recursively);
   * table functions (in FROM, or anywhere a name is only a table function) must be allowed; every
     function called, or passed by bare name to a higher-order function (``arrayMap(f, ...)``), must be
     on the role's function allowlist (``allowed_functions``): its canonical name after the engine's
     aliases and case rules (``system.functions``), or, for an aggregate with combinators (``sumIf``,
     ``groupArrayDistinct``), the aggregate it is built on; ``* APPLY(...)`` is refused (the tree does
     not print what it calls);
   * no identifier may be (or contain as a part) a denied column's name (``denied_columns``, whatever
     table) or, with ``deny_virtual_columns``, start with ``_`` (``_part``, ``_block_number``, ...);
     ``COLUMNS('regexp')`` is refused (it also matches MATERIALIZED columns), and ``*`` is refused over
     an object that would show a denied column to it.
3. Only then ``EXPLAIN QUERY TREE``: the analyzer resolves every name. It evaluates constant
   expressions and scalar subqueries while it resolves, which is why step 2 comes first: by now they
   can only read what the role may read. Its ``TABLE``, ``TABLE_FUNCTION``, ``FUNCTION`` and ``COLUMN``
   nodes are checked again (a second line, the same rules), views expanded through it as well; its rows
   must have the shape it prints (``_tree_shape``). Every refusal of this step is one text (``UNCHECKED``),
   the reason and the engine's error code in ``AccessDenied.audit`` only: had step 2 missed a function,
   which error the analyzer raised, or that it passed and a check refused after, would answer a yes/no
   question about what the function read.

Every refusal is one of our own messages (``AccessDenied``): it may name the object refused, never
the engine's error text, which can quote values the analyzer computed. The parser's own message
(step 1) quotes nothing but the query.

The role's allowlist (``roles/<role>.json``, data) names the tables/views of the warehouse database,
the system tables and the table functions it may read, and the functions it may call
(``allowed_functions``: ``["*"]``, a list, or the name of a list file such as ``functions_allowed.json``;
``denied_functions`` still takes names away from a role's allowlist). A principal with several roles gets
the union of their allowlists.

``denied_columns`` (table -> columns) are columns of readable tables that the role may not read,
selected, filtered on or aggregated, directly or through a view. Such a column should be MATERIALIZED
(ddl/026, ddl/031) so that ``SELECT *`` and the views made with it leave it out.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

ROLES_DIR = Path(__file__).with_name("roles")
MAX_VIEW_DEPTH = 16
MARK = "FORMAT TSVRaw"  # the output format of our EXPLAINs: one row a line, nothing escaped
# Line breaks other than "\n" (str.splitlines() breaks at them too). EXPLAIN prints names raw and splits
# its text into rows at "\n", so the rest of an alias holding a line break became a node row of the
# caller's choosing (a fake `* EXCEPT` hid the next column's name); such names are refused (_names_ok).
# Type strings are printed raw in some query-tree rows too: _TYPE_BREAK refuses a break in a type.
_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# formatQuery's text, token by token: a string literal ('...', backslash escapes and '' doubling), a
# quoted name (`...` or "...", the same escapes, doubled quote), or one other character. Literals are
# matched as a whole so that a quote inside one ('`') never pairs with a name's quote (it did: the name
# after it was then never inspected). formatQuery writes no comments; a comment opener is refused.
_TOKEN = re.compile(r"'(?:[^'\\]|\\.|'')*'|`((?:[^`\\]|\\.|``)*)`|\"((?:[^\"\\]|\\.|\"\")*)\"|--|/\*|#|.",
                    re.DOTALL)

# rows of ClickHouse's EXPLAIN QUERY TREE output (not SQL), e.g.
# "TABLE id: 3, alias: __table1, table_name: db.t"; an alias may contain anything, so a row that does
# not carry exactly one such field is refused rather than guessed at
_TREE_FIELDS = {"TABLE id:": "table_name", "TABLE_FUNCTION id:": "table_function_name",
                "FUNCTION id:": "function_name"}


class AccessDenied(ValueError):
    """The role may not run this query; the message says why (shown to the caller). ``audit``: the reason
    for the audit log when it says more than the message (read by stewards and admins only)."""

    def __init__(self, message: str, audit: str = "") -> None:
        super().__init__(message)
        self.audit = audit or message


# Every refusal of step 3 (the analyzer failed, or found what step 2 did not) says only this: the analyzer
# has evaluated scalar subqueries by then, so which error it raised, or whether a function it evaluated was
# refused after, could depend on what a function step 2 missed read (a yes/no oracle); the audit keeps why
UNCHECKED = "refused: the query could not be checked"


@dataclass(frozen=True)
class Policy:
    roles: tuple[str, ...]
    tables: frozenset[str] = frozenset()
    system_tables: frozenset[str] = frozenset()
    table_functions: frozenset[str] = frozenset()
    # per role: (the functions it may call, lower case, None for every one; those it may not)
    function_rules: tuple[tuple[frozenset[str] | None, frozenset[str]], ...] = ()
    denied_columns: frozenset[tuple[str, str]] = frozenset()  # (table of the warehouse, column)
    deny_virtual_columns: bool = False  # identifiers starting with "_" (_part, _block_number, ...)

    @property
    def all_tables(self) -> bool:
        return "*" in self.tables

    @property
    def all_functions(self) -> bool:
        """Some role may call every function (admin): the function check has nothing to refuse."""
        return any(allowed is None and not denied for allowed, denied in self.function_rules)

    def may_call(self, function: str, canonical: str | None = None) -> bool:
        """``function`` as written, ``canonical`` the engine's name for it (alias resolved): the allowlist
        holds canonical names; a denied name is refused as written and as canonical."""
        target = (canonical or function).lower()
        names = {function.lower(), target}

        def denies(denied: frozenset[str]) -> bool:
            return any(n == d or (d.startswith("dict") and n.startswith(d)) for n in names for d in denied)
        return any((allowed is None or target in allowed) and not denies(denied)
                   for allowed, denied in self.function_rules)

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
        if self.deny_virtual_columns and column.startswith("_"):
            return False
        return db != database or (name, column) not in self.denied_columns

    @property
    def reads_everything(self) -> bool:
        """Every table, system table, table function, function and column (admin): what the engine says
        about a query can tell such a caller nothing it may not read (no oracle), so it gets the cause."""
        return self.all_tables and "*" in self.system_tables and "*" in self.table_functions and \
            self.all_functions and not self.denied_columns and not self.deny_virtual_columns

    @property
    def denied_column_names(self) -> frozenset[str]:
        """The names of denied columns, whatever their table: refused anywhere in a query's text."""
        return frozenset(c.lower() for _, c in self.denied_columns)


def _function_rule(doc: dict[str, Any], roles_dir: Path) -> tuple[frozenset[str] | None, frozenset[str]]:
    """A role's (allowed functions or None for all, denied functions), lower case. ``allowed_functions``:
    ``["*"]``, a list of names, or the name of a JSON file in ``roles_dir`` whose ``groups`` list them; a
    role without it may call no function (a role file written for the old denylist fails closed)."""
    spec = doc.get("allowed_functions", [])
    if isinstance(spec, str):
        path = roles_dir / spec
        if path.name != spec or not path.is_file():
            raise AccessDenied(f"unknown function list {spec!r} (no such file in {roles_dir})")
        spec = [f for group in json.loads(path.read_text()).get("groups", ()) for f in group["functions"]]
    denied = frozenset(str(d).lower() for d in doc.get("denied_functions", ()))
    if "*" in spec:
        return None, denied
    return frozenset(str(f).lower() for f in spec), denied


def _load_role(role: str, roles_dir: Path) -> dict[str, Any]:
    path = roles_dir / f"{role}.json"
    if not path.is_file():
        raise AccessDenied(f"unknown role {role!r} (no {path.name} in {roles_dir})")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@lru_cache(maxsize=64)
def _policy(roles: tuple[str, ...], roles_dir: Path) -> Policy:
    docs = [_load_role(r, roles_dir) for r in roles]
    columns = [{(t, c) for t, cs in d.get("denied_columns", {}).items() for c in cs} for d in docs]
    return Policy(
        roles=roles,
        tables=frozenset(t for d in docs for t in d.get("tables", ())),
        system_tables=frozenset(t for d in docs for t in d.get("system_tables", ())),
        table_functions=frozenset(t for d in docs for t in d.get("table_functions", ())),
        # union of roles: a function may be called if some role may
        function_rules=tuple(_function_rule(d, roles_dir) for d in docs),
        # likewise a column: denied only if every role denies it
        denied_columns=frozenset(set.intersection(*columns)) if columns else frozenset(),
        deny_virtual_columns=bool(docs) and all(d.get("deny_virtual_columns", False) for d in docs),
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
    """The rows of an EXPLAIN, one a line (split at "\n" only). The FORMAT is ours: EXPLAIN AST shows it as
    the statement's last child (a client would otherwise append its own)."""
    raw = client.raw_query(f"{sql}\n{MARK}", fmt=None, settings=settings or {})
    rows = [line for line in raw.decode("utf-8", errors="replace").split("\n") if line.strip()]
    if any(_BREAKS.search(row) for row in rows):
        raise AccessDenied("refused: a name or alias with a line break in it")
    return rows


def _names_ok(text: str) -> bool:
    """Whether every quoted name of formatQuery's ``text`` is free of line breaks and backslashes (it writes
    a newline in a name or literal as the escape \\n, so a backslash in a name may stand for one), and no
    unterminated quote or comment opener is left (formatQuery writes neither: something is off)."""
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if token in ("--", "/*", "#", "'", "`", '"'):
            return False
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if name is not None and ("\\" in name or "\n" in name or _BREAKS.search(name)):
            return False
    return True


def _parser_message(exc: Exception) -> str:
    """The parser's message (formatQuery: nothing is evaluated there, so it quotes only the query)."""
    text = str(exc).strip()
    return text.split("\n")[0][:800]


_CODE_NAME = re.compile(r"\(([A-Z][A-Z0-9_]{2,})\)")


def error_code(exc: BaseException) -> str:
    """The engine's error code name (UNKNOWN_IDENTIFIER, ...), never its message: a message may quote a
    value the engine computed. "error" when there is none."""
    names = [n for n in _CODE_NAME.findall(str(exc)) if n != "version"]
    if names:
        return names[-1]
    code = re.search(r"Code: (\d+)", str(exc))
    return f"code {code.group(1)}" if code else type(exc).__name__


@dataclass
class _Tree:
    tables: set[str] = field(default_factory=set)
    table_functions: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    columns: set[tuple[str, str]] = field(default_factory=set)  # (db.table, column) read from tables


_NODE_ID = re.compile(r"^(?:TABLE|COLUMN) id: (\d+),")


# a row of EXPLAIN QUERY TREE: a node ("LIST id: 1, nodes: 2", "TABLE id: 3, ..."), or a heading of the
# node above it (PROJECTION, JOIN TREE, ARGUMENTS, ...), two spaces deeper than its parent
_TREE_NODE = re.compile(r"^( *)([A-Z][A-Z_]*(?: [A-Z_]+)*) id: (\d+)(?:, (.*))?$")
# (a SORT's EXPRESSION heading carries the expression's text)
_TREE_HEADING = re.compile(r"^( *)([A-Z][A-Z_]*(?: [A-Z_]+)*|EXPRESSION .*)$")
_UNCHECKED = "refused: the query could not be checked (unexpected analyzer output)"
# an escaped line break in a type: in a node's type fields, or in a PROJECTION COLUMNS row ("name Type")
_TYPE_BREAK = re.compile(r"(?:result_type|constant_value_type): .*\\[nr]"
                         r"|^ *[^ :]+ [A-Z][A-Za-z0-9]*\(.*\\[nr]")


def _tree_shape(rows: list[str]) -> list[str]:
    """The rows of EXPLAIN QUERY TREE that name nodes, the structure checked: each row a node or a heading,
    at most one level (two spaces) below the row above, a LIST with exactly its ``nodes: n`` rows below
    it, no TABLE or TABLE_FUNCTION id twice. The rows under PROJECTION COLUMNS ("name Type": the names as
    written, raw) are skipped, each one level under the heading. Anything else: refused, not guessed at."""
    if not rows or not rows[0].startswith(("QUERY id:", "UNION id:")):
        raise AccessDenied(_UNCHECKED)
    # A type given as a string (CAST(x, 'JSON(`a\n...` String)'), built with concat() too) is printed
    # raw in some rows (a subcolumn's name, an Object constant) and escaped in its type fields: a line
    # break in a type means a raw one may have split a row into rows of the caller's choosing. (A string
    # constant holding a line break is printed escaped, and its type is String: it passes.)
    if any(_TYPE_BREAK.search(row) for row in rows):
        raise AccessDenied(_UNCHECKED)
    nodes: list[str] = []
    seen: set[str] = set()
    lists: list[tuple[int, int]] = []  # (indentation, rows still expected) of the LISTs being read
    columns = -1  # indentation of the PROJECTION COLUMNS heading being skipped
    depth = -2
    for row in rows:
        indent = len(row) - len(row.lstrip(" "))
        if columns >= 0 and indent > columns:
            if indent != columns + 2:
                raise AccessDenied(_UNCHECKED)
            continue
        columns = -1
        if indent % 2 or indent > depth + 2:
            raise AccessDenied(_UNCHECKED)
        while lists and indent <= lists[-1][0]:
            if lists.pop()[1] != 0:
                raise AccessDenied(_UNCHECKED)
        if lists and indent == lists[-1][0] + 2:
            lists[-1] = (lists[-1][0], lists[-1][1] - 1)
        depth = indent
        if (node := _TREE_NODE.match(row)) is not None:
            kind, ident, rest = node.group(2), node.group(3), node.group(4) or ""
            if kind in ("TABLE", "TABLE_FUNCTION"):
                if ident in seen:
                    raise AccessDenied(_UNCHECKED)
                seen.add(ident)
            if kind == "LIST":
                count = re.fullmatch(r"nodes: (\d+)", rest)
                if count is None:
                    raise AccessDenied(_UNCHECKED)
                lists.append((indent, int(count.group(1))))
            nodes.append(row)
        elif (heading := _TREE_HEADING.match(row)) is not None:
            if heading.group(2) == "PROJECTION COLUMNS":
                columns = indent
        else:
            raise AccessDenied(_UNCHECKED)
    if any(left != 0 for _, left in lists):
        raise AccessDenied(_UNCHECKED)
    return nodes


def _tree(client: Client, select: str, settings: dict[str, Any] | None = None) -> _Tree:
    return _tree_of(_lines(client, f"EXPLAIN QUERY TREE {select}", settings))


def _tree_of(rows: list[str]) -> _Tree:
    out = _Tree()
    sets = {"table_name": out.tables, "table_function_name": out.table_functions,
            "function_name": out.functions}
    table_of: dict[str, str] = {}  # TABLE node id -> db.name
    column_rows: list[tuple[str, str]] = []  # (column name, source node id)
    for row in _tree_shape(rows):
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


def _view_select(client: Client, qualified: str, settings: dict[str, Any] | None = None,
                 seen: dict[str, str] | None = None) -> str:
    """The SELECT of one view now (``seen``: those already asked for by this check); a view gone since
    ``_views`` is refused (it cannot be analysed)."""
    if seen is not None and qualified in seen:
        return seen[qualified]
    db, _, name = qualified.partition(".")
    rows = client.query(f"SELECT as_select FROM system.tables WHERE database = {_literal(db)} "
                        f"AND name = {_literal(name)} AND engine = 'View'",
                        settings=settings or {}).result_rows
    if not rows:
        raise AccessDenied(f"refused: the view {qualified} could not be analysed: it is gone")
    if seen is not None:
        seen[qualified] = str(rows[0][0])
    return str(rows[0][0])


# one node of EXPLAIN AST's output: indentation, node type, the rest ("name (alias a) (children n)")
_AST_NODE = re.compile(r"^( *)([A-Za-z][A-Za-z0-9_:]*)(?: (.*))?$")
_CHILDREN = re.compile(r" \(children \d+\)$")
_CHILDREN_N = re.compile(r" \(children (\d+)\)$")
_STAR_NODES = ("Asterisk", "QualifiedAsterisk")
_REGEXP_NODES = ("ColumnsRegexpMatcher", "QualifiedColumnsRegexpMatcher")
_HIDDEN_FROM_STAR = ("MATERIALIZED", "ALIAS", "EPHEMERAL")


@dataclass
class _Ast:
    """What one statement's syntax tree names (parse only: nothing evaluated)."""

    tables: set[str] = field(default_factory=set)  # TableIdentifier names, as written
    identifiers: set[str] = field(default_factory=set)  # every other Identifier (columns, IN operands, ...)
    functions: set[str] = field(default_factory=set)  # every Function node's name, table functions too
    table_functions: set[str] = field(default_factory=set)  # functions in FROM
    star: bool = False
    regexp: bool = False
    settings: bool = False  # a SETTINGS clause (readonly=1 refuses the outer one, not a subquery's)
    apply: bool = False  # * APPLY(...): the tree does not print what it calls (APPLY(file) reads files)
    aliases: set[str] = field(default_factory=set)  # names given with AS (lower case): WITH lambdas
    # (identifier, function): a bare name as a direct argument of a function (arrayMap(toString, ...))
    arguments: set[tuple[str, str]] = field(default_factory=set)
    odd: bool = False  # a row that is no node: a line break inside a name or alias


def _candidates(rest: str) -> set[str]:
    """The name of a node row. The engine prints it raw, then " (alias ...)" and " (children n)"; a name
    or alias may contain those too, so every reading is returned: a name is checked in each (more may be
    refused, none is missed)."""
    rest = _CHILDREN.sub("", rest.strip())
    out = {rest.split(" ", 1)[0], rest.split(" (alias ", 1)[0]}
    return {n.replace("`", "") for n in out if n}


# aggregate functions whose (*) counts rows and shows no column
_ROW_COUNTS = frozenset({"count", "countif"})
_ALIAS = re.compile(r"\(alias ([^)]*)\)")


def _ast(lines: list[str]) -> _Ast:
    out = _Ast()
    previous = ""
    excepted = -1  # indentation of the ColumnsExceptTransformer whose children are being read
    rows: list[tuple[str, str]] = []  # (kind, first word) of the rows above, by indentation
    counted = False  # a count(*) seen
    aliases: set[str] = set()
    for line in lines:
        m = _AST_NODE.match(line)
        if m is None:
            out.odd = True
            previous = ""
            continue
        indent, kind, names = len(m.group(1)), m.group(2), _candidates(m.group(3) or "")
        del rows[indent:]
        rows.append((kind, (m.group(3) or "").split(" ", 1)[0].lower()))
        aliases |= {a.replace("`", "").lower() for a in _ALIAS.findall(m.group(3) or "")}
        if indent <= excepted:
            excepted = -1
        if kind == "ColumnsExceptTransformer":
            excepted = indent
        if kind == "Identifier" and excepted >= 0 and indent == excepted + 1:
            pass  # * EXCEPT (col): a column left out, not read
        elif kind == "TableIdentifier":
            out.tables |= names
        elif kind == "Identifier":
            out.identifiers |= names
            if indent >= 2 and rows[indent - 1][0] == "ExpressionList" and rows[indent - 2][0] == "Function":
                out.arguments |= {(n, rows[indent - 2][1]) for n in names}
        elif kind == "Function":
            fn = (m.group(3) or "").split(" ", 1)[0]  # a function's name is one word
            out.functions.add(fn)
            if previous == "TableExpression":  # a table function is the first child of its TableExpression
                out.table_functions.add(fn)
        elif kind == "Asterisk" and not m.group(3) and indent >= 2 and rows[indent - 2] in {
                ("Function", f) for f in _ROW_COUNTS}:
            counted = True  # count(*): a number of rows, no column shown, unless count is renamed (below)
        elif kind in _STAR_NODES:
            out.star = True
        elif kind == "ColumnsApplyTransformer":
            out.apply = True
        elif kind in _REGEXP_NODES:
            out.regexp = True
        elif kind == "Set":
            out.settings = True
        previous = kind
    # WITH (...) -> ... AS count makes count(*) a lambda over every column
    if counted and aliases & _ROW_COUNTS:
        out.star = True
    out.aliases = aliases
    return out


@dataclass
class _Catalog:
    """The objects the store has now: database names, and db.name -> engine of our database's objects."""

    databases: set[str]
    objects: dict[str, str]


def _catalog(client: Client, database: str, settings: dict[str, Any] | None) -> _Catalog:
    db = _literal(database)
    rows = client.query(
        "SELECT 'd', name, '' FROM system.databases "
        f"UNION ALL SELECT 't', name, engine FROM system.tables WHERE database = {db} "
        f"UNION ALL SELECT 't', name, 'Dictionary' FROM system.dictionaries WHERE database = {db}",
        settings=settings or {}).result_rows
    out = _Catalog({"system", "information_schema", "INFORMATION_SCHEMA"}, {})
    for kind, name, engine in rows:
        if kind == "d":
            out.databases.add(str(name))
        else:
            out.objects.setdefault(f"{database}.{name}", str(engine))
    return out


def _named_objects(ast: _Ast, database: str, catalog: _Catalog) -> tuple[set[str], set[str]]:
    """(objects the tree names that must be readable, unqualified table names that name nothing: CTEs or
    unknown). An identifier names an object when it is ``db.name`` of a database the store has, or when
    one of its parts is the name of an object of our database (``x IN deid_map``, ``deid_map.col``)."""
    named: set[str] = set()
    unknown: set[str] = set()
    for name in ast.tables:
        parts = name.split(".")
        if len(parts) >= 2:
            named.add(f"{parts[0]}.{parts[1]}")
        elif f"{database}.{name}" in catalog.objects:
            named.add(f"{database}.{name}")
        else:
            unknown.add(name)  # a CTE (or nothing: the analyzer says so), reads no stored object
    for name in ast.identifiers:
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] in catalog.databases:
            named.add(f"{parts[0]}.{parts[1]}")
        named |= {f"{database}.{p}" for p in parts if f"{database}.{p}" in catalog.objects}
    return named, unknown


@dataclass(frozen=True)
class _Functions:
    """The engine's function names (lower case): what each alias stands for, the ordinary functions and
    the table functions, each function's canonical name, the aggregates and the higher-order functions
    (those that take a function: arrayMap, ...). Built-in, so read once per store URL (system.functions
    costs ~50 ms)."""

    aliases: dict[str, str]
    ordinary: frozenset[str]
    tables: frozenset[str]
    canonical: dict[str, str] = field(default_factory=dict)  # any name, lower case -> canonical, lower
    aggregates: frozenset[str] = frozenset()  # canonical, lower
    higher_order: frozenset[str] = frozenset()  # canonical, lower


_function_catalogs: dict[str, _Functions] = {}
_function_lock = threading.Lock()


def _functions(client: Client, settings: dict[str, Any] | None) -> _Functions:
    key = str(client.uri)
    with _function_lock:
        known = _function_catalogs.get(key)
    if known is not None:
        return known
    query = ("SELECT 'f', name, alias_to, is_aggregate, {} FROM system.functions "
             "UNION ALL SELECT 't', name, '', 0, 0 FROM system.table_functions")
    try:
        rows = client.query(query.format("higher_order = 1"), settings=settings or {}).result_rows
    except Exception:  # a server older than system.functions.higher_order: every array*/map* function
        rows = client.query(query.format("match(name, '^(array|map)')"), settings=settings or {}).result_rows
    aliases = {str(n).lower(): str(a) for k, n, a, _, _ in rows if k == "f" and a}
    # names differing only in case are aliases of one function in the engine's list (hostname ->
    # hostName), so lower case resolves every spelling the engine accepts, and more
    canonical: dict[str, str] = {}
    for kind, name, _, _, _ in rows:
        if kind == "f":
            low, hops = str(name).lower(), 0
            while low in aliases and hops < 8:
                low, hops = aliases[low].lower(), hops + 1
            canonical[str(name).lower()] = low
    got = _Functions(aliases, frozenset(str(n).lower() for k, n, *_ in rows if k == "f"),
                     frozenset(str(n).lower() for k, n, *_ in rows if k == "t"), canonical,
                     frozenset(canonical[str(n).lower()] for k, n, _, agg, _ in rows if k == "f" and agg),
                     frozenset(canonical[str(n).lower()] for k, n, _, _, ho in rows if k == "f" and ho))
    with _function_lock:
        _function_catalogs[key] = got
    return got


# the engine's aggregate-function combinators (sumIf, uniqExactIf, groupArrayDistinct, sumMap, ...);
# longest first, so that MergeState is not read as State
_COMBINATORS = tuple(sorted(("If", "Array", "Distinct", "OrNull", "OrDefault", "State", "Merge", "MergeState",
                             "ForEach", "Resample", "Map", "SimpleState", "ArgMin", "ArgMax"),
                            key=len, reverse=True))


# the parser's names for syntax that is no function of system.functions: x -> ..., EXISTS (subquery)
_PARSER_FORMS = frozenset({"lambda", "exists"})


def _may_call(policy: Policy, known: _Functions, name: str, local: set[str], depth: int = 0) -> bool:
    """Whether ``policy`` may call ``name`` (as written in the query). An engine function: its canonical
    name must be allowed; otherwise an allowed aggregate under combinators; otherwise only a lambda the
    query itself names (``WITH x -> ... AS f``: its body is checked where it stands)."""
    low = name.lower()
    target = known.canonical.get(low)
    if target is not None or (depth == 0 and low in _PARSER_FORMS):
        return policy.may_call(name, target)
    if depth < 8:
        for suffix in _COMBINATORS:
            if low.endswith(suffix.lower()) and len(low) > len(suffix):
                base = name[:-len(suffix)]
                base_target = known.canonical.get(base.lower())
                if (base_target in known.aggregates or base_target is None) \
                        and _may_call(policy, known, base, set(), depth + 1):
                    return True
    return depth == 0 and low in local and low not in known.tables


def _check_ast(client: Client, database: str, ast: _Ast, policy: Policy, who: str, catalog: _Catalog,
               settings: dict[str, Any] | None, via: str = "") -> set[str]:
    """Refuse what the tree names that the role may not read or call; the readable objects it names."""
    through = f" (read by the view {via})" if via else ""
    if ast.odd:
        raise AccessDenied("refused: a name or alias with a line break in it")
    named, _ = _named_objects(ast, database, catalog)
    for name in sorted(named):
        if not policy.may_read(name, database):
            raise AccessDenied(f"refused for role {who}: {name}{through} is not readable by this role")
    denied_names = policy.denied_column_names
    for name in sorted(ast.identifiers):
        for part in name.split("."):
            if part.lower() in denied_names or (policy.deny_virtual_columns and part.startswith("_")):
                raise AccessDenied(f"refused for role {who}: the column {part}{through} is not readable by "
                                   "this role")
    if ast.apply and not policy.all_functions:
        raise AccessDenied(f"refused for role {who}: APPLY{through} is not allowed (what it calls is not "
                           "checked); call the function on the columns by name")
    if ast.regexp and (denied_names or policy.deny_virtual_columns):
        raise AccessDenied(f"refused for role {who}: COLUMNS('regexp'){through} is not allowed (it would "
                           "match columns this role may not read); name the columns")
    for fn in sorted(ast.table_functions):
        if not policy.may_use_table_function(fn):
            raise AccessDenied(f"refused for role {who}: the table function {fn}(){through} is not allowed")
    known = _functions(client, settings)
    # a function also stands in the tree as a bare name passed to a higher-order function
    # (arrayMap(toString, ...)): such an argument that names a function is checked as a call. Elsewhere
    # a bare name is a column (report_versions.version) or an error, never a call.
    passed = {i for i, f in ast.arguments if "." not in i and i.lower() in known.canonical
              and known.canonical.get(f, f) in known.higher_order}
    # a name that is only a table function reads a table wherever it stands (x IN merge(...))
    referenced = {i for i in ast.identifiers if "." not in i and i.lower() in known.tables}
    for fn in sorted(ast.functions | referenced):
        low = fn.lower()
        if low in known.tables and low not in known.ordinary and not policy.may_use_table_function(fn):
            raise AccessDenied(f"refused for role {who}: the table function {fn}(){through} is not allowed")
    if not policy.all_functions:
        # a table function in FROM was checked above (table_functions); a name that is an ordinary
        # function too (file, url) is checked as one as well
        called = {f for f in ast.functions if f not in ast.table_functions or f.lower() in known.ordinary}
        for fn in sorted(called | passed):
            if not _may_call(policy, known, fn, ast.aliases - known.canonical.keys()):
                raise AccessDenied(f"refused for role {who}: the function {fn}(){through} is not allowed "
                                   "(not on this role's function allowlist)")
    return {n for n in named if n.partition(".")[0] == database}


def _check_star(client: Client, database: str, objects: set[str], policy: Policy, who: str,
                catalog: _Catalog, settings: dict[str, Any] | None) -> None:
    """``*`` shows every column but MATERIALIZED/ALIAS ones: refused over an object that would show it a
    denied column (a table's own denied columns; any denied name in a view's columns)."""
    names = policy.denied_column_names
    if not names or not objects:
        return
    tables = ", ".join(_literal(o.partition(".")[2]) for o in sorted(objects))
    rows = client.query(
        f"SELECT table, name, default_kind FROM system.columns WHERE database = {_literal(database)} "
        f"AND table IN ({tables}) AND lower(name) IN ({', '.join(_literal(n) for n in sorted(names))})",
        settings=settings or {}).result_rows
    for table, column, kind in sorted((str(t), str(c), str(k)) for t, c, k in rows):
        if kind in _HIDDEN_FROM_STAR:
            continue
        view = catalog.objects.get(f"{database}.{table}") == "View"
        if view or (table, column) in policy.denied_columns:
            raise AccessDenied(f"refused for role {who}: * would show the column {column} of "
                               f"{database}.{table}, which this role may not read; name the columns")


def _ast_shape(rows: list[str]) -> None:
    """EXPLAIN AST's rows must form one tree: every row a node ("Kind[ rest]"), one space deeper than its
    parent, and a row ending in "(children n)" followed by exactly n rows one level below it (each with
    its own subtree). A row that is none of these (a forged or broken one) makes the query refused."""
    open_: list[int] = []  # children still expected by each open node, by depth
    for k, row in enumerate(rows):
        m = _AST_NODE.match(row)
        if m is None:
            raise AccessDenied("refused: the query could not be checked (unexpected parser output)")
        indent = len(m.group(1))
        children = _CHILDREN_N.search(row)
        while open_ and open_[-1] == 0:
            open_.pop()
        if indent != len(open_) or (k > 0 and not open_):
            raise AccessDenied("refused: the query could not be checked (unexpected parser output)")
        if open_:
            open_[-1] -= 1
        open_.append(int(children.group(1)) if children else 0)
    if any(open_):
        raise AccessDenied("refused: the query could not be checked (unexpected parser output)")


def _parse(client: Client, select: str, settings: dict[str, Any] | None) -> list[str]:
    try:
        rows = _lines(client, f"EXPLAIN AST {select}", settings)
    except AccessDenied:
        raise
    except Exception as exc:
        raise AccessDenied(f"refused: only one SELECT may run here, without a SETTINGS clause "
                           f"({error_code(exc)})") from None
    _ast_shape(rows)
    return rows


def _check_syntax(client: Client, database: str, ast: _Ast, policy: Policy, who: str,
                  settings: dict[str, Any] | None, selects: dict[str, str]) -> None:
    """Step 2 of the module's doc: the syntax tree of the query and of every view it reads."""
    if policy.all_tables and "*" in policy.system_tables and "*" in policy.table_functions \
            and policy.all_functions and not policy.denied_columns:
        return  # admin: the read-only engine is the only limit
    catalog = _catalog(client, database, settings)
    objects = _check_ast(client, database, ast, policy, who, catalog, settings)
    if ast.star:
        _check_star(client, database, objects, policy, who, catalog, settings)
    pending = [(o, 0) for o in sorted(objects)]
    seen: set[str] = set()
    while pending:
        name, depth = pending.pop(0)
        if name in seen or catalog.objects.get(name) != "View":
            continue
        seen.add(name)
        if depth >= MAX_VIEW_DEPTH:
            raise AccessDenied(f"refused: views nested deeper than {MAX_VIEW_DEPTH} at {name}")
        inner = _ast(_parse(client, _view_select(client, name, settings, selects), settings))
        pending.extend((o, depth + 1) for o in sorted(_check_ast(client, database, inner, policy, who,
                                                                  catalog, settings, name)))


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
        raise AccessDenied(f"not one valid statement: {_parser_message(exc)}") from None
    if _BREAKS.search(canonical) or not _names_ok(canonical):
        raise AccessDenied("refused: a name or alias with a line break or a backslash in it")
    ast_rows = _parse(client, canonical, settings)
    # our own FORMAT is the one extra child: a second one (INTO OUTFILE) is refused
    if not ast_rows or ast_rows[0].strip() != "SelectWithUnionQuery (children 2)" \
            or ast_rows[-1] != " Identifier TSVRaw":
        kind = ast_rows[0].split()[0] if ast_rows else "nothing"
        raise AccessDenied(f"refused: only one SELECT may run here (got {kind}; no INTO OUTFILE, FORMAT or "
                           "SETTINGS clause: ask for the output format with ?format=)")
    ast = _ast(ast_rows[:-1])
    if ast.settings:
        raise AccessDenied("refused: no SETTINGS clause, in a subquery either")
    # before anything is evaluated: the analyzer below folds constants and runs scalar subqueries
    selects: dict[str, str] = {}  # the views' SELECTs, asked for once per check
    _check_syntax(client, database, ast, policy, who, settings, selects)
    try:
        return _check_tree(client, database, canonical, policy, who, settings, selects)
    except AccessDenied as exc:
        raise AccessDenied(UNCHECKED, exc.audit) from None
    except Exception as exc:
        code = error_code(exc)
        shown = f"{UNCHECKED}: {str(exc).strip()[:2000]}" if policy.reads_everything else UNCHECKED
        raise AccessDenied(shown, f"refused: the query could not be analysed ({code})") from None


def _check_tree(client: Client, database: str, canonical: str, policy: Policy, who: str,
                settings: dict[str, Any] | None, selects: dict[str, str]) -> Checked:
    """Step 3 of the module's doc: the analyzer's tree of the query and of every view it reads."""
    tree = _tree(client, canonical, settings)
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
                inner = _tree(client, _view_select(client, name, settings, selects), settings)
            except AccessDenied:
                raise
            except Exception as exc:
                raise AccessDenied(f"the view {name} could not be analysed ({error_code(exc)})") from None
            _check_columns(inner, policy, database, who, name)
            functions |= inner.functions
            table_functions |= inner.table_functions
            pending.extend((t, depth + 1, name) for t in sorted(inner.tables))
    for fn in sorted(table_functions):
        if not policy.may_use_table_function(fn):
            raise AccessDenied(f"refused for role {who}: the table function {fn}() is not allowed")
    if not policy.all_functions:
        known = _functions(client, settings)
        for fn in sorted(functions):
            # the analyzer's tree names only engine functions (WITH lambdas are inlined)
            if not _may_call(policy, known, fn, set()):
                raise AccessDenied(f"refused for role {who}: the function {fn}() is not allowed (not on this "
                                   "role's function allowlist)")
    return Checked(canonical, sorted(read), sorted(table_functions))
