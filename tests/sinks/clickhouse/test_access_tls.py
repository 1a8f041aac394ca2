"""The SQL page over HTTPS with a self-signed certificate: a token is needed for /health too, and
`radstream sql`'s client (radstream.warehouse) trusts the configured certificate."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from radstream.config import Settings
from radstream.warehouse import WorkerUnavailable, worker_serves_our_store
from sinks.clickhouse.web import SqlServer
from streams.auth import Gate, TokenStore, local_token, server_ssl_context
from tests.streams.ingest.test_fhir_auth import self_signed
from tests.streams.test_auth import Recorder


def test_sql_page_over_https_needs_a_token(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    settings = Settings(state_dir=str(tmp_path)).replace(auth={"tls_cert": cert, "tls_key": key})
    store = TokenStore(settings.auth.token_file)
    token = local_token(store)
    audit = Recorder()
    server = SqlServer(None, "127.0.0.1", 0, gate=Gate(store, audit), tls=server_ssl_context(cert, key))
    server.start()
    try:
        ctx = ssl.create_default_context(cafile=cert)
        url = f"https://127.0.0.1:{server.port}/health"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                    context=ctx, timeout=10) as resp:
            assert json.loads(resp.read()) == {"sink": "off"}
        try:
            urllib.request.urlopen(url, context=ctx, timeout=10)
            raise AssertionError("no token, yet answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10)
            raise AssertionError("plain HTTP answered")
        except (urllib.error.URLError, ConnectionError):
            pass
        # the CLI's client: https with the configured certificate, the local token; no store served here
        settings = settings.replace(worker={"web_port": server.port})
        assert worker_serves_our_store(settings) is False
        try:
            worker_serves_our_store(settings.replace(auth={"tls_cert": ""}))  # plain http to a TLS port
            raise AssertionError("plain HTTP answered")
        except WorkerUnavailable:
            pass
    finally:
        server.stop()
    assert [e["action"] for e in audit.events] == ["login.failure"]
