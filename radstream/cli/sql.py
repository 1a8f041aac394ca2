"""``radstream sql "SELECT ..." [--format table|csv|tsv|json|jsonl]``: read-only analyst queries.

Embedded mode (``chdb://``): the worker process owns the store, so when its web server answers the
query goes to ``POST http://<worker.web_host>:<worker.web_port>/sql?format=...`` (body = SQL text,
response body = the result text). In the deployment's state directory (the store is there) the worker
is used only when its store is ours (same path), and the store is opened directly when no worker
answers; anywhere else (an analyst's own directory: no store) only the worker is asked, and nothing is
created there (``radstream.warehouse.from_worker``). Server mode: direct. Either way the query runs with
readonly=1 (see ``sinks/clickhouse/query.py``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from radstream.cli import settings_of
from radstream.warehouse import from_worker, run_direct

FORMATS = ("table", "csv", "tsv", "json", "jsonl")


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
    try:
        text = None if direct else from_worker(settings, query, wire)
        if text is None:
            if fmt == "table":
                res = run_direct(settings, query, "rows")
                _print_table(res.columns, [list(r) for r in res.rows])
                return
            text = str(run_direct(settings, query, wire))
    except Exception as exc:  # WarehouseError included: the analyst gets the reason
        raise click.ClickException(str(exc)) from exc
    if fmt == "table":
        doc = json.loads(text)
        cols = [m["name"] for m in doc["meta"]]
        _print_table(cols, [[row.get(c) for c in cols] for row in doc["data"]])
    else:
        click.echo(text, nl=not text.endswith("\n"))
