"""``radstream db sink`` without its SQL page (as on a ClickHouse server) serves ``/metrics``, ``/health``
and ``/ready`` on ``metrics.sink_port``: a real process, a real broker, embedded chDB."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from radstream.config import Settings
from streams import serde
from streams.producer import make_producer
from tests.prometheus_server import monitor_token
from tests.streams.helpers import free_port, radstream_process, report


def fetch(url: str, token: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except (urllib.error.URLError, ConnectionError) as exc:
        return getattr(exc, "code", 0), ""


def test_sink_without_sql_page_serves_metrics(topic_settings: Settings, tmp_path: Path) -> None:
    s = topic_settings.replace(state_dir=str(tmp_path), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
                               metrics={"sink_port": free_port()})
    token = monitor_token(s)
    url = f"http://127.0.0.1:{s.metrics.sink_port}"
    with radstream_process(s, tmp_path / "sink.log", "db", "sink", "--no-web"):
        p = make_producer(s.kafka)
        value = serde.encode("report_finalized", report("S1", "x"))
        p.produce(s.topics.reports, key=b"default|S1", value=value)
        assert p.flush(30) == 0
        line = 'radstream_sink_rows_total{table="report_text_original"} 1.0'
        deadline = time.monotonic() + 90
        body = ""
        while time.monotonic() < deadline and line not in body:
            body = fetch(url + "/metrics", token)[1]
            time.sleep(0.5)
        assert line in body, body[-3000:]
        labels = f'stage="clickhouse-sink",topic="{s.topics.reports}"'
        consumed = f"radstream_records_consumed_total{{{labels}}} 1.0"
        assert consumed in body
        status, ready = fetch(url + "/ready", token)
        assert status == 200
        assert json.loads(ready) == {"ready": True, "checks": {"kafka": "ok", "clickhouse": "ok"}}
        status, health = fetch(url + "/health", token)
        assert status == 200 and json.loads(health)["sink"] == "ok"
        assert fetch(url + "/metrics", "rst_bad_token")[0] == 401
