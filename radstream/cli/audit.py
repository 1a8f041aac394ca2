"""``radstream audit``: recent audit events (table ``audit_log``), filtered by user, project, action
and time. Reads through the running worker like ``radstream sql`` (as the OS user's local admin token,
or ``RADSTREAM_TOKEN``, which needs the role steward or admin). ``radstream audit push`` sends this
host's local audit log to the audit topic, for events the topic never confirmed."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from radstream.cli import settings_of


def _when(value: str) -> str:
    dt = datetime.fromisoformat(value)
    dt = dt if dt.tzinfo else dt.astimezone()
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@click.group(invoke_without_command=True)
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
    """List recent audit events, newest first (``push``: send the local audit log to the audit topic)."""
    if ctx.invoked_subcommand is not None:
        return
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


@audit.command()
@click.option("--since", default=None,
              help="Only events from this ISO time (local time zone when none is given).")
@click.option("--timeout", default=30.0, show_default=True, type=float,
              help="Seconds to wait for the audit topic to confirm.")
@click.pass_context
def push(ctx: click.Context, since: str | None, timeout: float) -> None:
    """Send this host's local audit log (auth.audit_log) to the audit topic.

    For events that a local command recorded while the broker was unreachable. Every event of the file
    is sent; the warehouse keeps one row per event, so the ones it already has are not doubled."""
    from radstream.access import push_local_log

    settings = settings_of(ctx)
    try:
        start = datetime.fromisoformat(_when(since)).replace(tzinfo=UTC) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        sent, left = push_local_log(settings, start, timeout)
    except FileNotFoundError:
        raise click.ClickException(f"no local audit log at {settings.auth.audit_log}") from None
    except ValueError as exc:  # a line that is not an event: say where, send nothing
        raise click.ClickException(str(exc)) from None
    if left:
        raise click.ClickException(f"{left} of {sent + 1} audit event(s) not confirmed by the audit topic "
                                   f"within {timeout:g} s (refused by the broker, or Kafka unreachable)")
    click.echo(f"sent {sent} audit event(s) from {settings.auth.audit_log} to {settings.topics.audit}")
