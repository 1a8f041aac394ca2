"""``radstream worker``: the stream agents (NLP, standing cohorts), the ClickHouse sink and the read-only
SQL page, in one process."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading

import click

from radstream.cli import checked_settings

# after SIGTERM/SIGINT: a shutdown that hangs (a dead broker: commits and sends that wait for it) must
# not keep the process; what it did not commit is consumed again by its successor (at-least-once)
EXIT_AFTER_SIGNAL_S = 4.0
EXIT_FAILED = 70  # a part failed (EX_SOFTWARE): the supervisor starts the worker again


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        if not stop.is_set():
            timer = threading.Timer(EXIT_AFTER_SIGNAL_S, os._exit, args=(128 + signum,))
            timer.daemon = True  # a shutdown that finishes is not held up by it
            timer.start()
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    # a worker that is alive but makes no progress: `kill -USR1 <pid>` writes every thread's stack to
    # its log, without stopping it
    faulthandler.register(signal.SIGUSR1, all_threads=True)


@click.command()
@click.option("--no-sink", is_flag=True, help="Run only the agents (a separate process owns ClickHouse).")
@click.option("--loglevel", default="warning", show_default=True)
@click.pass_context
def worker(ctx: click.Context, no_sink: bool, loglevel: str) -> None:
    """Consume report events, publish findings, and load everything into ClickHouse."""
    settings = checked_settings(ctx)  # before anything connects
    from radstream.worker import Worker, run
    from streams.logs import rate_limit_root_handlers

    logging.basicConfig(level=loglevel.upper(),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    rate_limit_root_handlers()  # a broker restart: one line per kind of reconnect error per 10 s
    stop = threading.Event()
    _stop_on_signals(stop)
    why = run(Worker(settings, with_sink=not no_sink), stop)
    if why is not None:
        click.echo(f"worker: {why}", err=True)
        sys.exit(EXIT_FAILED)
