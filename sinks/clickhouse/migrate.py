"""Versioned, idempotent DDL: ``ddl/NNN_name.sql`` applied in order, recorded in ``schema_migrations``.

Every statement is itself idempotent (CREATE ... IF NOT EXISTS, CREATE OR REPLACE VIEW), so a run that
died half-way is simply run again. A file already recorded is skipped unless its checksum changed and
it contains only views (``CREATE OR REPLACE VIEW``), which are then re-applied; a changed table file is
an error (write a new numbered file instead).

A file may name data that lives elsewhere in the code as a placeholder (``DATA``), filled in when its
statements are made, so a migration does not hold a second copy of it (ddl/035: the section headers).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import quote_ident

DDL_DIR = Path(__file__).with_name("ddl")
_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def migrations(ddl_dir: Path = DDL_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(ddl_dir.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise MigrationError(f"DDL file name must look like 001_name.sql: {path.name}")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {ddl_dir}")
    return found


def _string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def section_titles() -> str:
    """A ClickHouse ``map(...)`` of the section splitter's header vocabulary: each title as
    ``processors.nlp.matching.normalize`` makes it -> its section name. The same map that
    ``streams.handlers.section_title`` decides a bare header word by (``SectionSplitter.name_of``)."""
    from processors.nlp.sections import default_splitter

    pairs = sorted(default_splitter().name_of.items())
    return "map(" + ", ".join(f"{_string(k)}, {_string(v)}" for k, v in pairs) + ")"


# placeholder -> its SQL, made when a file names it
DATA: dict[str, Callable[[], str]] = {"{section_titles}": section_titles}


def statements(sql: str, database: str) -> list[str]:
    """Split a DDL file into statements (``;`` at a line end) with ``{db}`` and the ``DATA`` placeholders
    filled in."""
    no_comments = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    for name, make in DATA.items():
        if name in no_comments:
            no_comments = no_comments.replace(name, make())
    parts = re.split(r";\s*(?:\n|$)", no_comments)
    return [p.strip().replace("{db}", quote_ident(database)) for p in parts if p.strip()]


def _views_only(sql: str) -> bool:
    return all(s.upper().startswith("CREATE OR REPLACE VIEW") for s in statements(sql, "x"))


def ensure_migrations_table(client: Client, database: str) -> None:
    db = quote_ident(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree(applied_at) "
        "ORDER BY version"
    )


def applied_checksums(client: Client, database: str) -> dict[int, str]:
    """Version -> the checksum it was last recorded with."""
    rows = client.query(f"SELECT version, argMax(checksum, applied_at) FROM {quote_ident(database)}"
                        ".schema_migrations GROUP BY version").result_rows
    return {int(v): str(c) for v, c in rows}


def pending(found: list[Migration], applied: dict[int, str]) -> list[Migration]:
    """The migrations to run, in order: those not recorded, and recorded views-only files whose checksum
    changed; MigrationError for a changed file that is not views-only."""
    todo: list[Migration] = []
    for mig in found:
        if mig.version in applied:
            if applied[mig.version] == mig.checksum:
                continue
            if not _views_only(mig.text):
                raise MigrationError(f"{mig.path.name} changed after it was applied; add a new numbered file")
        todo.append(mig)
    return todo


def migrate(client: Client, database: str, ddl_dir: Path = DDL_DIR) -> list[str]:
    """Apply the pending migrations to ``database``; return the names applied."""
    ensure_migrations_table(client, database)
    done: list[str] = []
    for mig in pending(migrations(ddl_dir), applied_checksums(client, database)):
        for stmt in statements(mig.text, database):
            client.command(stmt)
        client.insert(f"{database}.schema_migrations",
                      [[mig.version, mig.name, mig.checksum]], column_names=["version", "name", "checksum"])
        done.append(f"{mig.version:03d}_{mig.name}")
    return done


def main(argv: list[str] | None = None) -> None:
    """``python -m sinks.clickhouse.migrate [--cluster NAME] [--database DB] NNN``: print the statements of
    migration NNN with its data placeholders filled in, to run by hand (again after a replay); with
    ``--cluster``, the cluster form that ``radstream db migrate --cluster`` runs
    (``sinks.clickhouse.cluster_migrate``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sinks.clickhouse.migrate", description=main.__doc__)
    parser.add_argument("--cluster", default=None)
    parser.add_argument("--database", default="radstream")
    parser.add_argument("version", type=int)
    args = parser.parse_args(argv)
    found = [m for m in migrations() if m.version == args.version]
    if not found:
        raise SystemExit(f"no migration {args.version:03d} in {DDL_DIR}")
    if args.cluster:
        from sinks.clickhouse.cluster_migrate import plan_cluster

        stmts = plan_cluster(args.database, args.cluster, upto=args.version).upgrades[args.version]
    else:
        stmts = statements(found[0].text, args.database)
    for stmt in stmts:
        print(stmt + ";\n")


if __name__ == "__main__":
    main()
