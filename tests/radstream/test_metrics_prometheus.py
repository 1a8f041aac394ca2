"""A real Prometheus (Debian's package, installed by ``radstream.stack.prometheus`` when missing, as Orthanc
is) scrapes a real ``radstream worker`` (real broker, embedded chDB) with a ``monitor`` token, loads the
shipped alerting rules, and the test asserts on PromQL results through Prometheus's HTTP API."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from radstream.config import Settings
from streams import serde
from streams.ingest.mllp import send_messages
from streams.producer import make_producer
from tests.prometheus_server import ROOT, RULES, Prom, monitor_token, running_prometheus, values
from tests.streams.helpers import free_port, radstream_process, report, worker_process

SAMPLES = ROOT / "samples" / "hl7"
TEXT = "FINDINGS: 7 mm nodule in the right upper lobe. No pleural effusion."


@dataclass
class Scraped:
    settings: Settings
    prom: Prom
    token: str
    mllp_port: int
    fhir_port: int


@pytest.fixture
def scraped(topic_settings: Settings, tmp_path: Path) -> Iterator[Scraped]:
    """A worker (with the sink), an HL7 listener and a FHIR endpoint as real processes, and a Prometheus
    scraping the three every second with a monitor token."""
    s = topic_settings.replace(state_dir=str(tmp_path), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
                               worker={"web_port": free_port()}, auth={"cache_s": 3600.0},
                               metrics={"hl7_port": free_port()})
    token = monitor_token(s)
    mllp, fhir = free_port(), free_port()
    targets = {"radstream-worker": f"127.0.0.1:{s.worker.web_port}",
               "radstream-hl7": f"127.0.0.1:{s.metrics.hl7_port}", "radstream-fhir": f"127.0.0.1:{fhir}"}
    with worker_process(s, tmp_path / "worker.log"), \
            radstream_process(s, tmp_path / "hl7.log", "ingest", "hl7-listener", "--port", str(mllp)), \
            radstream_process(s, tmp_path / "fhir.log", "ingest", "fhir-server", "--port", str(fhir)), \
            running_prometheus(tmp_path, token, targets) as prom:
        yield Scraped(s, prom, token, mllp, fhir)


def test_prometheus_scrapes_the_processes_and_the_alerts_evaluate(scraped: Scraped) -> None:
    s, prom, token = scraped.settings, scraped.prom, scraped.token
    # every process is up and takes the monitor token
    prom.wait('sum(up{job=~"radstream-.*"}) == 3', timeout=180)
    # rate() counts from a sample before the first record: wait until both stages' series were scraped
    # (the sink's loop is made once its store is open, which may be after the first scrape)
    prom.wait('count by (stage) (radstream_records_consumed_total{stage=~"nlp-agent|clickhouse-sink"})',
              lambda r: len(r) == 2, timeout=120)

    # HL7 v2 in: one report accepted, one message dead-lettered by the listener
    acks = asyncio.run(send_messages("127.0.0.1", scraped.mllp_port, [
        (SAMPLES / "vendor_c_2_final.hl7").read_bytes(), (SAMPLES / "bad_missing_obr.hl7").read_bytes()]))
    assert [a.split(b"|")[1][:2] for a in (ack.split(b"\r")[1] for ack in acks)] == [b"AA", b"AE"]
    prom.wait('radstream_ingest_messages_total{job="radstream-hl7",stage="hl7-listener"} == 2')
    prom.wait('radstream_records_produced_total{job="radstream-hl7",stage="hl7-listener"} >= 1')
    prom.wait('radstream_dead_letters_total{job="radstream-hl7",stage="hl7-listener"} == 1')

    p = make_producer(s.kafka)
    for i in range(60):
        p.produce(s.topics.reports, key=f"default|M{i}".encode(),
                  value=serde.encode("report_finalized", report(f"M{i}", TEXT)))
    p.produce(s.topics.reports, key=b"default|BAD", value=b"this is not avro")
    assert p.flush(30) == 0

    # events in, per stage: the NLP agent and the sink (both on the consumer loop)
    for stage in ("nlp-agent", "clickhouse-sink"):
        rate = prom.wait(f'sum(rate(radstream_records_consumed_total{{stage="{stage}"}}[30s])) > 0', bool)
        assert values(rate)[0] > 0
    out = prom.wait(f'sum(radstream_records_produced_total{{stage="nlp-agent",topic="{s.topics.findings}"}})',
                    lambda r: bool(r) and values(r)[0] >= 61)
    assert values(out)[0] >= 61  # 60 reports and the HL7 one

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
    # ... and the NLP agent's group
    nlp_lag = prom.wait(f'radstream_consumer_lag_messages{{group="{s.kafka.consumer_group}-worker",'
                        f'topic="{s.topics.reports}"}}',
                        lambda r: len(r) == s.kafka.partitions and max(values(r)) == 0)
    assert sorted(x["metric"]["partition"] for x in nlp_lag) == [str(n) for n in range(s.kafka.partitions)]
    assert len(prom.query(f'radstream_consumer_lag_messages{{group="{group}"}}')) >= 3 * s.kafka.partitions

    # latency histograms and the sink's rows
    nlp = prom.wait("sum(radstream_nlp_latency_seconds_count)", lambda r: bool(r) and values(r)[0] >= 61)
    assert values(nlp)[0] >= 61
    p95 = prom.wait("histogram_quantile(0.95, sum by (le) (rate("
                    'radstream_produced_to_queryable_seconds_bucket{contract="report_findings"}[10m])))',
                    lambda r: bool(r) and math.isfinite(values(r)[0]))
    assert 0 < values(p95)[0] < 60
    rows = prom.wait('sum(radstream_sink_rows_total{table="report_nlp"})',
                     lambda r: bool(r) and values(r)[0] >= 61)
    assert values(rows)[0] >= 61
    prom.wait('sum(radstream_loop_flush_duration_seconds_count{stage="clickhouse-sink"}) > 0', bool)

    # authentication failures: a scrape without a token is refused and counted
    url = f"http://127.0.0.1:{s.worker.web_port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/metrics", timeout=10)
    assert refused.value.code == 401
    prom.wait('radstream_auth_failures_total{service="sql-page",status="401"} >= 1', bool)
    # ... and on the FHIR endpoint: a monitor may read its metrics but not post a report (403)
    fhir = f"http://127.0.0.1:{scraped.fhir_port}"
    post = urllib.request.Request(f"{fhir}/fhir/DiagnosticReport", data=b"{}", method="POST",
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/fhir+json"})
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        urllib.request.urlopen(post, timeout=30)
    assert forbidden.value.code == 403
    prom.wait('radstream_auth_failures_total{job="radstream-fhir",service="fhir",status="403"} == 1')

    # readiness with the same token: Kafka metadata and the ClickHouse ping answer
    req = urllib.request.Request(f"{url}/ready", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
        assert json.load(resp) == {"ready": True, "checks": {"kafka": "ok", "clickhouse": "ok"}}
    for port in (s.metrics.hl7_port, scraped.fhir_port):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/ready",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.load(resp) == {"ready": True, "checks": {"kafka": "ok"}}

    # the shipped rules load and evaluate: the dead letters fire their alert
    groups = prom.get("/api/v1/rules")["groups"]
    assert [g["file"] for g in groups] == [str(RULES)]
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    alerts = prom.wait('ALERTS{alertname="RadstreamDeadLetters",alertstate="firing"}', bool)
    # every query of the shipped Grafana dashboard runs on this Prometheus (a bad one answers 400)
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "radstream.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            prom.query(target["expr"].replace("$__rate_interval", "1m"))
    assert {a["metric"]["stage"] for a in alerts} >= {"nlp-agent", "clickhouse-sink", "hl7-listener"}
