"""``radstream worker``: the Faust worker (NLP agent + ClickHouse sink + read-only SQL page)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import click

from radstream.cli import checked_settings

# after SIGTERM/SIGINT: a shutdown that hangs (a dead broker: commits and sends that wait for it) must
# not keep the process; what it did not commit is consumed again by its successor (at-least-once)
EXIT_AFTER_SIGNAL_S = 4.0


def _worker_class() -> Any:
    from faust.worker import Worker

    class PromptWorker(Worker):
        def _schedule_shutdown(self, signum: signal.Signals) -> None:
            if not self._signal_stop_time:
                timer = threading.Timer(EXIT_AFTER_SIGNAL_S, os._exit, args=(128 + int(signum),))
                timer.daemon = True  # a shutdown that finishes is not held up by it
                timer.start()
            super()._schedule_shutdown(signum)

    return PromptWorker


@click.command()
@click.option("--no-sink", is_flag=True, help="Run only the NLP agent (a separate process owns ClickHouse).")
@click.option("--loglevel", default="warning", show_default=True)
@click.pass_context
def worker(ctx: click.Context, no_sink: bool, loglevel: str) -> None:
    """Consume report events, publish findings, and load everything into ClickHouse."""
    settings = checked_settings(ctx)  # before anything connects
    from radstream.worker import build_worker

    app = build_worker(settings, with_sink=not no_sink)
    _worker_class()(app, loglevel=loglevel, quiet=True).execute_from_commandline()
