"""How the web app reads the warehouse: through the same read-only, role-checked layer as
``radstream sql``, as the signed-in user.

* Embedded store (chDB): the worker owns it, so every query goes to the worker's ``/sql`` page with
  the user's own token, only to a worker that is ours (``radstream.warehouse.open_ours``). The worker
  checks the user's roles against the table allowlists (``sinks.clickhouse.access``, ClickHouse's
  parser) and audits the query (``sql.query``) under the user's name.
* ClickHouse server: ``run_readonly`` with the user's policy (the same check), audited here
  (``audited_query``): allowed, refused by the check, or failed in the engine.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from radstream.config import Settings
from radstream.warehouse import audited_query, open_ours, peer_trust, pinned
from streams.auth import Principal
from streams.peer import PeerRefused


class Refused(Exception):
    """The role may not read what the query reads (403 from the query layer)."""


class Unavailable(Exception):
    """The warehouse did not answer (worker down, store still opening, bad query)."""


class Warehouse:
    def __init__(self, settings: Settings, audit_target: Any = None, timeout: float = 60.0) -> None:
        self.settings = settings
        self.audit = audit_target
        self.timeout = timeout
        self._client: Any = None

    def rows(self, principal: Principal, token: str, sql: str) -> list[dict[str, Any]]:
        """The rows of one query as dicts (JSONEachRow: 64-bit integers come as strings)."""
        embedded = self.settings.embedded_clickhouse
        text = self._worker(token, sql) if embedded else self._direct(principal, sql)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _worker(self, token: str, sql: str) -> str:
        s = self.settings
        scheme = "https" if s.auth.tls_cert else "http"
        url = f"{scheme}://{s.worker.web_host}:{s.worker.web_port}/sql?" + urllib.parse.urlencode(
            {"format": "jsonl"})
        req = urllib.request.Request(url, data=sql.encode(), method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "text/plain; charset=utf-8"})
        try:  # only to our own worker (streams.peer): the token and the query, and the answer shown
            with open_ours(s, req, self.timeout) as resp:
                body: bytes = resp.read()
                return body.decode("utf-8", errors="replace")
        except PeerRefused as exc:
            raise Unavailable(str(exc)) from None
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode("utf-8", errors="replace").strip()
            if exc.code == 403:
                raise Refused(reason) from None
            raise Unavailable(f"the warehouse answered HTTP {exc.code}: {reason}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise Unavailable(f"the worker's SQL page does not answer ({exc}); is `radstream worker` "
                              "running?") from None

    def _direct(self, principal: Principal, sql: str) -> str:
        from sinks.clickhouse.access import AccessDenied
        from sinks.clickhouse.client import open_client

        if self._client is None:
            self._client = open_client(self.settings.clickhouse, create_database=False)
        try:
            return str(audited_query(self._client, self.settings, principal, sql, "jsonl", target=self.audit,
                                     endpoint="web"))
        except AccessDenied as exc:
            raise Refused(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - shown to the user
            raise Unavailable(f"{type(exc).__name__}: {exc}") from None

    def reachable(self) -> object:
        """Readiness: the warehouse answers (the worker's port that serves the embedded store, or a
        ClickHouse server's ping); raises otherwise. No query: nothing to audit."""
        if self.settings.embedded_clickhouse:
            from streams.peer import connect

            w = self.settings.worker  # not ready while another user's process holds the worker's port
            connect(w.web_host, w.web_port, peer_trust(self.settings), timeout=3, tls=pinned(self.settings))
            return "worker"
        from sinks.clickhouse.client import open_client

        if self._client is None:
            self._client = open_client(self.settings.clickhouse, create_database=False)
        if not self._client.ping():
            raise ConnectionError(f"{self.settings.clickhouse.shown_url} does not answer")
        return "server"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
