"""Read-only warehouse queries from commands: through the worker that owns the embedded store when it
runs (``POST /sql``), else by opening the store (or the ClickHouse server) directly."""

from __future__ import annotations

import csv
import io

from radstream.config import Settings


def query_text(settings: Settings, sql: str, fmt: str = "tsv") -> str:
    """The query's output in ``fmt`` (tsv/csv with a header row, json, jsonl)."""
    from radstream.cli.sql import WorkerUnavailable, ask_worker, run_direct, worker_serves_our_store

    if settings.embedded_clickhouse:
        try:
            if worker_serves_our_store(settings):
                return ask_worker(settings, sql, fmt)
        except WorkerUnavailable:
            pass
    return str(run_direct(settings, sql, fmt))


def query_rows(settings: Settings, sql: str) -> list[list[str]]:
    """Rows of a query as strings, without the header row."""
    text = query_text(settings, sql, "csv")
    return list(csv.reader(io.StringIO(text)))[1:]


def quote(value: str) -> str:
    """A ClickHouse string literal's body."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
