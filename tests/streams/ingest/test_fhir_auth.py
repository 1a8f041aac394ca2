"""The FHIR endpoint over HTTPS (a self-signed certificate made here with openssl): the ingest role
posts a report, an analyst gets 403, no token or a bad one 401 (audited); health needs a token too."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from radstream.config import Settings
from streams.auth import Gate, TokenStore, server_ssl_context
from streams.ingest.fhir_server import start_server
from tests.streams.test_auth import Recorder

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def self_signed(directory: Path) -> tuple[str, str]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return str(cert), str(key)


def test_fhir_endpoint_https_roles_and_401(topic_settings: Settings, tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    tokens = {}
    for user, role in (("ris", "ingest"), ("ana", "analyst")):
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)
    audit = Recorder()
    gate = Gate(store, audit, service="fhir")
    cert, key = self_signed(tmp_path)
    client_tls = ssl.create_default_context(cafile=cert)
    body = (SAMPLES / "fhir" / "diagnosticreport_final.json").read_bytes()
    fhir = {"Content-Type": "application/fhir+json"}

    async def go() -> dict[str, Any]:
        s = topic_settings
        runner, port = await start_server(s.kafka, s.topics, s.ingest, "127.0.0.1", 0, gate=gate,
                                          tls=server_ssl_context(cert, key))
        base = f"https://127.0.0.1:{port}"
        out: dict[str, Any] = {}
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as http:
                async def post(name: str, headers: dict[str, str]) -> None:
                    async with http.post(f"{base}/fhir/DiagnosticReport", data=body,
                                         headers={**fhir, **headers}) as r:
                        out[name] = (r.status, json.loads(await r.text()), r.headers.get("WWW-Authenticate"))

                await post("ingest", {"Authorization": f"Bearer {tokens['ingest']}"})
                await post("analyst", {"X-API-Key": tokens["analyst"]})
                await post("none", {})
                await post("bad", {"Authorization": "Bearer rst_123456789abc_nope"})
                async with http.get(f"{base}/health") as r:
                    out["health-none"] = r.status
                async with http.get(f"{base}/health", headers={"X-API-Key": tokens["analyst"]}) as r:
                    out["health"] = r.status
            async with aiohttp.ClientSession() as plain:  # no TLS: the server does not speak plain HTTP
                try:
                    async with plain.get(f"http://127.0.0.1:{port}/health") as r:
                        out["plain"] = r.status
                except aiohttp.ClientError as exc:
                    out["plain"] = type(exc).__name__
        finally:
            await runner.cleanup()
        return out

    out = asyncio.run(go())
    assert out["ingest"][0] == 201, out["ingest"]
    assert out["analyst"][0] == 403 and out["analyst"][1]["issue"][0]["code"] == "forbidden"
    for name in ("none", "bad"):
        status, outcome, challenge = out[name]
        assert status == 401 and outcome["issue"][0]["code"] == "login" and challenge.startswith("Bearer")
    assert (out["health-none"], out["health"]) == (401, 200)
    assert out["plain"] != 200
    failures = [e for e in audit.events if e["action"] == "login.failure"]
    assert len(failures) == 3 and all(json.loads(str(e["detail"]))["service"] == "fhir" for e in failures)
    assert [e["actor"] for e in audit.events if e["action"] == "http.request"] == ["ana"]


def test_tls_needs_both_cert_and_key(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    assert server_ssl_context("", "") is None
    with pytest.raises(ValueError, match="both"):
        server_ssl_context(cert, "")
