"""The read-only ``/sql`` and ``/health`` pages of the worker and of ``radstream db sink``. With
embedded chDB only the process that owns the store can open it, so this is how analysts query while
it runs (``radstream sql`` asks ``worker.web_host:web_port`` first). A worker without the sink serves
them too: ``/sql`` then says so (503) and ``/health`` reports the sink "off"."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sinks.clickhouse.service import SinkService

STARTING_HEADER = "X-Radstream-Sink"  # value "starting": the store is not open yet, do not open it


class SqlServer:
    def __init__(self, service: SinkService | None, host: str, port: int) -> None:
        self.service = service
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
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
        service = self.service

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
                pass  # analysts' queries are not access-logged to stderr

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

            def _answer(self, sql: str) -> None:
                url = urllib.parse.urlparse(self.path)
                fmt = urllib.parse.parse_qs(url.query).get("format", ["tsv"])[0]
                if service is None:
                    self._send(503, "this worker runs without the ClickHouse sink\n")
                    return
                if service.sink is None:
                    self._send(503, f"the sink is still opening the store ({service.error!r})\n",
                               {STARTING_HEADER: "starting"})
                    return
                try:
                    out = service.query(sql, fmt)
                except Exception as exc:  # noqa: BLE001 - the analyst gets the reason
                    self._send(400, f"{type(exc).__name__}: {exc}\n")
                    return
                self._send(200, out if isinstance(out, str) else str(out))

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                if urllib.parse.urlparse(self.path).path != "/sql":
                    self._send(404, "not found\n")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(self.rfile.read(length).decode("utf-8", errors="replace"))

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlparse(self.path)
                if url.path == "/sql":
                    self._answer(urllib.parse.parse_qs(url.query).get("q", [""])[0])
                elif url.path == "/health":
                    body = {"sink": "off" if service is None else service.health()}
                    self._send(200, json.dumps(body) + "\n", content_type="application/json")
                else:
                    self._send(404, "not found\n")

        return Handler
