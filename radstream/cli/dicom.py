"""``radstream dicom worker|scp|seed``: the DICOM side of retrieval."""

from __future__ import annotations

import logging
import signal
import threading

import click

from radstream.cli import settings_of
from radstream.config import Settings


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


@dicom.command()
@click.option("--until-idle", type=float, default=None,
              help="Exit after this many seconds with nothing queued or in flight.")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def worker(ctx: click.Context, until_idle: float | None, verbose: bool) -> None:
    """Consume retrieval requests, C-FIND and C-MOVE each study, produce status events."""
    from sinks.dicom.net import tune_process
    from sinks.dicom.worker import Worker

    _logging(verbose)
    tune_process()
    s = settings_of(ctx)
    w = Worker(s.kafka, s.topics, s.pacs, s.research, s.state_dir)
    _stop_on_signals(w.stop_event)
    w.run(until_idle=until_idle)


@dicom.command()
@click.option("--port", type=int, default=None, help="Listen port (default: research.port).")
@click.option("--processes", type=click.IntRange(1, 64), default=None,
              help="SCP processes sharing one listening socket (default: research.processes).")
@click.option("--listen-fd", type=int, default=None, hidden=True)
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def scp(ctx: click.Context, port: int | None, processes: int | None, listen_fd: int | None,
        verbose: bool) -> None:
    """Research storage SCP: accept C-STORE from allowed AEs, write project/study/series/instance.dcm."""
    from sinks.dicom.net import tune_process
    from sinks.dicom.scp import ResearchStore, ScpConfig
    from streams.producer import make_producer

    _logging(verbose)
    settings = settings_of(ctx)
    n = settings.research.processes if processes is None else processes
    if n > 1 and listen_fd is None:
        _scp_processes(settings, n, port, verbose)
        return
    tune_process()
    cfg = ScpConfig.of(settings.research, settings.ingest)
    cfg.listen_fd = listen_fd
    if port is not None:
        cfg.port = port
    store = ResearchStore(cfg, make_producer(settings.kafka), settings.topics.received_instances)
    stop = threading.Event()
    _stop_on_signals(stop)
    bound = store.start()
    click.echo(f"research SCP {cfg.ae_title} listening on {cfg.host}:{bound}, store {cfg.store_dir}",
               err=True)
    try:
        while not stop.wait(1.0):
            store.producer.poll(0)
    finally:
        store.stop()
        s = store.stats
        click.echo(f"stored {s.written} instances ({s.bytes} bytes), refused {s.refused}, "
                   f"write errors {s.write_errors}", err=True)


def _scp_processes(settings: Settings, n: int, port: int | None, verbose: bool) -> None:
    """Run ``n`` SCP processes on one listening socket, made here and inherited (the first free process
    accepts each association: ``sinks.dicom.scp.SharedListenerServer``); SIGTERM/SIGINT stop them all."""
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
    procs = [subprocess.Popen(cmd, env=env, pass_fds=(fd,)) for _ in range(n)]
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
