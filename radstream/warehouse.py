"""Read-only warehouse queries from commands: through the worker that owns the embedded store when it
runs (``POST /sql``), else by opening the store (or the ClickHouse server) directly."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from radstream.config import Settings
from streams.auth import Principal
from streams.peer import PeerRefused, Pinned, Trust, uid_of, urlopen

QUERY_ROLES = ("analyst", "steward", "admin")  # who may query; each role's tables: sinks/clickhouse/roles


class WarehouseError(Exception):
    """The warehouse refused or could not answer; the message says why (for the analyst)."""


class WorkerUnavailable(WarehouseError):
    """No worker answers for the embedded store: open it directly instead."""


def auth_headers(settings: Settings) -> dict[str, str]:
    """The header that authenticates a local command: ``RADSTREAM_TOKEN`` or the OS user's local token
    (streams.auth.client_token)."""
    from streams.auth import client_token

    return {"Authorization": f"Bearer {client_token(settings.auth.token_file, settings.auth.audit_log)}"}


def _worker_request(settings: Settings, path: str, data: bytes | None = None) -> urllib.request.Request:
    """A request to the worker's page, authenticated (``auth_headers``)."""
    headers = auth_headers(settings)
    if data is not None:
        headers["Content-Type"] = "text/plain; charset=utf-8"
    return urllib.request.Request(worker_url(settings).removesuffix("/sql") + path, data=data,
                                  headers=headers, method="POST" if data is not None else "GET")


def pinned(settings: Settings) -> Pinned | None:
    """Our endpoints' certificate, pinned (``streams.peer.Pinned``), when they serve HTTPS."""
    return Pinned.of(settings.auth.tls_cert) if settings.auth.tls_cert else None


def peer_trust(settings: Settings) -> Trust:
    """Whom this process sends a token over plain HTTP (``streams.peer``, ``auth.service_user``)."""
    a = settings.auth
    return Trust(uid_of(a.service_user) if a.service_user else None, a.plain_http_remote)


def open_ours(settings: Settings, req: urllib.request.Request, timeout: float) -> Any:
    """Open a request that carries a token (or SQL) to one of our processes: HTTPS to a peer that
    presents our certificate (its leaf, exactly), or plain HTTP to a peer ``peer_trust`` accepts;
    PeerRefused before anything is sent otherwise. Every such request of the commands and the web app
    goes through here."""
    return urlopen(req, peer_trust(settings), timeout=timeout, tls=pinned(settings))


def ask_worker(settings: Settings, query: str, fmt: str, timeout: float = 300.0) -> str:
    """Send the query to the worker's /sql page; raises WorkerUnavailable when nobody answers."""
    req = _worker_request(settings, "/sql?" + urllib.parse.urlencode({"format": fmt}), query.encode())
    try:
        with open_ours(settings, req, timeout) as resp:
            body: bytes = resp.read()
            return body.decode("utf-8", errors="replace")
    except PeerRefused as exc:
        raise WarehouseError(str(exc)) from None
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", errors="replace").strip()
        if exc.code == 503 and exc.headers.get("X-Radstream-Sink") == "starting":
            raise WarehouseError(f"{text} -- try again in a moment") from exc
        if exc.code in (404, 503):
            raise WorkerUnavailable(text) from exc
        if exc.code == 401:  # which token was sent: RADSTREAM_TOKEN, else this state dir's local one
            sent = "RADSTREAM_TOKEN" if os.environ.get("RADSTREAM_TOKEN", "").strip() else "the local token"
            raise WarehouseError(f"the worker at {worker_url(settings)} refused {sent}: {text}") from exc
        raise WarehouseError(text or f"worker answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise WorkerUnavailable(str(exc)) from exc


def has_local_store(settings: Settings) -> bool:
    """Whether this caller's state directory holds the embedded store (its database's metadata is
    there); always true with a ClickHouse server. An analyst who runs a command in a directory of their
    own has none: the query goes to the worker, and nothing is created there (``query_text``)."""
    if not settings.embedded_clickhouse:
        return True
    path = Path(settings.clickhouse_url.removeprefix("chdb://"))
    try:  # a store of another OS user's may not be ours to list: it is there, opening it will say why not
        return (path / "metadata" / f"{settings.clickhouse.database}.sql").exists() or \
            (path.is_dir() and not os.access(path, os.R_OK | os.X_OK))
    except OSError:
        return True


def worker_url(settings: Settings) -> str:
    scheme = "https" if settings.auth.tls_cert else "http"
    return f"{scheme}://{settings.worker.web_host}:{settings.worker.web_port}/sql"


def ask_worker_only(settings: Settings, query: str, fmt: str) -> str:
    """The query sent to the configured worker, for a caller with no store of its own to fall back on:
    a worker that does not answer is a WarehouseError saying where it asked, and why the store cannot
    be opened from here instead. Without ``RADSTREAM_TOKEN`` and with no token store here, refused
    before asking (a local token would be made in a state directory that is not the deployment's)."""
    if not os.environ.get("RADSTREAM_TOKEN", "").strip() and not Path(settings.auth.token_file).exists():
        raise WarehouseError(
            f"no token: set RADSTREAM_TOKEN to the token your data steward gave you (docs/analysts.md); "
            f"{settings.state_dir} is not a radstream state directory (no store, no token store)")
    try:
        return ask_worker(settings, query, fmt)
    except WorkerUnavailable as exc:
        raise WarehouseError(
            f"no worker answers at {worker_url(settings)} ({exc}), and there is no store in "
            f"{settings.state_dir} to open instead: opening the store directly needs the store's OS user, in "
            "the deployment's state directory. Start the worker, or point worker.web_host/web_port "
            "(RADSTREAM_WORKER_WEB_HOST/_PORT) at the one that serves the warehouse") from None


def worker_serves_our_store(settings: Settings) -> bool:
    """True when the worker on our web port has our embedded store open (not another state dir's)."""
    try:
        with open_ours(settings, _worker_request(settings, "/health"), 10) as resp:
            health = json.loads(resp.read())
    except PeerRefused as exc:  # not "no worker": something else holds the worker's port
        raise WarehouseError(str(exc)) from None
    except urllib.error.HTTPError as exc:
        if exc.code == 401 and os.environ.get("RADSTREAM_TOKEN", "").strip():
            reason = exc.read().decode(errors="replace").strip()
            raise WarehouseError(f"the worker refused RADSTREAM_TOKEN: {reason}") from exc
        # our local token unknown there: that worker belongs to another state dir, not our store
        raise WorkerUnavailable(f"worker answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
        raise WorkerUnavailable(str(exc)) from exc
    from sinks.clickhouse.query import store_id

    # a digest of the store's path (the path itself is given to admins only)
    return bool(health.get("store_id")) and health.get("store_id") == store_id(settings.clickhouse_url)


def audited_query(client: Any, settings: Settings, principal: Principal, sql: str, fmt: str, *, target: Any,
                  endpoint: str) -> Any:
    """One query on an open client as ``principal``: checked against the allowlists of the principal's
    query roles, and audited (``sql.query``, with ``endpoint``): allowed, refused by the check (its
    reason), or failed in the engine (the error's code name only: the engine's message may quote values).
    The /sql page does the same in the worker; the web app and local commands that open the warehouse
    themselves call this. AccessDenied and the engine's errors are raised."""
    from radstream.access import roles_dir
    from sinks.clickhouse.access import AccessDenied, Checked, error_code, policy_for
    from sinks.clickhouse.query import count_rows, run_readonly
    from streams import audit

    policy = policy_for([r for r in principal.roles if r in QUERY_ROLES], Path(roles_dir(settings)))
    checked: list[Checked] = []
    started = time.monotonic()
    try:
        # a non-admin's query within the configured limits (result size, memory, time)
        limits = None if "admin" in principal.roles else settings.clickhouse.query_limits()
        out = run_readonly(client, sql, fmt, policy=policy, checked=checked, limits=limits)
    except AccessDenied as exc:
        audit.record(target, principal.user, "sql.query", allowed=False, query=sql, reason=exc.audit,
                     endpoint=endpoint)
        raise
    except Exception as exc:
        audit.record(target, principal.user, "sql.query", allowed=False, query=sql,
                     reason=f"the query failed in the engine ({error_code(exc)})",
                     tables=checked[0].tables if checked else (),
                     duration_ms=round((time.monotonic() - started) * 1000, 3), endpoint=endpoint)
        raise
    audit.record(target, principal.user, "sql.query", allowed=True, query=sql,
                 tables=checked[0].tables if checked else (), rows=count_rows(fmt, out),
                 duration_ms=round((time.monotonic() - started) * 1000, 3), endpoint=endpoint)
    return out


def run_direct(settings: Settings, query: str, fmt: str) -> Any:
    """Run the query on the store (or server) opened here, as the worker's /sql page does: the caller is
    authenticated (``RADSTREAM_TOKEN`` or the OS user's local token), the query must pass the policy of
    the caller's query roles, and it is audited (``sql.query``, allowed or refused, endpoint ``cli``)."""
    from radstream.access import authorise, flush_audit
    from sinks.clickhouse.access import AccessDenied
    from sinks.clickhouse.client import open_client
    from streams.auth import AuthError

    if not has_local_store(settings):  # before anything is written here (an audit log, a token store)
        raise WarehouseError(
            f"no store in {settings.state_dir} to open: opening the store directly needs the store's OS "
            "user, in the deployment's state directory; anyone else asks the worker (without --direct)")
    try:  # a bad token or a user without a query role: refused and audited
        principal, target = authorise(settings, "sql.query", QUERY_ROLES, query=query, endpoint="cli")
    except AuthError as exc:
        raise WarehouseError(exc.reason) from exc
    try:
        client = open_client(settings.clickhouse, create_database=False)
    except Exception as exc:
        if "UNKNOWN_DATABASE" in str(exc):
            hint = " (no warehouse there yet: run `radstream db migrate`, or start the worker)"
        elif settings.embedded_clickhouse:
            hint = " (is another process, e.g. a worker without its web server, holding the embedded store?)"
        else:
            hint = ""
        raise WarehouseError(f"cannot open {settings.clickhouse.shown_url}: {exc}{hint}") from exc
    try:  # audited there, refused or failed too
        return audited_query(client, settings, principal, query, fmt, target=target, endpoint="cli")
    except AccessDenied as exc:
        raise WarehouseError(str(exc)) from None
    finally:  # a command is one query: free the embedded engine for the next user of this process
        client.close()
        if settings.embedded_clickhouse:
            from sinks.clickhouse.query import close_readonly_clients

            close_readonly_clients()
        flush_audit(target)


def from_worker(settings: Settings, sql: str, fmt: str) -> str | None:
    """The query's output from the worker, or None when the caller opens the store itself: with a
    ClickHouse server; with a store here (the deployment's state directory) that no worker answers for.
    Without a store here (an analyst's own directory) only the worker is asked, whichever store it
    serves (``ask_worker_only``)."""
    if not settings.embedded_clickhouse:
        return None
    if not has_local_store(settings):
        return ask_worker_only(settings, sql, fmt)
    try:
        return ask_worker(settings, sql, fmt) if worker_serves_our_store(settings) else None
    except WorkerUnavailable:
        return None


def query_text(settings: Settings, sql: str, fmt: str = "tsv") -> str:
    """The query's output in ``fmt`` (tsv/csv with a header row, json, jsonl)."""
    text = from_worker(settings, sql, fmt)
    return str(run_direct(settings, sql, fmt)) if text is None else text


def query_rows(settings: Settings, sql: str) -> list[list[str]]:
    """Rows of a query as strings, without the header row."""
    text = query_text(settings, sql, "csv")
    return list(csv.reader(io.StringIO(text)))[1:]


def quote(value: str) -> str:
    """A ClickHouse string literal's body."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
