"""``radstream demo``: the whole pipeline once, on the local stack and embedded ClickHouse.

Starts the stack (Kafka, Orthanc), seeds Orthanc with synthetic studies, starts the worker,
the research storage SCP and the DICOM worker as real processes, streams sample reports
through, retrieves one study, checks that its files arrived, and prints a summary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from radstream.cli import settings_of
from radstream.config import Settings, load_settings

DEMO_SIGN_IN = timedelta(hours=12)  # the demo user's sign-in: long enough for a session, then gone
DEMO_REPORTS = Path(__file__).resolve().parent.parent / "data" / "demo_reports.jsonl"
console = Console()


def _rs(*args: str) -> list[str]:
    return [sys.executable, "-m", "radstream", *args]


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["RADSTREAM_STATE_DIR"] = str(Path(settings.state_dir).resolve())
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Services:
    """Our long-running processes, each with a log file under <state_dir>/logs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs = Path(settings.state_dir) / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(_rs(*args), stdout=log, stderr=subprocess.STDOUT,
                                            env=_env(self.settings), start_new_session=True)

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise click.ClickException(f"{name} exited with {p.returncode}:\n{tail}")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _run(settings: Settings, *args: str) -> str:
    out = subprocess.run(_rs(*args), env=_env(settings), capture_output=True, text=True)
    if out.returncode != 0:
        raise click.ClickException(f"radstream {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def worker_sql(settings: Settings, sql: str) -> list[list[str]]:
    """Ask the running worker (owner of the embedded store) a read-only query; rows without the header."""
    w = settings.worker
    url = f"http://{w.web_host}:{w.web_port}/sql?format=tsv"
    from radstream.warehouse import auth_headers, open_ours

    req = urllib.request.Request(url, data=sql.encode(), method="POST", headers=auth_headers(settings))
    with open_ours(settings, req, 10) as resp:  # the token only to our own worker (streams.peer)
        body = resp.read().decode()
    return [line.split("\t") for line in body.splitlines()[1:] if line]


def wait_for(what: str, probe: Callable[[], Any], services: Services, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        services.check()
        try:
            last = probe()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        time.sleep(0.5)
    raise click.ClickException(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _scalar(settings: Settings, sql: str) -> int:
    rows = worker_sql(settings, sql)
    return int(rows[0][0]) if rows else 0


@click.command()
@click.option("--keep-running", is_flag=True, help="Leave the stack and services up afterwards.")
@click.option("--studies", default=3, show_default=True, help="Synthetic studies seeded into Orthanc.")
@click.option("--images", default=4, show_default=True, help="Images per synthetic study.")
@click.pass_context
def demo(ctx: click.Context, keep_running: bool, studies: int, images: int) -> None:
    """Run the whole pipeline once on the embedded default and print a summary."""
    from radstream import stack
    from streams.topics import create_topics

    t0 = time.monotonic()
    settings = settings_of(ctx)
    console.print("[bold]1/6[/] starting the local stack (Kafka, Orthanc) …")
    already = {c.component for c in stack.status(settings) if c.pid is not None}
    stack.up(settings)
    started = [name for name in stack.COMPONENTS if name not in already]  # the demo stops only these
    settings = load_settings(config_file=os.environ.get("RADSTREAM_CONFIG"))
    create_topics(settings.kafka, settings.topics)
    console.print(f"     Kafka {settings.kafka.bootstrap}, Orthanc {settings.pacs.host}:{settings.pacs.port}")
    console.print(f"[bold]2/6[/] seeding Orthanc with {studies} synthetic studies …")
    _run(settings, "dicom", "seed", "--studies", str(studies), "--images", str(images))

    services = Services(settings)
    try:
        console.print("[bold]3/6[/] starting worker, research SCP and DICOM worker …")
        services.start("worker", "worker")
        services.start("scp", "dicom", "scp")
        services.start("dicom-worker", "dicom", "worker")
        wait_for("the worker's SQL endpoint", lambda: worker_sql(settings, "SELECT 1") == [["1"]], services)

        console.print("[bold]4/6[/] streaming sample reports …")
        n_in = sum(1 for line in DEMO_REPORTS.read_text().splitlines() if line.strip())
        t_ingest = time.monotonic()
        _run(settings, "ingest", "file", str(DEMO_REPORTS))
        wait_for("all reports in ClickHouse",
                 lambda: _scalar(settings, "SELECT uniqExact(accession) FROM reports_latest") >= n_in
                 and _scalar(settings, "SELECT count() FROM findings") > 0, services)
        t_stream = time.monotonic() - t_ingest

        console.print("[bold]5/6[/] retrieving study A1 for project DEMO …")
        # synthetic patients: registered identified so the files can be compared with Orthanc's UIDs
        _run(settings, "project", "add", "DEMO", "--destination", settings.research.ae_title,
             "--owner", "demo", "--identified", "--irb", "none: synthetic demo data", "--replace")
        out = _run(settings, "retrieve", "--accession", "A1", "--destination", settings.research.ae_title,
                   "--project", "DEMO")
        request_id = out.strip().split()[-1]
        final = wait_for(
            "the retrieval to finish",
            lambda: worker_sql(settings,
                               "SELECT state, completed, failed FROM retrieval_events WHERE request_id = "
                               f"'{request_id}' AND state IN ('completed','partial','failed') LIMIT 1"),
            services, timeout=180)
        state, completed, failed = final[0]

        console.print("[bold]6/6[/] checking the files that arrived …")
        expected = _orthanc_sop_uids(settings, "A1")
        received = _received_sop_uids(settings.research_store_dir)
        rows = {name: _scalar(settings, f"SELECT count() FROM {name}") for name in
                ("report_versions", "findings", "measurements", "recommendations", "assessments",
                 "critical_results", "dead_letters", "received_instances_identified")}  # DEMO: identified
    finally:
        if not keep_running:
            services.stop()
            if started:
                stack.down(settings, started)

    table = Table(title="radstream demo", show_header=False)
    table.add_row("reports in", str(n_in))
    for name, count in rows.items():
        table.add_row(f"{name} rows", str(count))
    table.add_row("reports → ClickHouse", f"{t_stream:.1f} s")
    table.add_row("retrieval A1", f"{state} (completed {completed}, failed {failed})")
    table.add_row("files received", f"{len(received & expected)}/{len(expected)} SOPInstanceUIDs match")
    table.add_row("time taken", f"{time.monotonic() - t0:.1f} s")
    console.print(table)
    arrived = received & expected == expected
    if state != "completed" or not expected or not arrived or rows["findings"] == 0:
        raise click.ClickException("demo did not complete as expected (see above and <state_dir>/logs)")
    _web_sign_in(settings, services if keep_running else None)


def _web_sign_in(settings: Settings, services: Services | None, port: int = 8088) -> None:
    """The web app's address and a one-time sign-in of the demo user (analyst and steward): a token that
    expires after ``DEMO_SIGN_IN``, and revokes the sign-in of the previous demo run."""
    from radstream.access import record_auth_change
    from streams.auth import TokenStore

    store = TokenStore(settings.auth.token_file)
    store.add_user("demo", ["analyst", "steward"])
    token = store.add_token("demo", note="make demo sign-in", expires_in=DEMO_SIGN_IN, replaces_note=True)
    tid = token.split("_")[1]
    record_auth_change(settings, "auth.add-user", user="demo", roles=["analyst", "steward"])
    record_auth_change(settings, "auth.add-token", user="demo", token_id=tid, note="make demo sign-in",
                       expires=store.tokens()[tid].get("expires", ""), replaces="the previous demo sign-in")
    if services is not None:
        services.start("web", "web", "--port", str(port))
        click.echo(f"web app: http://127.0.0.1:{port}/ (running)")
    else:
        click.echo(f"web app: `radstream stack up`, `radstream worker` and `radstream web --port {port}`, "
                   f"then http://127.0.0.1:{port}/ (or `radstream demo --keep-running`)")
    hours = int(DEMO_SIGN_IN.total_seconds() // 3600)
    click.echo(f"sign in as demo with: {token}\n(valid for {hours} hours, until the next `make demo`, "
               "or until `radstream auth revoke demo`)")


def _orthanc_sop_uids(settings: Settings, accession: str) -> set[str]:
    import json

    base = f"http://{settings.pacs.host}:{settings.pacs.http_port}"
    find = {"Level": "Instance", "Query": {"AccessionNumber": accession}, "Expand": True}
    query = json.dumps(find).encode()
    req = urllib.request.Request(f"{base}/tools/find", data=query, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        found = json.loads(resp.read())
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in found}


def _received_sop_uids(store: Path) -> set[str]:
    import pydicom

    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in store.rglob("*.dcm")}
