"""docker-compose.yml stays valid for users (`docker compose config` needs no engine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> list[str] | None:
    if shutil.which("docker") is None:
        return None
    ok = subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    return ["docker", "compose"] if ok else None


def test_compose_config_is_valid() -> None:
    cmd = _compose()
    if cmd is None:
        pytest.skip("no `docker compose` plugin here "
                    "(`make compose-plugin`, which `make test` runs, builds it from the Go module proxy)")
    out = subprocess.run([*cmd, "config", "--services"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    services = set(out.stdout.split())
    ours = {"worker", "dicom-worker", "research-scp", "hl7-listener", "fhir-server"}
    assert {"kafka", "clickhouse", "orthanc", *ours} <= services


def test_every_published_port_is_bound_to_loopback_and_tokens_are_on_the_shared_volume() -> None:
    import json

    cmd = _compose()
    if cmd is None:
        pytest.skip("no `docker compose` plugin here (`make compose-plugin`, which `make test` runs)")
    out = subprocess.run([*cmd, "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    services = json.loads(out.stdout)["services"]
    published = [(name, p) for name, svc in services.items() for p in svc.get("ports", [])]
    assert published and all(p.get("host_ip") == "127.0.0.1" for _, p in published), published
    assert services["worker"]["environment"]["RADSTREAM_AUTH_TOKEN_FILE"].startswith("/data/")
