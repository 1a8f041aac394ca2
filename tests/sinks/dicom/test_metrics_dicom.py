"""Retrieval metrics, scraped by a real Prometheus: the DICOM worker and the storage SCP as real processes
(real broker, Debian's Orthanc as the PACS); a study moved and a request that fails, then PromQL on the
status events by state, images and bytes stored, readiness (Kafka and a PACS C-ECHO) and the alert."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from radstream.config import Settings
from tests.prometheus_server import monitor_token, running_prometheus, values
from tests.streams.helpers import free_port, radstream_process

from .helpers import final_of, request, statuses, stored_sops


def test_retrieval_metrics_scraped(dicom_settings: Settings, tmp_path: Path) -> None:
    s = dicom_settings.replace(auth={"cache_s": 3600.0},
                               metrics={"scp_port": free_port(), "dicom_worker_port": free_port()})
    token = monitor_token(s)
    targets = {"radstream-scp": f"127.0.0.1:{s.metrics.scp_port}",
               "radstream-dicom-worker": f"127.0.0.1:{s.metrics.dicom_worker_port}"}
    with radstream_process(s, tmp_path / "scp.log", "dicom", "scp", "--processes", "1", stop_s=60), \
            radstream_process(s, tmp_path / "worker.log", "dicom", "worker", stop_s=60), \
            running_prometheus(tmp_path, token, targets) as prom:
        prom.wait('sum(up{job=~"radstream-.*"}) == 2', timeout=120)
        ok, bad = request(s, "A1"), request(s, "NO-SUCH-ACCESSION")
        events = statuses(s, {ok, bad}, timeout=120)
        assert final_of(events, ok)["state"] == "completed" and final_of(events, bad)["state"] == "failed"
        assert len(stored_sops(s.research_store_dir)) == 3

        prom.wait('radstream_retrieval_status_total{state="completed"} == 1')
        prom.wait('radstream_retrieval_status_total{state="failed"} == 1')
        prom.wait('radstream_retrieval_images_total{outcome="completed"} == 3')
        prom.wait('radstream_scp_instances_total{job="radstream-scp",outcome="stored"} == 3')
        assert values(prom.query('radstream_scp_instances_total{outcome="quarantined"}')) == [0.0]
        stored = prom.wait("increase(radstream_scp_stored_bytes_total[5m]) > 0")
        assert values(stored)[0] > 3 * 16 * 16  # three 16x16 images and their headers
        prom.wait('ALERTS{alertname="RadstreamRetrievalsFailing",alertstate="firing"}')
        held = prom.wait('radstream_retrieval_requests{job="radstream-dicom-worker"}',
                         lambda r: len(r) == 2 and values(r) == [0.0, 0.0])  # both final: none held
        assert {x["metric"]["state"] for x in held} == {"queued", "active"}

        req = urllib.request.Request(f"http://127.0.0.1:{s.metrics.dicom_worker_port}/ready",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.load(resp) == {"ready": True, "checks": {"kafka": "ok", "pacs": "ok"}}
