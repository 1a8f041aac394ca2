"""``radstream dicom worker|scp|seed|quarantine``: the DICOM side of retrieval."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from radstream.cli import checked_settings, settings_of
from radstream.config import Settings
from radstream.text_deid import research_key


@click.group()
def dicom() -> None:
    """Retrieval worker (C-FIND/C-MOVE), research storage SCP, synthetic data for the PACS."""


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING if verbose else logging.ERROR)


def _stop_on_signals(event: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


metrics_port_option = click.option(
    "--metrics-port", type=int, default=None,
    help="Port of /metrics, /health, /ready (default: from the metrics settings; 0: a free one; -1: none).")


@dicom.command()
@click.option("--until-idle", type=float, default=None,
              help="Exit after this many seconds with nothing queued or in flight.")
@metrics_port_option
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def worker(ctx: click.Context, until_idle: float | None, metrics_port: int | None, verbose: bool) -> None:
    """Consume retrieval requests, C-FIND and C-MOVE each study, produce status events."""
    from sinks.dicom.net import tune_process
    from sinks.dicom.worker import Worker

    _logging(verbose)
    tune_process()
    s = checked_settings(ctx)
    w = Worker(s.kafka, s.topics, s.pacs, s.research, s.state_dir, key=research_key(s))
    _stop_on_signals(w.stop_event)
    port = s.metrics.dicom_worker_port if metrics_port is None else metrics_port
    ops = None
    if port >= 0:
        from radstream.monitoring import pacs_check, serve_ops
        from sinks.dicom.metrics import register_worker

        register_worker(w.held)
        ops = serve_ops(s, "dicom-worker", port, {"pacs": pacs_check(s)})
    try:
        w.run(until_idle=until_idle)
    finally:
        if ops is not None:
            ops.stop()


@dicom.command()
@click.option("--port", type=int, default=None, help="Listen port (default: research.port).")
@click.option("--processes", type=click.IntRange(1, 64), default=None,
              help="SCP processes sharing one listening socket (default: research.processes).")
@click.option("--listen-fd", type=int, default=None, hidden=True)
@metrics_port_option
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def scp(ctx: click.Context, port: int | None, processes: int | None, listen_fd: int | None,
        metrics_port: int | None, verbose: bool) -> None:
    """Research storage SCP: accept C-STORE from allowed AEs, write project/study/series/instance.dcm
    (de-identified unless the project is registered as identified; unsafe instances to the quarantine)."""
    from sinks.dicom.net import tune_process
    from sinks.dicom.projects import ProjectRegistry
    from sinks.dicom.scp import ResearchStore, ScpConfig
    from streams.producer import make_producer

    _logging(verbose)
    settings = checked_settings(ctx)
    n = settings.research.processes if processes is None else processes
    metrics_port = settings.metrics.scp_port if metrics_port is None else metrics_port
    if n > 1 and listen_fd is None:
        _scp_processes(settings, n, port, metrics_port, verbose)
        return
    tune_process()
    # The configured pseudonym key only, never research_key's generated <state_dir>/text_deid.key: images
    # de-identified with a key of this host alone would carry pseudonyms that join nothing elsewhere.
    # Without one, de-identified projects' instances are refused (0xC000) and identified ones stored.
    cfg = ScpConfig.of(settings.research, settings.ingest)
    if not cfg.deid_key:
        click.echo("no pseudonym key (ingest.pseudonym_key or pseudonym_key_file): instances of "
                   "de-identified projects are refused (0xC000), identified projects stored", err=True)
    cfg.listen_fd = listen_fd
    if port is not None:
        cfg.port = port
    producer = make_producer(settings.kafka, **{"linger.ms": settings.research.event_batch_ms})
    projects = ProjectRegistry(settings.kafka, settings.topics)
    projects.start()
    if settings.research.coordination not in ("kafka", "files"):
        raise click.ClickException(f"research.coordination is {settings.research.coordination!r}: "
                                   "kafka or files")
    expected = None
    if settings.research.coordination == "kafka":  # nothing shared with the DICOM worker
        from sinks.dicom.expect import ExpectedStudies

        expected = ExpectedStudies(settings.kafka, settings.topics)
        expected.start()
    store = ResearchStore(cfg, producer, settings.topics, projects, expected)
    stop = threading.Event()
    _stop_on_signals(stop)
    projects.loaded.wait(15)
    if expected is not None:
        expected.loaded.wait(15)
    bound = store.start()
    click.echo(f"research SCP {cfg.ae_title} listening on {cfg.host}:{bound}, store {cfg.store_dir}",
               err=True)
    ops = None
    if metrics_port >= 0:
        from radstream.monitoring import serve_ops
        from sinks.dicom.metrics import register_scp

        register_scp(store.stats)
        ops = serve_ops(settings, "scp", metrics_port,
                        health=lambda: {"ae_title": cfg.ae_title, "port": bound})
    try:
        while not stop.wait(1.0):
            store.producer.poll(0)
    finally:
        if ops is not None:
            ops.stop()
        store.stop()
        projects.stop()
        s = store.stats
        click.echo(f"stored {s.written} instances ({s.bytes} bytes), quarantined {s.quarantined}, "
                   f"refused {s.refused}, write errors {s.write_errors}", err=True)


def _scp_processes(settings: Settings, n: int, port: int | None, metrics_port: int, verbose: bool) -> None:
    """Run ``n`` SCP processes on one listening socket, made here and inherited (the first free process
    accepts each association: ``sinks.dicom.scp.SharedListenerServer``); SIGTERM/SIGINT stop them all.
    Process ``i`` serves its metrics on ``metrics_port + i`` (each counts its own instances)."""
    import os
    import socket
    import subprocess
    import sys

    from radstream.config import settings_env

    listener = socket.create_server((settings.research.host, port or settings.research.port), backlog=64)
    fd = listener.fileno()
    cmd = [sys.executable, "-m", "radstream", "dicom", "scp", "--processes", "1", "--listen-fd", str(fd),
           "--port", str(listener.getsockname()[1]), *(["-v"] if verbose else [])]
    env = {**os.environ, **settings_env(settings)}
    def metrics_of(i: int) -> list[str]:
        return ["--metrics-port", str(metrics_port if metrics_port <= 0 else metrics_port + i)]

    procs = [subprocess.Popen([*cmd, *metrics_of(i)], env=env, pass_fds=(fd,)) for i in range(n)]
    listener.close()  # the children hold it
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        while not stop.wait(0.5):
            if any(p.poll() is not None for p in procs):
                click.echo("an SCP process ended; stopping the others", err=True)
                break
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    codes = [p.returncode for p in procs]
    if stop.is_set() and all(c == 0 for c in codes):
        return
    raise SystemExit(next((c for c in codes if c), 1))


@dicom.command()
@click.option("--studies", type=int, default=3, show_default=True)
@click.option("--images", type=int, default=4, show_default=True, help="Images per study.")
@click.option("--kb", type=int, default=8, show_default=True, help="Pixel data per image, KiB.")
@click.option("--first", type=int, default=1, show_default=True,
              help="Number of the first accession (A<first>).")
@click.pass_context
def seed(ctx: click.Context, studies: int, images: int, kb: int, first: int) -> None:
    """Store synthetic CT studies (accessions A1..AN) in the PACS via its REST API."""
    from sinks.dicom.seed import seed as do_seed
    from sinks.dicom.synth import rows_for_kb

    settings = settings_of(ctx)
    done = do_seed(settings.pacs, studies, images, rows=rows_for_kb(kb), first=first)
    for spec in done:
        click.echo(f"{spec.accession}\t{spec.patient_id}\t{spec.study_date}\t{spec.images}\t{spec.study_uid}")


@dicom.group()
def quarantine() -> None:
    """Instances of de-identified projects that could not be made safe (data stewards)."""


def _store(ctx: click.Context) -> tuple[Any, Any]:
    from sinks.dicom.projects import ProjectRegistry
    from sinks.dicom.scp import ResearchStore, ScpConfig
    from streams.producer import make_producer

    settings = settings_of(ctx)
    projects = ProjectRegistry(settings.kafka, settings.topics)
    # the configured key, as the SCP's (a release into a de-identified project without one: ReleaseError)
    store = ResearchStore(ScpConfig.of(settings.research, settings.ingest), make_producer(settings.kafka),
                          settings.topics, projects)
    return store, projects


def _entry(store: Any, key: str) -> Any:
    entry = store.quarantine.find(key)
    if entry is None:
        raise click.ClickException(f"no single quarantined instance {key!r} "
                                   "(see: radstream dicom quarantine list)")
    return entry


@quarantine.command("list")
@click.option("--project", default=None, help="Only this project.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_list(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """What is in the quarantine now: project/SOP UID, reason, when, request (a steward's, audited as
    ``quarantine.list``: the keys are the hospital's own SOP Instance UIDs)."""
    import dataclasses
    import json
    from datetime import UTC, datetime

    from radstream.access import authorise, done
    from sinks.dicom.quarantine import Quarantine
    from streams.auth import AuthError

    settings = settings_of(ctx)
    try:
        principal, target = authorise(settings, "quarantine.list", ("steward",), project=project or "")
    except AuthError as exc:
        raise click.ClickException(f"not allowed: {exc.reason}") from None
    entries = [e for e in Quarantine(settings.research.quarantine_dir).entries()
               if not project or e.project_id == project]
    done(target, principal, "quarantine.list", project=project or "", rows=len(entries))
    for e in entries:
        if as_json:
            click.echo(json.dumps(dataclasses.asdict(e)))
        else:
            when = datetime.fromtimestamp(e.time, UTC).isoformat(timespec="seconds")
            click.echo(f"{e.key}\t{e.modality}\t{e.reason}\t{when}\t{e.request_id}")


def _steward_action(ctx: click.Context, verb: str, key: str, note: str) -> tuple[Any, Any]:
    """``store.release`` or ``store.purge`` of the quarantined instance KEY by a steward (``RADSTREAM_TOKEN``,
    else the local admin), audited (``quarantine.release``/``quarantine.purge``, refusals too);
    -> (entry, what the action returned)."""
    from radstream.access import authorise, done, flush_audit
    from sinks.dicom.scp import ReleaseError
    from streams import audit
    from streams.auth import AuthError

    settings = settings_of(ctx)
    action = f"quarantine.{verb}"
    try:
        principal, target = authorise(settings, action, ("steward",), instance=key)
    except AuthError as exc:
        raise click.ClickException(f"not allowed: {exc.reason}") from None
    store, projects = _store(ctx)
    entry = None
    try:
        entry = _entry(store, key)
        result = getattr(store, verb)(entry, principal.user, note)
    except Exception as exc:
        # an allowed steward's attempt that failed is audited too (no entry, not released, the events
        # not delivered): the audit trail shows every attempt on a quarantined instance, not only refusals
        why = exc.message if isinstance(exc, click.ClickException) else f"{type(exc).__name__}: {exc}"
        audit.record(target, principal.user, action, allowed=False, reason=f"failed: {why}",
                     project=entry.project_id if entry is not None else "", instance=key, note=note)
        flush_audit(target)
        if isinstance(exc, click.ClickException):
            raise
        if isinstance(exc, ReleaseError):
            raise click.ClickException(f"not released: {exc}") from exc
        if isinstance(exc, RuntimeError):  # store.flush: the events were not delivered
            raise click.ClickException(f"not {verb}d: {exc}") from exc
        raise
    finally:
        projects.stop()
    done(target, principal, action, project=entry.project_id, instance=entry.key, reason=entry.reason,
         note=note)
    return entry, result


@quarantine.command("release")
@click.argument("key")
@click.option("--reason", "note", required=True, help="Why it is safe to release (recorded).")
@click.pass_context
def quarantine_release(ctx: click.Context, key: str, note: str) -> None:
    """De-identify KEY (project/SOP UID) with its project's options and move it into the project tree;
    recorded with who, when and why."""
    entry, path = _steward_action(ctx, "release", key, note)
    click.echo(f"released {entry.key} -> {path}")


@quarantine.command("purge")
@click.argument("key")
@click.option("--reason", "note", required=True, help="Why it is deleted (recorded).")
@click.pass_context
def quarantine_purge(ctx: click.Context, key: str, note: str) -> None:
    """Delete KEY (project/SOP UID) from the quarantine; recorded with who, when and why."""
    entry, _ = _steward_action(ctx, "purge", key, note)
    click.echo(f"purged {entry.key}")
