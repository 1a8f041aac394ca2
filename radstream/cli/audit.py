"""``radstream audit``: recent audit events (table ``audit_log``), filtered by user, project, action
and time. Reads through the running worker like ``radstream sql`` (as the OS user's local admin token,
or ``RADSTREAM_TOKEN``, which needs the role steward or admin)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from radstream.cli import settings_of


def _when(value: str) -> str:
    dt = datetime.fromisoformat(value)
    dt = dt if dt.tzinfo else dt.astimezone()
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@click.command()
@click.option("--user", "actor", default=None, help="Only this actor (user name, os:<name>, requester).")
@click.option("--project", default=None, help="Only events of this project.")
@click.option("--action", default=None,
              help="Only this action (sql.query, login.failure, retrieval.request ...).")
@click.option("--since", default=None, help="ISO time (local time zone when none is given).")
@click.option("--until", default=None, help="ISO time.")
@click.option("--refused", is_flag=True, help="Only refused requests and failed logins.")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "tsv", "json", "jsonl"]), default="table",
              show_default=True)
@click.pass_context
def audit(ctx: click.Context, actor: str | None, project: str | None, action: str | None, since: str | None,
          until: str | None, refused: bool, limit: int, fmt: str) -> None:
    """List recent audit events, newest first."""
    from radstream.warehouse import WarehouseError, query_text, quote

    where = ["1"]
    if actor:
        where.append(f"actor = '{quote(actor)}'")
    if project:
        where.append(f"project = '{quote(project)}'")
    if action:
        where.append(f"action = '{quote(action)}'")
    try:
        if since:
            where.append(f"time >= toDateTime64('{_when(since)}', 6, 'UTC')")
        if until:
            where.append(f"time < toDateTime64('{_when(until)}', 6, 'UTC')")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if refused:
        where.append("NOT allowed")
    every = "time, actor, action, allowed, project, tables, rows, duration_ms, query, detail, host, process"
    narrow = ("formatDateTime(time, '%F %T') AS at, actor, action, allowed, project, rows, "
              "substringUTF8(replaceAll(query, '\\n', ' '), 1, 60) AS sql")
    columns = narrow if fmt == "table" else every
    sql = (f"SELECT {columns} "
           f"FROM audit_log WHERE {' AND '.join(where)} ORDER BY time DESC LIMIT {max(1, int(limit))}")
    settings = settings_of(ctx)
    try:
        text = query_text(settings, sql, "json" if fmt == "table" else fmt)
    except WarehouseError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt != "table":
        click.echo(text, nl=not text.endswith("\n"))
        return
    import json

    from radstream.cli.sql import _print_table

    doc = json.loads(text)
    cols = [m["name"] for m in doc["meta"]]
    _print_table(cols, [[row.get(c) for c in cols] for row in doc["data"]])
