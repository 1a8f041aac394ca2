"""``/metrics``, ``/health`` and ``/ready`` (``streams.ops``): a token is needed (refusals counted), the
monitor role is enough, readiness follows Kafka's reachability (a real broker, and a port nobody serves)."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from radstream.config import Settings
from streams.ops import Ops, OpsServer, kafka_check
from tests.streams.helpers import free_port, ingest_gate


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def refusals(service: str) -> float:
    labels = {"service": service, "status": "401"}
    return REGISTRY.get_sample_value("radstream_auth_failures_total", labels) or 0


def test_pages_need_a_token_and_readiness_follows_kafka(kafka_settings: Settings, tmp_path: Path) -> None:
    gate, auth = ingest_gate(tmp_path, role="monitor")
    gate.service = "ops-test"
    nobody = dataclasses.replace(kafka_settings.kafka, bootstrap=f"127.0.0.1:{free_port()}")
    ops = Ops(lambda: {"role": "test"}, {"kafka": kafka_check(kafka_settings.kafka)})
    server = OpsServer(ops, "127.0.0.1", 0, gate=gate).start()
    unready = OpsServer(Ops(checks={"kafka": kafka_check(nobody, timeout_s=1.0)}), "127.0.0.1", 0,
                        gate=gate).start()
    try:
        before = refusals("ops-test")
        for path in ("/metrics", "/health", "/ready"):
            status, _ = get(server.url + path)
            assert status == 401
        assert refusals("ops-test") == before + 3
        assert get(server.url + "/metrics", {"Authorization": "Bearer rst_nope_nope"})[0] == 401

        status, body = get(server.url + "/metrics", auth)
        assert status == 200 and b"# TYPE radstream_auth_failures_total counter" in body
        line = f'radstream_auth_failures_total{{service="ops-test",status="401"}} {before + 4}'
        assert line.encode() in body
        status, body = get(server.url + "/health", auth)
        assert status == 200 and json.loads(body)["role"] == "test"
        status, body = get(server.url + "/ready", auth)
        assert (status, json.loads(body)) == (200, {"ready": True, "checks": {"kafka": "ok"}})
        assert get(server.url + "/sql", auth)[0] == 404

        status, body = get(unready.url + "/ready", auth)
        assert status == 503
        answer = json.loads(body)
        assert answer["ready"] is False and answer["checks"]["kafka"].startswith("error: KafkaException")
        assert get(unready.url + "/health", auth)[0] == 200  # alive, though not ready
    finally:
        server.stop()
        unready.stop()


@pytest.mark.parametrize("role", ["analyst", "ingest"])
def test_any_role_may_scrape(tmp_path: Path, role: str) -> None:
    gate, auth = ingest_gate(tmp_path, role=role)
    server = OpsServer(Ops(), "127.0.0.1", 0, gate=gate).start()
    try:
        assert get(server.url + "/metrics", auth)[0] == 200
    finally:
        server.stop()
