"""The shipped monitoring files are valid: the alerting rules and the scrape config pass promtool (Debian's
``prometheus`` package, installed when missing: never skipped), the Grafana dashboard is JSON whose
panels all query Prometheus. (The test Prometheus of tests/radstream/test_metrics_prometheus.py loads the
same rules and runs every dashboard query.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from radstream.stack import prometheus

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def test_promtool_accepts_the_rules_and_the_scrape_config(tmp_path: Path) -> None:
    promtool = prometheus.binary("promtool")
    out = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text().count("- alert: ")
    assert rules >= 8 and f"SUCCESS: {rules} rules found" in out.stdout  # promtool read every rule
    # the config names the container paths of docker-compose: point them at local files to check it
    token = tmp_path / "token"
    token.write_text("rst_x_y\n")
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert config.count("/run/secrets/prometheus_token") == 5  # every job sends the token
    local = tmp_path / "prometheus.yml"
    local.write_text(config.replace("/run/secrets/prometheus_token", str(token))
                     .replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")))
    out = subprocess.run([promtool, "check", "config", str(local)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dashboard_queries_radstream_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana" / "radstream.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert dash["uid"] == "radstream" and len(dash["panels"]) >= 10
    assert all("radstream_" in e or e.startswith("up{") for e in exprs)
    for needed in ("radstream_consumer_lag_messages", "radstream_dead_letters_total",
                   "radstream_produced_to_queryable_seconds_bucket", "radstream_scp_stored_bytes_total",
                   "radstream_retrieval_status_total", "radstream_auth_failures_total"):
        assert any(needed in e for e in exprs), needed
