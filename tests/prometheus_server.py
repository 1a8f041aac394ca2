"""A real Prometheus for the metrics tests (Debian's package: ``radstream.stack.prometheus`` installs it
when missing, as ``radstream.stack.orthanc`` does Orthanc; no skip): scraping given targets every second
with a ``monitor`` token, loading the shipped alerting rules; queried through its HTTP API."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from radstream.config import Settings
from radstream.stack import prometheus
from streams.auth import TokenStore

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=promql)["result"]
        return result

    def wait(self, promql: str, ok: Callable[[list[dict[str, Any]]], bool] = bool, timeout: float = 90.0,
             ) -> list[dict[str, Any]]:
        """The result of ``promql`` once ``ok(result)``; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                last = self.query(promql)
            except (urllib.error.URLError, ConnectionError):
                last = []
            if ok(last):
                return last
            time.sleep(1.0)
        raise AssertionError(f"{promql}: never as expected within {timeout} s; last result {last}")


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def monitor_token(settings: Settings) -> str:
    """A token of a new user with the ``monitor`` role in ``settings``' token store."""
    store = TokenStore(settings.auth.token_file)
    store.add_user("prometheus", ["monitor"])
    return store.add_token("prometheus", note="scrape")


@contextmanager
def running_prometheus(directory: Path, token: str, targets: Mapping[str, str]) -> Iterator[Prom]:
    """Prometheus scraping ``targets`` (job name -> host:port) every second, with the shipped rules."""
    from tests.streams.helpers import free_port

    token_file = directory / "prometheus.token"
    token_file.write_text(token + "\n")
    config = directory / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": job,
            "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
            "static_configs": [{"targets": [target]}],
        } for job, target in targets.items()],
    }))
    port = free_port()
    proc = prometheus.start(config, directory / "tsdb", port, directory / "prometheus.log")
    try:
        yield Prom(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
