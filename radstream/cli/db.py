"""``radstream db migrate|sink|tables``: the ClickHouse warehouse."""

from __future__ import annotations

import click

from radstream.cli import checked_settings, settings_of


@click.group()
def db() -> None:
    """The research warehouse in ClickHouse (embedded chDB or a server)."""


@db.command("migrate")
@click.option("--grants/--no-grants", default=None,
              help="Create the server roles and GRANTs (sinks/clickhouse/grants.py; default: on a server, "
                   "never on an embedded store, which has no users).")
@click.option("--print-grants", is_flag=True, help="Only print the role/GRANT statements (for a DBA).")
@click.pass_context
def migrate_cmd(ctx: click.Context, grants: bool | None, print_grants: bool) -> None:
    """Apply pending DDL migrations (idempotent), then the server roles and GRANTs."""
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.grants import apply_grants, grant_statements
    from sinks.clickhouse.migrate import migrate

    settings = settings_of(ctx)
    client = open_client(settings.clickhouse)
    try:
        if print_grants:
            rows = client.query("SELECT name FROM system.tables WHERE database = {db:String}",
                                parameters={"db": settings.clickhouse.database}).result_rows
            for stmt in grant_statements(settings.clickhouse.database, [str(n) for (n,) in rows]):
                click.echo(stmt + ";")
            return
        applied = migrate(client, settings.clickhouse.database)
        granted = (apply_grants(client, settings.clickhouse.database)
                   if (not settings.embedded_clickhouse if grants is None else grants) else [])
    finally:
        client.close()
    where = f"{settings.clickhouse_url} database {settings.clickhouse.database}"
    click.echo(f"applied {', '.join(applied)} to {where}" if applied else f"up to date: {where}")
    if granted:
        click.echo(f"roles and grants: {len(granted)} statements")


@db.command("sink")
@click.option("--web/--no-web", default=None,
              help="Serve read-only /sql and /health on worker.web_host:web_port (default: with an "
                   "embedded store, which no other process can open).")
@click.option("--web-port", type=int, default=None,
              help="Port of those pages (default: worker.web_port, where `radstream sql` looks; give a "
                   "`worker --no-sink` next to it another port).")
@click.pass_context
def sink_cmd(ctx: click.Context, web: bool | None, web_port: int | None) -> None:
    """Run the Kafka -> ClickHouse sink in the foreground. The worker runs one too: use this with
    `radstream worker --no-sink`, so that NLP and loading run in separate processes."""
    import logging
    import signal
    import threading

    from sinks.clickhouse.service import SinkService
    from sinks.clickhouse.web import SqlServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = checked_settings(ctx)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service = SinkService(settings.kafka, settings.topics, settings.clickhouse)
    server = None
    if settings.embedded_clickhouse if web is None else web:
        port = settings.worker.web_port if web_port is None else web_port
        from radstream import access

        server = SqlServer(service, settings.worker.web_host, port, gate=access.gate(settings, "sql-page"),
                           tls=access.tls(settings), roles_dir=access.roles_dir(settings))
        server.start()
        where = f"{server.scheme}://{settings.worker.web_host}:{server.port}/sql"
        click.echo(f"read-only SQL on {where}", err=True)
    service.start()
    try:
        while not stop.wait(0.5):
            if service.thread is not None and not service.thread.is_alive():
                break
    finally:
        if server is not None:
            server.stop()
        service.stop()
    stats = service.stats
    click.echo(f"stopped: {stats}")
    if service.error is not None:
        raise click.ClickException(f"the sink failed: {service.error!r}")
