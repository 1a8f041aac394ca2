"""``radstream db migrate|sink|tables``: the ClickHouse warehouse."""

from __future__ import annotations

import click

from radstream.cli import settings_of


@click.group()
def db() -> None:
    """The research warehouse in ClickHouse (embedded chDB or a server)."""


@db.command("migrate")
@click.pass_context
def migrate_cmd(ctx: click.Context) -> None:
    """Apply pending DDL migrations (idempotent)."""
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.migrate import migrate

    settings = settings_of(ctx)
    client = open_client(settings)
    try:
        applied = migrate(client, settings)
    finally:
        client.close()
    where = f"{settings.clickhouse_url} database {settings.clickhouse.database}"
    click.echo(f"applied {', '.join(applied)} to {where}" if applied else f"up to date: {where}")


@db.command("sink")
@click.pass_context
def sink_cmd(ctx: click.Context) -> None:
    """Run the Kafka -> ClickHouse sink in the foreground (the worker runs it too; use one of them)."""
    import logging
    import signal
    import threading

    from sinks.clickhouse.sink import ClickHouseSink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sink = ClickHouseSink(settings_of(ctx))
    try:
        sink.run(stop)
    finally:
        sink.close()
    click.echo(f"stopped: {sink.stats}")
