"""``radstream web`` caps its connections (``web.limit_concurrency``): with that many slow connections
open, a new request is answered 503 instead of being taken on, and served again once they are gone.
The real command (uvicorn) in a process of its own, real sockets.

test_a_flood_of_connections_gets_503 failed on main a79c22c (no limit: the request was served, 200).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from radstream.config import Settings, settings_env
from tests.streams.helpers import free_port, radstream_process

ROOT = Path(__file__).resolve().parents[3]
LIMIT = 3


def settings_for(tmp_path: Path, **web: int) -> Settings:
    # no broker: the pages asked here (the sign-in page) need none; the audit producer just retries
    return Settings(state_dir=str(tmp_path / "state")).replace(kafka={"bootstrap": "127.0.0.1:1"}, web=web)


def web_process(settings: Settings, port: int, log: Path) -> Any:
    """``radstream web`` as a real process (``radstream_process``)."""
    return radstream_process(settings, log, "web", "--port", str(port), stop_s=20)


def status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "radstream web exited"
        with contextlib.suppress(OSError):
            if status(port) == 200:
                return
        time.sleep(0.2)
    raise AssertionError("radstream web did not serve in time")


def test_a_flood_of_connections_gets_503(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "web.log"
    with web_process(settings_for(tmp_path, limit_concurrency=LIMIT), port, log) as proc:
        wait_serving(port, proc)
        slow = []
        for _ in range(LIMIT):  # slow clients: a request whose headers never end
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        time.sleep(0.5)
        flooded = [status(port) for _ in range(3)]
        for s in slow:
            s.close()
        time.sleep(0.5)
        after = status(port)
        assert proc.poll() is None
    assert flooded == [503, 503, 503]
    assert after == 200  # the process is fine and serves again
    assert "Exceeded concurrency limit" in log.read_text()


def test_a_bad_limit_stops_the_web_app_at_start(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, limit_concurrency=0, timeout_keep_alive=0)
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "radstream", "web", "--port", str(free_port())], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78, proc.stderr
    assert "web.limit_concurrency:" in proc.stderr and "web.timeout_keep_alive:" in proc.stderr
