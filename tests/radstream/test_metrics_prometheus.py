"""A real Prometheus (Debian's package, installed by ``radstream.stack.prometheus`` when missing, as Orthanc
is) scrapes a real ``radstream worker`` (real broker, embedded chDB) with a ``monitor`` token, loads the
shipped alerting rules, and the test asserts on PromQL results through Prometheus's HTTP API."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from radstream.config import Settings
from radstream.stack import prometheus
from streams import serde
from streams.auth import TokenStore
from streams.producer import make_producer
from tests.streams.helpers import free_port, report, worker_process

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
TEXT = "FINDINGS: 7 mm nodule in the right upper lobe. No pleural effusion."


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

    def wait(self, promql: str, ok: Callable[[list[dict[str, Any]]], bool], timeout: float = 90.0,
             ) -> list[dict[str, Any]]:
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


@pytest.fixture
def scraped_worker(topic_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Prom, str]]:
    """A worker (with the sink) and a Prometheus scraping it every second with a monitor token."""
    s = topic_settings.replace(state_dir=str(tmp_path), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
                               worker={"web_port": free_port()}, auth={"cache_s": 3600.0})
    store = TokenStore(s.auth.token_file)
    store.add_user("prometheus", ["monitor"])
    token = store.add_token("prometheus", note="scrape")
    token_file = tmp_path / "prometheus.token"
    token_file.write_text(token + "\n")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": "radstream-worker",
            "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
            "static_configs": [{"targets": [f"127.0.0.1:{s.worker.web_port}"]}],
        }],
    }))
    with worker_process(s, tmp_path / "worker.log"):
        proc = prometheus.start(config, tmp_path / "tsdb", port, tmp_path / "prometheus.log")
        try:
            yield s, Prom(port), token
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_prometheus_scrapes_the_worker_and_the_alerts_evaluate(scraped_worker: tuple[Settings, Prom, str],
                                                               ) -> None:
    s, prom, token = scraped_worker
    prom.wait('up{job="radstream-worker"} == 1', bool, timeout=180)  # the worker is up and the token works

    p = make_producer(s.kafka)
    for i in range(60):
        p.produce(s.topics.reports, key=f"default|M{i}".encode(),
                  value=serde.encode("report_finalized", report(f"M{i}", TEXT)))
    p.produce(s.topics.reports, key=b"default|BAD", value=b"this is not avro")
    assert p.flush(30) == 0

    # events in, per stage: the NLP agent (Faust) and the sink (the consumer loop)
    for stage in ("nlp-agent", "clickhouse-sink"):
        rate = prom.wait(f'sum(rate(radstream_records_consumed_total{{stage="{stage}"}}[30s])) > 0', bool)
        assert values(rate)[0] > 0
    out = prom.wait(f'sum(radstream_records_produced_total{{stage="nlp-agent",topic="{s.topics.findings}"}})',
                    lambda r: bool(r) and values(r)[0] >= 60)
    assert values(out)[0] >= 60

    # the bad message: dead letters by stage and reason (the NLP agent's and the sink's, which stores the
    # reports topic too)
    dead = prom.wait("sum by (stage, reason) (radstream_dead_letters_total)",
                     lambda r: {x["metric"]["stage"] for x in r} >= {"nlp-agent", "clickhouse-sink"})
    assert all(x["metric"]["reason"] for x in dead)
    assert sum(values(dead)) >= 2

    # the sink's lag, per partition of every topic it reads, back to 0 once everything is stored
    group = f"{s.kafka.consumer_group}.clickhouse-sink"
    lag = prom.wait(f'radstream_consumer_lag_messages{{group="{group}",topic="{s.topics.reports}"}}',
                    lambda r: len(r) == s.kafka.partitions and max(values(r)) == 0)
    assert sorted(x["metric"]["partition"] for x in lag) == [str(n) for n in range(s.kafka.partitions)]
    prom.wait(f'max(radstream_consumer_lag_messages{{group="{group}"}}) == 0', bool)
    assert len(prom.query(f'radstream_consumer_lag_messages{{group="{group}"}}')) >= 3 * s.kafka.partitions

    # latency histograms and the sink's rows
    nlp = prom.wait("sum(radstream_nlp_latency_seconds_count)", lambda r: bool(r) and values(r)[0] >= 60)
    assert values(nlp)[0] >= 60
    p95 = prom.wait("histogram_quantile(0.95, sum by (le) (rate(radstream_produced_to_queryable_seconds_bucket"
                    '{contract="report_findings"}[10m])))', lambda r: bool(r) and math.isfinite(values(r)[0]))
    assert 0 < values(p95)[0] < 60
    rows = prom.wait('sum(radstream_sink_rows_total{table="report_nlp"})', lambda r: bool(r) and values(r)[0] >= 60)
    assert values(rows)[0] >= 60
    prom.wait('sum(radstream_loop_flush_duration_seconds_count{stage="clickhouse-sink"}) > 0', bool)

    # authentication failures: a scrape without a token is refused and counted
    url = f"http://127.0.0.1:{s.worker.web_port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/metrics", timeout=10)
    assert refused.value.code == 401
    prom.wait('radstream_auth_failures_total{service="sql-page",status="401"} >= 1', bool)

    # readiness with the same token: Kafka metadata and the ClickHouse ping answer
    req = urllib.request.Request(f"{url}/ready", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        assert json.load(resp) == {"ready": True, "checks": {"kafka": "ok", "clickhouse": "ok"}}

    # the shipped rules load and evaluate: the dead letters fire their alert
    groups = prom.get("/api/v1/rules")["groups"]
    assert [g["file"] for g in groups] == [str(RULES)]
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    alerts = prom.wait('ALERTS{alertname="RadstreamDeadLetters",alertstate="firing"}', bool)
    assert {a["metric"]["stage"] for a in alerts} >= {"nlp-agent", "clickhouse-sink"}
