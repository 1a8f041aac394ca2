"""``radstream sql "SELECT ..." [--format table|csv|tsv|json|jsonl]``: read-only analyst queries.

Embedded mode (``chdb://``): the worker process owns the store, so when its web server answers the
query goes to ``POST http://<worker.web_host>:<worker.web_port>/sql?format=...`` (body = SQL text,
response body = the result text); otherwise the store is opened directly. Server mode: direct.
The worker is used only when its store is ours (same path). Either way the query runs with
readonly=1 (see ``sinks/clickhouse/query.py``).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from radstream.cli import settings_of
from radstream.config import Settings

FORMATS = ("table", "csv", "tsv", "json", "jsonl")


class WorkerUnavailable(Exception):
    pass


def ask_worker(settings: Settings, query: str, fmt: str, timeout: float = 300.0) -> str:
    """Send the query to the worker's /sql page; raises WorkerUnavailable when nobody answers."""
    host, port = settings.worker.web_host, settings.worker.web_port
    url = f"http://{host}:{port}/sql?" + urllib.parse.urlencode({"format": fmt})
    req = urllib.request.Request(url, data=query.encode(), method="POST",
                                 headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", errors="replace").strip()
        if exc.code == 503 and exc.headers.get("X-Radstream-Sink") == "starting":
            raise click.ClickException(f"{text} -- try again in a moment") from exc
        if exc.code in (404, 503):
            raise WorkerUnavailable(text) from exc
        raise click.ClickException(text or f"worker answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise WorkerUnavailable(str(exc)) from exc


def worker_serves_our_store(settings: Settings) -> bool:
    """True when the worker on our web port has our embedded store open (not another state dir's)."""
    text = ask_worker(settings, "SELECT path FROM system.disks WHERE name = 'default'", "tsv", timeout=10)
    lines = text.splitlines()
    if len(lines) < 2:
        return False
    ours = os.path.realpath(settings.clickhouse_url.removeprefix("chdb://"))
    return os.path.realpath(lines[1].strip()) == ours


def run_direct(settings: Settings, query: str, fmt: str) -> Any:
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.query import run_readonly

    try:
        client = open_client(settings, create_database=False)
    except Exception as exc:
        if "UNKNOWN_DATABASE" in str(exc):
            hint = " (no warehouse there yet: run `radstream db migrate`, or start the worker)"
        elif settings.embedded_clickhouse:
            hint = " (is another process, e.g. a worker without its web server, holding the embedded store?)"
        else:
            hint = ""
        raise click.ClickException(f"cannot open {settings.clickhouse_url}: {exc}{hint}") from exc
    try:
        return run_readonly(client, query, fmt)
    finally:  # a command is one query: free the embedded engine for the next user of this process
        client.close()
        if settings.embedded_clickhouse:
            from sinks.clickhouse.query import close_readonly_clients

            close_readonly_clients()


def _print_table(columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, show_lines=False)
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    Console().print(table)
    click.echo(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


@click.command()
@click.argument("query")
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--direct", is_flag=True, help="Open the store directly, never ask a running worker.")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str, direct: bool) -> None:
    """Run a read-only SQL query on the warehouse (QUERY '-' reads it from stdin)."""
    settings = settings_of(ctx)
    if query == "-":
        query = sys.stdin.read()
    wire = "json" if fmt == "table" else fmt
    text: str | None = None
    if settings.embedded_clickhouse and not direct:
        try:
            text = ask_worker(settings, query, wire) if worker_serves_our_store(settings) else None
        except WorkerUnavailable:
            text = None
    try:
        if text is None:
            if fmt == "table":
                res = run_direct(settings, query, "rows")
                _print_table(res.columns, [list(r) for r in res.rows])
                return
            text = str(run_direct(settings, query, wire))
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "table":
        doc = json.loads(text)
        cols = [m["name"] for m in doc["meta"]]
        _print_table(cols, [[row.get(c) for c in cols] for row in doc["data"]])
    else:
        click.echo(text, nl=not text.endswith("\n"))
