"""Read-only analyst queries (``radstream sql`` and the worker's ``/sql`` page).

Read-only is enforced by ClickHouse itself: every query runs with ``readonly=1`` (no writes, no DDL,
no settings changes, no file()/url() table functions) and ``final=1`` (ReplacingMergeTree tables are
read deduplicated, so ``reports`` shows one row per accession and replays never double-count).

* chDB: settings are per connection handle, so queries go through a separate client on the same
  engine whose handle was switched to ``final=1, readonly=1`` once (a per-call readonly setting would
  leave a shared handle read-only for good).
* server: the two settings ride on every request of the caller's client.

A non-admin's query also runs with ``limits`` (``ClickHouseConfig.query_limits``: result rows and bytes,
memory, time): chDB takes them on a read-only handle of their own (made before ``readonly=1``), a
server on every request with the read-only settings. The role check's query never needs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.access import Checked, Policy, check
from sinks.clickhouse.client import client_url, is_embedded, readonly_client_like

READONLY_SETTINGS = {"final": 1, "readonly": 1}
# our format name -> ClickHouse output format
FORMATS = {
    "tsv": "TabSeparatedWithNames",
    "csv": "CSVWithNames",
    "json": "JSON",
    "jsonl": "JSONEachRow",
}


_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+\w+\s*$", re.IGNORECASE)


class QueryError(ValueError):
    pass


@dataclass(frozen=True)
class Result:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


_ro_clients: dict[tuple[str, str, str], Client] = {}
_ro_lock = threading.Lock()


def _readonly_sibling(client: Client, limits: Mapping[str, Any] | None = None) -> Client:
    """The read-only handle on ``client``'s store with ``limits`` (one per set of limits: a chDB handle's
    settings are fixed once it is read-only). Its calls leave no output behind a failure for the next
    caller, whatever the role (``sinks.clickhouse.client._CleanChdbClient``)."""
    url = client_url(client)
    database = str(client.database or "default")
    key = (url, database, json.dumps(dict(limits or {}), sort_keys=True))
    with _ro_lock:
        ro = _ro_clients.get(key)
        if ro is None:
            ro = _ro_clients[key] = readonly_client_like(url, database, dict(limits or {}))
        return ro


def close_readonly_clients(url: str | None = None) -> None:
    """Close the cached read-only clients (of one store URL, or all). With chDB the engine of a path
    stays up while any client on it is open, and a process can host only one path at a time."""
    with _ro_lock:
        for key in [k for k in _ro_clients if url is None or k[0] == url]:
            _ro_clients.pop(key).close()


def store_id(url: str) -> str:
    """Who serves which embedded store, without saying where it is: a digest of the store's real path
    (``/health`` gives it to any token; the path itself only to admins: a path is what file() and
    friends would need)."""
    path = os.path.realpath(url.removeprefix("chdb://")) if is_embedded(url) else url
    return hashlib.sha256(b"radstream-store\0" + path.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def count_rows(fmt: str, out: str | Result) -> int | None:
    """Rows in a query's output (for the audit); None for a format we do not count."""
    if isinstance(out, Result):
        return len(out.rows)
    lines = [line for line in out.splitlines() if line]
    if fmt in ("tsv", "csv"):
        return max(0, len(lines) - 1)
    if fmt == "jsonl":
        return len(lines)
    if fmt == "json":
        try:
            return int(json.loads(out).get("rows", 0))
        except (ValueError, AttributeError):
            return None
    return None


def run_readonly(client: Client, sql: str, fmt: str = "tsv", policy: Policy | None = None,
                 checked: list[Checked] | None = None,
                 limits: Mapping[str, Any] | None = None) -> str | Result:
    """Run one analyst query read-only.

    ``fmt`` in ``tsv | csv | json | jsonl`` returns ClickHouse's text output (with a header row for
    tsv/csv); ``rows`` returns a ``Result`` (columns, types, rows) for programmatic use and tables.
    With ``policy`` the query must pass ``access.check`` for it first (AccessDenied otherwise) and what
    runs is the canonical text that was checked; ``checked`` (a list) receives that ``Checked``.
    """
    sql = sql.strip().rstrip(";").strip()
    if not sql:
        raise QueryError("empty query")
    embedded = is_embedded(client_url(client))
    checker = _readonly_sibling(client) if embedded else client
    runner = _readonly_sibling(client, limits) if embedded and limits else checker
    # a server: the limits before readonly=1, in the request's own settings
    settings: dict[str, Any] = {} if embedded else {"final": 1, **(limits or {}), "readonly": 1}
    if policy is not None:
        own = _TRAILING_FORMAT.search(sql)
        body = sql[: own.start()].rstrip().rstrip(";").rstrip() if own else sql
        # the check runs on a read-only client too: it never needs more than the query itself
        done = check(checker, str(client.database or "default"), body, policy,
                     {} if embedded else dict(READONLY_SETTINGS))
        if checked is not None:
            checked.append(done)
        sql = f"{done.sql}\n{own.group(0).strip()}" if own else done.sql
    if fmt == "rows":
        res = runner.query(sql, settings=settings)
        rows = [tuple(r) for r in res.result_rows]
        return Result(list(res.column_names), [t.name for t in res.column_types], rows)
    try:
        ch_fmt = FORMATS[fmt]
    except KeyError:
        raise QueryError(f"unknown format {fmt!r}; use one of {', '.join([*FORMATS, 'rows'])}") from None
    # a query that names its own output format keeps it
    own_format = _TRAILING_FORMAT.search(sql) is not None
    out = runner.raw_query(sql, fmt=None if own_format else ch_fmt, settings=settings)
    return out.decode("utf-8", errors="replace")
