"""``radstream.monitoring.serve_ops``: the pages of a process without its own web page; a taken port is
reported and the process runs on without them."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from radstream.config import Settings
from radstream.monitoring import serve_ops
from tests.prometheus_server import monitor_token


def test_serves_and_survives_a_taken_port(kafka_settings: Settings, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    s = kafka_settings.replace(state_dir=str(tmp_path))
    token = monitor_token(s)
    server = serve_ops(s, "test-process", 0, health=lambda: {"what": "test"})
    assert server is not None
    try:
        req = urllib.request.Request(f"{server.url}/ready", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            assert serve_ops(s, "test-process", taken.getsockname()[1]) is None
    finally:
        server.stop()
    err = capsys.readouterr().err
    assert f"test-process: /metrics /health /ready on {server.url}" in err
    assert "test-process: NOT serving /metrics /health /ready" in err
