"""Debian's Prometheus for the tests of ``/metrics`` (tests/radstream/test_metrics_prometheus.py) and for
a developer who wants to look at a local run (docs/monitoring.md). Installed with apt when missing, as
``orthanc.py`` does for Orthanc; Debian's packaged service is left stopped: we run our own instance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CANDIDATES = ("/usr/bin/prometheus", "/usr/local/bin/prometheus")


def install_packages() -> None:
    """``apt-get install -y prometheus`` (``apt-get update`` first when the package is unknown)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    subprocess.run(["systemctl", "disable", "--now", "prometheus"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def binary(name: str = "prometheus") -> str:
    """The path of ``prometheus`` (or ``promtool``, from the same package), installing it if needed."""
    for attempt in range(2):
        for cand in (*(c.replace("prometheus", name) for c in CANDIDATES), shutil.which(name)):
            if cand and os.access(cand, os.X_OK):
                return cand
        if attempt == 0:
            install_packages()
    raise RuntimeError(f"{name} is not installed and apt-get could not install it")


def start(config: Path, data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """A Prometheus server on 127.0.0.1:``port`` with ``config``; the caller stops it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [binary(), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
