"""`radstream stack up|status|down` as a user runs them: real Kafka + Orthanc in a temp state dir.

One up/down cycle: up, status (what runs where, checked against the processes and their ports),
a second up (reuses what runs), down (stops what up started, nothing else), and down/status
again after the state files point at processes the test started (a recycled pid).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _env(state_dir: Path) -> dict[str, str]:
    keep = {"RADSTREAM_CACHE", "RADSTREAM_KAFKA_VERSION"}  # where the Kafka jars are cached, which ones
    env = {k: v for k, v in os.environ.items()
           if (k in keep or not k.startswith("RADSTREAM_")) and k != "FORCE_COLOR"}
    env.update(RADSTREAM_STATE_DIR=str(state_dir), PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8",
               COLUMNS="300")  # rich wraps the status table at 80 columns when not on a terminal
    return env


def stack_run(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "radstream", "stack", *args], env=_env(state_dir), cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"radstream stack {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def stack(state_dir: Path, *args: str) -> str:
    return stack_run(state_dir, *args).stdout


def status_rows(state_dir: Path) -> dict[str, dict[str, str]]:
    """The `stack status` table as {component: {column: cell}}."""
    lines = [line for line in stack(state_dir, "status").splitlines() if line.startswith(("┃", "│"))]
    header, *body = ([cell.strip() for cell in line.strip("┃│").split("┃" if "┃" in line else "│")]
                     for line in lines)
    rows = {cells[0]: dict(zip(header, cells, strict=True)) for cells in body}
    assert set(rows) == {"kafka", "orthanc"}, rows
    return rows


def up_values(out: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def kafka_brokers(bootstrap: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=10)
    return [f"{b.host}:{b.port}" for b in md.brokers.values()]


@pytest.fixture
def decoys() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Processes the test starts whose command lines look like the components' (name only)."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    procs = {
        "kafka": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "kafka.Kafka"]),
        "orthanc": subprocess.Popen(["/usr/sbin/Orthanc", "600"], executable=sleep),
    }
    yield procs
    for proc in procs.values():
        proc.kill()
        proc.wait()


def test_stack_up_status_down(tmp_path: Path, decoys: dict[str, subprocess.Popen[bytes]]) -> None:
    from radstream.config import load_settings
    from sinks.dicom.net import echo

    state_dir = tmp_path / "state"
    try:
        first = stack_run(state_dir, "up")
        values = up_values(first.stdout)
        assert (state_dir / "stack.json").exists()
        # the broker has no accounts: the user is told where the stack starts
        assert "any local user can read every topic" in first.stderr, first.stderr

        # status: which process runs where, and it is that process that answers there
        rows = status_rows(state_dir)
        assert rows["kafka"]["running"] == rows["orthanc"]["running"] == "yes", rows
        kafka_pid, orthanc_pid = int(rows["kafka"]["pid"]), int(rows["orthanc"]["pid"])
        assert "kafka.Kafka" in cmdline(kafka_pid)
        assert str(state_dir / "kafka" / "server.properties") in cmdline(kafka_pid)
        orthanc_cmd = cmdline(orthanc_pid)
        assert orthanc_cmd[0].endswith("Orthanc")
        assert str(state_dir / "orthanc" / "orthanc.json") in orthanc_cmd
        bootstrap = values["kafka.bootstrap"]
        assert rows["kafka"]["address"] == bootstrap
        assert kafka_brokers(bootstrap) == [bootstrap]
        dicom_port, http_port = int(values["pacs.port"]), int(values["pacs.http_port"])
        assert rows["orthanc"]["address"] == f"127.0.0.1:{dicom_port} http:{http_port}"
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=5) as resp:  # noqa: S310
            assert json.loads(resp.read())["DicomPort"] == dicom_port
        # every command finds the stack through stack.json
        settings = load_settings(env={"RADSTREAM_STATE_DIR": str(state_dir)})
        assert (settings.kafka.bootstrap, settings.pacs.port, settings.pacs.http_port) == (
            bootstrap, dicom_port, http_port)
        assert echo("127.0.0.1", dicom_port, values["pacs.ae_title"], settings.pacs.calling_ae, timeout=5.0)

        # a second up reuses both
        again = up_values(stack(state_dir, "up"))
        assert again == values
        rows = status_rows(state_dir)
        assert (int(rows["kafka"]["pid"]), int(rows["orthanc"]["pid"])) == (kafka_pid, orthanc_pid)

        # ... also while Orthanc does not answer yet (e.g. a concurrent up): it waits, it does not
        # start a second Orthanc on the same storage and lose track of the first
        os.kill(orthanc_pid, signal.SIGSTOP)
        try:
            later = subprocess.Popen([sys.executable, "-m", "radstream", "stack", "up"], env=_env(state_dir),
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(3.0)  # more than one readiness probe (2 s HTTP timeout)
        finally:
            os.kill(orthanc_pid, signal.SIGCONT)
        out, _ = later.communicate(timeout=120)
        assert later.returncode == 0, out
        assert up_values(out) == values
        assert int(status_rows(state_dir)["orthanc"]["pid"]) == orthanc_pid

        # the informational pid files point at the test's processes: down still stops its own (by the
        # state it recorded and the command line) and leaves the test's processes alone
        (state_dir / "kafka" / "kafka.pid").write_text(f"{decoys['kafka'].pid}\n")
        (state_dir / "orthanc" / "orthanc.pid").write_text(f"{decoys['orthanc'].pid}\n")
        stack(state_dir, "down")
        assert not alive(kafka_pid) and not alive(orthanc_pid)
        assert not listening(int(bootstrap.rsplit(":", 1)[1]))
        assert not listening(dicom_port) and not listening(http_port)
        assert not (state_dir / "stack.json").exists()
        assert all(proc.poll() is None for proc in decoys.values())

        # a pid recorded by up now belongs to a process up did not start: not stopped, not reported
        kafka_json = state_dir / "kafka" / "kafka.json"
        kafka_json.write_text(json.dumps(json.loads(kafka_json.read_text()) | {"pid": decoys["kafka"].pid}))
        orthanc_json = state_dir / "orthanc" / "state.json"
        orthanc_json.write_text(
            json.dumps(json.loads(orthanc_json.read_text()) | {"pid": decoys["orthanc"].pid}))
        stack(state_dir, "down")
        assert all(proc.poll() is None for proc in decoys.values())
        rows = status_rows(state_dir)
        for name in ("kafka", "orthanc"):
            assert (rows[name]["running"], rows[name]["pid"], rows[name]["address"]) == ("no", "-", "-"), rows
    finally:  # (again) stop what up started, if the test failed half-way
        subprocess.run([sys.executable, "-m", "radstream", "stack", "down"], env=_env(state_dir),
                           cwd=ROOT, capture_output=True, timeout=120)
