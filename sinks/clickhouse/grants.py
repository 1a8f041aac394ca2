"""ClickHouse server roles and GRANTs matching our roles (docs/access.md), made by ``radstream db migrate``
on a server (an embedded chDB store has no users: there the SQL page's allowlists are the control).

* ``radstream_analyst``: SELECT on exactly the objects of ``roles/analyst.json`` that exist (base
  tables included: views run with the invoker's rights, so a view over a restricted table fails for
  an analyst on the server too); on a table with ``denied_columns``, or with a column of a name denied in
  any table (``inserted_at``, ``kafka_offset`` ...), SELECT on its other columns only (a table whose
  columns are not known is not granted at all). The server enforces no more than that: the function
  allowlist and the refusal of virtual columns hold only where our check runs (``sinks.clickhouse.access``:
  the /sql page, local commands, the web app);
* ``radstream_steward``: SELECT on every table and view of the warehouse database;
* ``radstream_writer``: what the sink needs: INSERT and SELECT, and the idempotent migrations it runs
  at start (CREATE ... IF NOT EXISTS, CREATE OR REPLACE VIEW, ADD COLUMN); no ALTER DELETE/UPDATE,
  no DROP TABLE, no TRUNCATE, so the audit table stays append-only. The sink connects as a user
  holding it (``clickhouse.url = http://<writer>:<password>@host:8123``);
* ``radstream_admin``: everything on the warehouse database (migrations run as such a user).

A site maps its own users: ``GRANT radstream_analyst TO alice`` (or to an LDAP/Kerberos-mapped user).
Each run revokes and re-grants the analyst role's SELECTs, so it matches the allowlist file exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.access import ROLES_DIR, policy_for
from sinks.clickhouse.client import quote_ident

SERVER_ROLES = {"analyst": "radstream_analyst", "steward": "radstream_steward", "writer": "radstream_writer",
                "admin": "radstream_admin"}


def grant_statements(database: str, objects: Iterable[str], roles_dir: Path = ROLES_DIR,
                     columns: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The statements for ``database`` whose tables and views are ``objects`` (``columns``: each one's
    columns, needed for the tables with columns the analyst role may not read)."""
    db = quote_ident(database)
    r = {k: quote_ident(v) for k, v in SERVER_ROLES.items()}
    analyst = policy_for(["analyst"], roles_dir)
    readable = sorted(o for o in set(objects) if analyst.all_tables or o in analyst.tables)
    hidden = {t for t, _ in analyst.denied_columns}
    names = analyst.denied_column_names  # refused in any table by the check: not granted in any either

    def denied(o: str, c: str) -> bool:
        return (o, c) in analyst.denied_columns or c.lower() in names

    out = [f"CREATE ROLE IF NOT EXISTS {name}" for name in r.values()]
    out.append(f"REVOKE SELECT ON {db}.* FROM {r['analyst']}")
    for o in readable:
        known = (columns or {}).get(o)
        if o not in hidden and not (known and any(denied(o, c) for c in known)):
            out.append(f"GRANT SELECT ON {db}.{quote_ident(o)} TO {r['analyst']}")
            continue
        shown = [c for c in known or () if not denied(o, c)]
        if shown:  # unknown columns: no grant rather than the whole table
            out.append(f"GRANT SELECT({', '.join(quote_ident(c) for c in shown)}) ON {db}.{quote_ident(o)} "
                       f"TO {r['analyst']}")
    out.append(f"GRANT SELECT ON {db}.* TO {r['steward']}")
    out.append(f"GRANT SELECT, INSERT, CREATE DATABASE, CREATE TABLE, CREATE VIEW, DROP VIEW, "
               f"ALTER ADD COLUMN, ALTER COMMENT COLUMN ON {db}.* TO {r['writer']}")
    out.append(f"GRANT ALL ON {db}.* TO {r['admin']}")
    return out


def warehouse_grant_statements(client: Client, database: str, roles_dir: Path = ROLES_DIR) -> list[str]:
    """``grant_statements`` for the tables, views and columns that ``database`` has now."""
    rows = client.query("SELECT name FROM system.tables WHERE database = {db:String}",
                        parameters={"db": database}).result_rows
    columns: dict[str, list[str]] = {}
    for table, name in client.query("SELECT table, name FROM system.columns WHERE database = {db:String} "
                                    "ORDER BY table, position", parameters={"db": database}).result_rows:
        columns.setdefault(str(table), []).append(str(name))
    return grant_statements(database, [str(n) for (n,) in rows], roles_dir, columns)


def apply_grants(client: Client, database: str, roles_dir: Path = ROLES_DIR) -> list[str]:
    """Create the roles and grants on a server; returns the statements run."""
    stmts = warehouse_grant_statements(client, database, roles_dir)
    for stmt in stmts:
        client.command(stmt)
    return stmts
