"""``/metrics``, ``/health`` and ``/ready`` of a long-running process (docs/monitoring.md).

* ``/metrics``: prometheus-client's default registry in the text exposition format;
* ``/health`` (liveness): 200 while the process serves requests, with a few facts as JSON;
* ``/ready``: 200 when every dependency answers (Kafka metadata, a ClickHouse ping, a PACS C-ECHO:
  whatever the process was given as checks), else 503 naming the failing one.

Like every radstream HTTP endpoint (docs/access.md) they need a valid token (any role; the ``monitor``
role grants nothing else): Prometheus sends one with its scrape config's ``authorization``. Refusals
are counted in ``radstream_auth_failures_total``.

``Ops`` answers those paths for a server that has its own routes (the SQL page, the FHIR endpoint);
``OpsServer`` is a small HTTP server with only them, for processes without one (the MLLP listener, the
DICOM worker, the storage SCP).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streams.auth import AuthError, Gate, Principal
from streams.config import KafkaConfig

Check = Callable[[], object]  # raises when its dependency cannot be reached
PATHS = ("/metrics", "/health", "/ready")
CHECK_TIMEOUT_S = 3.0
MAX_CONNECTIONS = 64  # per HTTP server: Prometheus, a few analysts, the web app's calls
BUSY_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
               b"Retry-After: 2\r\nContent-Length: 34\r\nConnection: close\r\n\r\n"
               b"too many connections: retry later\n")
log = logging.getLogger("radstream.ops")


def kafka_check(kafka: KafkaConfig, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """Kafka is reachable: a metadata request answered (one admin client, made at the first check)."""
    box: dict[str, Any] = {}

    def check() -> object:
        from streams.topics import admin_client

        if "admin" not in box:
            box["admin"] = admin_client(kafka)
        meta = box["admin"].list_topics(timeout=timeout_s)
        if not meta.brokers:
            raise RuntimeError("no broker in the metadata")
        return len(meta.brokers)

    return check


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once: past that a new connection is
    answered 503 at once (closed unanswered under TLS, whose handshake would run in the accepting
    thread) instead of getting a thread, so a flood of requests cannot exhaust the process's threads
    and memory (each waiting for a token check, say)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(address, handler)
        self.max_connections = max_connections
        self._connections = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            if not isinstance(request, ssl.SSLSocket):
                with contextlib.suppress(OSError):
                    request.sendall(BUSY_ANSWER)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


class Ops:
    """The answers to ``PATHS``: ``health`` gives the liveness facts, ``checks`` the readiness probes."""

    def __init__(self, health: Callable[[], Mapping[str, Any]] | None = None,
                 checks: Mapping[str, Check] | None = None) -> None:
        self.health = health or (lambda: {})
        self.checks = dict(checks or {})
        self.started = time.time()
        self._logged: dict[str, str] = {}  # check -> the exception class last logged

    def ready(self, detail: bool = False) -> tuple[bool, dict[str, str]]:
        """Every check's "ok" or "error: <exception class>"; with ``detail`` (an admin's request) the
        exception's message too. Any token may read /ready (Prometheus's monitor token sits in a scrape
        config): a message may name a store path or a host, so only its class goes to them, and the
        whole message to the log. Messages never carry credentials (``redact_url``)."""
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                check()
                results[name] = "ok"
                self._logged.pop(name, None)
            except Exception as exc:  # noqa: BLE001 - the probe reports whatever went wrong
                if self._logged.get(name) != type(exc).__name__:  # once per failure, not per scrape
                    self._logged[name] = type(exc).__name__
                    log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
                results[name] = (f"error: {type(exc).__name__}: {exc}" if detail
                                 else f"error: {type(exc).__name__}")[:500]
        return all(v == "ok" for v in results.values()), results

    def respond(self, path: str, principal: Principal | None = None) -> tuple[int, bytes, str]:
        """(status, body, content type) of one of ``PATHS``, for ``principal`` (an admin sees the failing
        checks' messages, anyone else their exception classes)."""
        if path == "/metrics":
            return 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
        if path == "/health":
            body = {"ok": True, "uptime_s": round(time.time() - self.started, 1), **self.health()}
            return 200, (json.dumps(body) + "\n").encode(), "application/json"
        if path == "/ready":
            ok, results = self.ready(detail=principal is not None and "admin" in principal.roles)
            return (200 if ok else 503), (json.dumps({"ready": ok, "checks": results}) + "\n").encode(), \
                "application/json"
        return 404, b"not found\n", "text/plain; charset=utf-8"


class OpsServer:
    """An HTTP(S) server with only ``PATHS`` (behind ``gate``), in a daemon thread."""

    def __init__(self, ops: Ops, host: str, port: int, *, gate: Gate,
                 tls: ssl.SSLContext | None = None, max_connections: int = MAX_CONNECTIONS) -> None:
        self.ops = ops
        self.httpd = BoundedHTTPServer((host, port), _handler(ops, gate), max_connections)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ops-web", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> OpsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(ops: Ops, gate: Gate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
            pass  # scrapes every few seconds: not worth a log line each

        def _send(self, status: int, body: bytes, content_type: str,
                  headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urllib.parse.urlparse(self.path).path
            if path not in PATHS:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
                return
            try:
                principal = gate.check(self.headers.get("Authorization"), self.headers.get("X-API-Key"),
                                       client=self.client_address[0], endpoint=path)
            except AuthError as exc:
                self._send(exc.status, (exc.reason + "\n").encode(), "text/plain; charset=utf-8",
                           {"WWW-Authenticate": 'Bearer realm="radstream"'})
                return
            self._send(*ops.respond(path, principal))

    return Handler
