"""The read-only ``/sql`` and ``/health`` pages of the worker and of ``radstream db sink``, with
``/metrics`` and ``/ready`` (``streams.ops``; docs/monitoring.md). With
embedded chDB only the process that owns the store can open it, so this is how analysts query while
it runs (``radstream sql`` asks ``worker.web_host:web_port`` first). A worker without the sink serves
them too: ``/sql`` then says so (503) and ``/health`` reports the sink "off".

Every request needs a token (``streams.auth``; 401 without one or with a bad one, audited as a login
failure). ``/sql`` needs the role analyst, steward or admin (403 otherwise), and the query must pass
the role's table allowlist (``sinks.clickhouse.access``; a refusal answers 403 with the reason).
``/health`` needs any valid token: it returns no data (the embedded store's path only to admins,
others get a digest of it), but it is not a liveness probe for strangers (a probe sends a token too,
or checks the TCP port). Every query, allowed or refused, is audited
(``streams.audit``: who, query text, tables read, rows, duration). HTTPS when a TLS context is given.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from sinks.clickhouse.access import ROLES_DIR, AccessDenied, Checked, error_code, policy_for
from sinks.clickhouse.service import SinkService
from streams import audit
from streams.auth import AuthError, Gate, Principal
from streams.ops import BoundedHTTPServer, Check, Ops

STARTING_HEADER = "X-Radstream-Sink"  # value "starting": the store is not open yet, do not open it
QUERY_ROLES = ("analyst", "steward")  # admin holds every role
MAX_QUERY_BYTES = 1 << 20


def body_length(header: str | None) -> int | None:
    """The ``Content-Length`` of a request as a byte count, or None when it is missing, not a plain
    decimal number, or negative (``int`` takes "-1", " 7 " and "1_000")."""
    if header is None or not header.isascii() or not header.isdigit():
        return None
    return int(header)


class SqlServer:
    def __init__(self, service: SinkService | None, host: str, port: int, *, gate: Gate,
                 tls: ssl.SSLContext | None = None, roles_dir: str | Path = ROLES_DIR,
                 checks: Mapping[str, Check] | None = None) -> None:
        """``checks``: the readiness probes of ``/ready`` (``streams.ops``); the store's ping is added
        when the sink runs here."""
        self.service = service
        probes = dict(checks or {})
        if service is not None:
            probes.setdefault("clickhouse", service.ping)
        self.ops = Ops(checks=probes)
        self.gate = gate
        self.roles_dir = Path(roles_dir)
        self.httpd = BoundedHTTPServer((host, port), self._handler())  # a thread per connection, capped
        if tls is not None:
            # the handshake happens in the request's thread, not in the accepting one
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="sql-web", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service, gate, roles_dir, ops = self.service, self.gate, self.roles_dir, self.ops

        class Handler(BaseHTTPRequestHandler):
            timeout = 60  # a client that sends nothing does not hold a thread for ever

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
                pass  # queries are recorded by the audit trail, not access-logged to stderr

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None,
                      content_type: str = "text/plain; charset=utf-8") -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _principal(self, *roles: str) -> Principal | None:
                """The caller (holding one of ``roles`` when given), or None after answering 401/403."""
                path = urllib.parse.urlparse(self.path).path
                client = self.client_address[0]
                try:
                    principal = gate.check(self.headers.get("Authorization"), self.headers.get("X-API-Key"),
                                           client=client, endpoint=path)
                except AuthError as exc:
                    self._send(exc.status, exc.reason + "\n",
                               {"WWW-Authenticate": 'Bearer realm="radstream"'})
                    return None
                if roles:
                    try:
                        principal.require(*roles)
                    except AuthError as exc:
                        gate.refused(principal, exc, client=client, endpoint=path)
                        self._send(exc.status, exc.reason + "\n")
                        return None
                return principal

            def _answer(self, principal: Principal, sql: str) -> None:
                url = urllib.parse.urlparse(self.path)
                fmt = urllib.parse.parse_qs(url.query).get("format", ["tsv"])[0]
                if service is None:
                    self._send(503, "this worker runs without the ClickHouse sink\n")
                    return
                if service.sink is None:
                    admin = "admin" in principal.roles  # the store's path: an admin's only
                    self._send(503, f"the sink is still opening the store ({service.failure(admin)})\n",
                               {STARTING_HEADER: "starting"})
                    return
                started = time.monotonic()
                checked: list[Checked] = []
                detail: dict[str, Any] = {"endpoint": url.path, "client": self.client_address[0],
                                          "token_id": principal.token_id, "format": fmt}
                status, rows, out = 200, None, ""
                try:
                    roles = [r for r in principal.roles if r in (*QUERY_ROLES, "admin")]
                    policy = policy_for(roles, roles_dir)
                    result = service.query(sql, fmt, policy=policy, checked=checked,
                                           limited="admin" not in principal.roles)
                    out = result if isinstance(result, str) else str(result)
                    from sinks.clickhouse.query import count_rows

                    rows = count_rows(fmt, result)
                except AccessDenied as exc:
                    status, out = 403, f"{exc}\n"
                    detail["reason"] = exc.audit[:2000]
                except Exception as exc:  # noqa: BLE001 - the analyst gets the reason
                    # the check passed: the engine's message quotes only what this role may read; the
                    # audit keeps its code name, not values
                    status, out = 400, f"{type(exc).__name__}: {exc}\n"
                    detail["reason"] = f"the query failed in the engine ({error_code(exc)})"
                audit.record(gate.audit, principal.user, "sql.query", allowed=status == 200, query=sql,
                             tables=checked[0].tables if checked else (), rows=rows,
                             duration_ms=round((time.monotonic() - started) * 1000, 3), **detail)
                self._send(status, out)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if urllib.parse.urlparse(self.path).path != "/sql":
                    self._send(404, "not found\n")
                    return
                principal = self._principal(*QUERY_ROLES)  # before reading a stranger's body
                if principal is None:
                    self.close_connection = True
                    return
                length = body_length(self.headers.get("Content-Length"))
                if length is None or length > MAX_QUERY_BYTES:
                    # before reading: rfile.read(-1) would read until the client closes, past the limit
                    self.close_connection = True
                    if length is None:
                        self._send(411, "a POST needs a Content-Length of 0 or more bytes\n")
                    else:
                        self._send(413, f"a query of at most {MAX_QUERY_BYTES} bytes\n")
                    return
                self._answer(principal, self.rfile.read(length).decode("utf-8", errors="replace"))

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlparse(self.path)
                if url.path not in ("/sql", "/health", "/metrics", "/ready"):
                    self._send(404, "not found\n")
                    return
                principal = self._principal(*QUERY_ROLES) if url.path == "/sql" else self._principal()
                if principal is None:
                    return
                if url.path in ("/metrics", "/ready"):
                    status, data, ctype = ops.respond(url.path, principal)
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if url.path == "/sql":
                    self._answer(principal, urllib.parse.parse_qs(url.query).get("q", [""])[0])
                    return
                body: dict[str, Any] = {"sink": "off" if service is None
                                        else service.health(detail="admin" in principal.roles)}
                if service is not None and service.ch.embedded:
                    from sinks.clickhouse.query import store_id

                    # lets `radstream sql` tell its own store's worker; the path only to admins
                    body["store_id"] = store_id(service.ch.url)
                    if "admin" in principal.roles:
                        body["store"] = service.ch.url
                self._send(200, json.dumps(body) + "\n", content_type="application/json")

        return Handler
