"""The local PACS: Debian's Orthanc with a generated config, started and stopped by pid.

Interface used by ``radstream stack``:

- ``start(settings, state_dir) -> dict``: settings overrides for ``stack.json``
  (``{"pacs": {...}, "research": {...}}``); idempotent (a running Orthanc of this
  state dir is reused).
- ``stop(state_dir)``: stops only the Orthanc this module started (pid in ``orthanc/state.json``,
  checked against the process's command line: binary and our config file).
- ``status(state_dir) -> str``: one line; ``pid(state_dir)`` and ``address(state_dir)`` of the
  running instance (None / "" when it does not run).

Orthanc runs with ``TCP_NODELAY=1`` in its environment, a unique ``Name``, storage and
index in ``<state_dir>/orthanc``, DICOM and HTTP on free loopback ports, no plugins,
``DicomAlwaysAllowMove`` false and two modalities: our worker's calling AE (may C-FIND/C-MOVE)
and the research storage SCP (the C-MOVE destination, on a free port chosen here).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from radstream.config import Settings

ORTHANC_BIN_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def orthanc_binary() -> str:
    for cand in ORTHANC_BIN_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    found = shutil.which("Orthanc")
    if found:
        return found
    install_packages()
    for cand in ORTHANC_BIN_CANDIDATES:
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("Orthanc is not installed and apt-get could not install it")


def install_packages() -> None:
    """``apt-get install -y orthanc dcmtk`` (``apt-get update`` first when the package is unknown)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "orthanc", "dcmtk"]
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    # Debian starts the packaged service on 4242/8042; we run our own instance only.
    subprocess.run(["systemctl", "disable", "--now", "orthanc"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _dir(state_dir: Path) -> Path:
    return Path(state_dir) / "orthanc"


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    path = _dir(state_dir) / "state.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int, config_path: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"Orthanc" in part for part in cmdline[:1]) and config_path.encode() in cmdline


def make_config(settings: Settings, state_dir: Path, dicom_port: int, http_port: int,
                research_port: int) -> dict[str, Any]:
    d = _dir(state_dir)
    pacs, research = settings.pacs, settings.research
    return {
        "Name": f"radstream-{uuid.uuid4().hex[:12]}",
        "StorageDirectory": str(d / "storage"),
        "IndexDirectory": str(d / "index"),
        "StorageCompression": False,
        "MaximumStorageSize": 0,
        "MaximumPatientCount": 0,
        "Plugins": [],
        "ConcurrentJobs": 2,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "HttpDescribeErrors": True,
        "HttpCompressionEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": pacs.ae_title,
        "DicomCheckCalledAet": False,
        "DicomPort": dicom_port,
        "DefaultEncoding": "Latin1",
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckModalityHost": False,
        "DicomScpTimeout": 30,
        "DicomScuTimeout": 30,
        "DicomAssociationCloseDelay": 0,
        "MaximumPduLength": 131072,  # the largest Orthanc allows (default 16384): fewer PDUs per image
        "DicomModalities": {
            "radstream_worker": {
                "AET": pacs.calling_ae, "Host": "127.0.0.1", "Port": 104,
                "AllowEcho": True, "AllowFind": True, "AllowMove": True,
                "AllowStore": True, "AllowGet": False,
            },
            "research": {
                "AET": research.ae_title, "Host": research.host, "Port": research_port,
                "AllowEcho": True, "AllowFind": False, "AllowMove": False, "AllowStore": True,
            },
        },
        "DicomModalitiesInDatabase": False,
        "OrthancPeers": {},
        "OverwriteInstances": True,
        "SaveJobs": False,
        "JobsHistorySize": 10,
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "KeepAlive": True,
        "TcpNoDelay": True,
        "StableAge": 2,
        "StorageAccessOnFind": "Never",
    }


def _http_get(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())


def _echo(host: str, port: int, called: str, calling: str) -> bool:
    from sinks.dicom.net import echo

    return echo(host, port, called, calling, timeout=3.0)


def _ready(state: dict[str, Any], calling_ae: str) -> bool:
    try:
        system = _http_get(f"http://127.0.0.1:{state['http_port']}/system")
    except (OSError, ValueError, urllib.error.URLError):
        return False
    if system.get("Name") != state["name"]:
        return False
    return _echo("127.0.0.1", int(state["dicom_port"]), state["aet"], calling_ae)


def overrides(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "pacs": {"host": "127.0.0.1", "port": state["dicom_port"], "http_port": state["http_port"],
                 "ae_title": state["aet"]},
        "research": {"port": state["research_port"]},
    }


def start(settings: Settings, state_dir: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Start Orthanc for ``state_dir`` (or reuse the running one); return settings overrides."""
    d = _dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    state = _read_state(state_dir)
    if state and _pid_alive(int(state["pid"]), state["config"]):
        # ours and alive (maybe still starting, e.g. a concurrent `stack up`): reuse it once it answers;
        # else stop it, so the new one neither shares its storage nor leaves it running untracked
        deadline = time.monotonic() + min(timeout, 10.0)
        while time.monotonic() < deadline and _pid_alive(int(state["pid"]), state["config"]):
            if _ready(state, settings.pacs.calling_ae):
                return overrides(state)
            time.sleep(0.2)
        stop(state_dir)
    binary = orthanc_binary()
    dicom_port, http_port = free_port(), free_port()
    research_port = int(state["research_port"]) if state else free_port()
    if research_port in (dicom_port, http_port) or not _port_free(research_port):
        research_port = free_port()
    config = make_config(settings, Path(state_dir), dicom_port, http_port, research_port)
    for sub in ("storage", "index"):
        (d / sub).mkdir(exist_ok=True)
    config_path = d / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = open(d / "orthanc.log", "ab")  # noqa: SIM115 (handed to the child)
    env = dict(os.environ, TCP_NODELAY="1")
    proc = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    log.close()
    state = {"pid": proc.pid, "config": str(config_path), "name": config["Name"], "aet": config["DicomAet"],
             "dicom_port": dicom_port, "http_port": http_port, "research_port": research_port}
    (d / "state.json").write_text(json.dumps(state, indent=2))
    (d / "orthanc.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {proc.returncode}; see {d / 'orthanc.log'}")
        if _ready(state, settings.pacs.calling_ae):
            return overrides(state)
        time.sleep(0.2)
    stop(state_dir)
    raise RuntimeError(f"Orthanc not ready within {timeout}s; see {d / 'orthanc.log'}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stop(state_dir: Path, timeout: float = 20.0) -> None:
    """Stop the Orthanc started for ``state_dir`` (by pid; nothing else)."""
    state = _read_state(state_dir)
    if not state:
        return
    pid = int(state["pid"])
    if _pid_alive(pid, state["config"]):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid, state["config"]):
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid, state["config"]):
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                _reap(pid)
                if not _pid_alive(pid, state["config"]):
                    break
                time.sleep(0.05)
    _reap(pid)
    (_dir(state_dir) / "orthanc.pid").unlink(missing_ok=True)


def kill(state_dir: Path) -> None:
    """SIGKILL our Orthanc (tests: PACS dies mid-move)."""
    state = _read_state(state_dir)
    if state and _pid_alive(int(state["pid"]), state["config"]):
        os.kill(int(state["pid"]), signal.SIGKILL)
        for _ in range(50):
            _reap(int(state["pid"]))
            if not _pid_alive(int(state["pid"]), state["config"]):
                break
            time.sleep(0.05)


def restart_same_ports(settings: Settings, state_dir: Path, timeout: float = 60.0) -> None:
    """Start Orthanc again with the config (ports, storage) it had (tests: PACS back after a crash)."""
    state = _read_state(state_dir)
    if state is None:
        raise RuntimeError("Orthanc was never started for this state dir")
    if _pid_alive(int(state["pid"]), state["config"]):
        return
    d = _dir(state_dir)
    log = open(d / "orthanc.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen([orthanc_binary(), state["config"]], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=dict(os.environ, TCP_NODELAY="1"),
                            start_new_session=True)
    log.close()
    state["pid"] = proc.pid
    (d / "state.json").write_text(json.dumps(state, indent=2))
    (d / "orthanc.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ready(state, settings.pacs.calling_ae):
            return
        time.sleep(0.2)
    raise RuntimeError("Orthanc did not come back")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def status(state_dir: Path) -> str:
    state = _read_state(state_dir)
    if not state:
        return "orthanc: not started"
    if not _pid_alive(int(state["pid"]), state["config"]):
        return "orthanc: stopped"
    return (f"orthanc: running pid {state['pid']} AET {state['aet']} dicom 127.0.0.1:{state['dicom_port']} "
            f"http 127.0.0.1:{state['http_port']} (research SCP expected on port {state['research_port']})")


def pid(state_dir: Path) -> int | None:
    """Pid of our running Orthanc for ``state_dir`` (None when it does not run)."""
    state = _read_state(state_dir)
    if state and _pid_alive(int(state["pid"]), state["config"]):
        return int(state["pid"])
    return None


def address(state_dir: Path) -> str:
    """Where our running Orthanc listens: DICOM host:port and the REST port ("" when it does not run)."""
    state = _read_state(state_dir)
    if state and _pid_alive(int(state["pid"]), state["config"]):
        return f"127.0.0.1:{state['dicom_port']} http:{state['http_port']}"
    return ""
