"""``radstream worker``: the Faust worker (NLP agent + ClickHouse sink + read-only SQL page)."""

from __future__ import annotations

import click

from radstream.cli import settings_of


@click.command()
@click.option("--no-sink", is_flag=True, help="Run only the NLP agent (a separate process owns ClickHouse).")
@click.option("--loglevel", default="warning", show_default=True)
@click.pass_context
def worker(ctx: click.Context, no_sink: bool, loglevel: str) -> None:
    """Consume report events, publish findings, and load everything into ClickHouse."""
    from faust.worker import Worker

    from radstream.worker import build_worker

    app = build_worker(settings_of(ctx), with_sink=not no_sink)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
