"""``radstream db migrate|optimize|sink|tables``: the ClickHouse warehouse."""

from __future__ import annotations

from pathlib import Path

import click

from radstream.cli import checked_settings, settings_of
from radstream.config import Settings


@click.group()
def db() -> None:
    """The research warehouse in ClickHouse (embedded chDB or a server)."""


@db.command("migrate")
@click.option("--grants/--no-grants", default=None,
              help="Create the server roles and GRANTs (sinks/clickhouse/grants.py; default: on a server, "
                   "never on an embedded store, which has no users).")
@click.option("--print-grants", is_flag=True, help="Only print the role/GRANT statements (for a DBA).")
@click.option("--cluster", default=None, metavar="NAME",
              help="The ClickHouse cluster layout (docs/operations.md): ON CLUSTER NAME, "
                   "Replicated*MergeTree local tables, Distributed tables and views; a new cluster gets the "
                   "current schema, a running one the migrations it has not recorded, in their cluster "
                   "form; through the server of clickhouse.url.")
@click.option("--print", "print_only", is_flag=True,
              help="With --cluster: only print the DDL of a new cluster (for a DBA); needs no server.")
@click.option("--writers-stopped", is_flag=True,
              help="With --cluster: every writer of the warehouse (the sinks) is stopped, so the "
                   "migrations that copy tables to a new key (012, 014, 023, 032) may run; without it "
                   "they are refused (docs/operations.md).")
@click.pass_context
def migrate_cmd(ctx: click.Context, grants: bool | None, print_grants: bool, cluster: str | None,
                print_only: bool, writers_stopped: bool) -> None:
    """Apply pending DDL migrations (idempotent), then the server roles and GRANTs."""
    from radstream.access import roles_dir
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.grants import apply_grants, warehouse_grant_statements
    from sinks.clickhouse.migrate import migrate

    settings = settings_of(ctx)
    if (print_only or writers_stopped) and not cluster:
        raise click.UsageError("--print and --writers-stopped go with --cluster NAME")
    if cluster:
        _migrate_cluster(settings, cluster, print_only, writers_stopped)
        return
    site_roles = Path(roles_dir(settings))  # the site's allowlists (auth.roles_dir), as the query check
    client = open_client(settings.clickhouse)
    try:
        if print_grants:
            # the same statements as apply_grants runs (column grants where the role hides columns)
            for stmt in warehouse_grant_statements(client, settings.clickhouse.database, site_roles):
                click.echo(stmt + ";")
            return
        applied = migrate(client, settings.clickhouse.database)
        granted = (apply_grants(client, settings.clickhouse.database, site_roles)
                   if (not settings.embedded_clickhouse if grants is None else grants) else [])
    finally:
        client.close()
    where = f"{settings.clickhouse.shown_url} database {settings.clickhouse.database}"
    click.echo(f"applied {', '.join(applied)} to {where}" if applied else f"up to date: {where}")
    if granted:
        click.echo(f"roles and grants: {len(granted)} statements")


def _migrate_cluster(settings: Settings, cluster: str, print_only: bool, writers_stopped: bool) -> None:
    import dataclasses

    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.cluster_migrate import ClusterMigrationError, migrate_cluster, plan_cluster

    database = settings.clickhouse.database
    if not print_only and settings.embedded_clickhouse:
        raise click.ClickException("--cluster needs ClickHouse servers (clickhouse.url = http://...); "
                                   "--print shows the DDL without one")
    # made on a scratch embedded store: opened before any client of the configured store
    plan = plan_cluster(database, cluster)
    if print_only:
        for stmt in plan.fresh:
            click.echo(stmt + ";\n")
        return
    # every statement names its database; connected to `default`, which exists before ours is created
    client = open_client(dataclasses.replace(settings.clickhouse, database="default"), create_database=False)
    try:
        how, names = migrate_cluster(client, database, plan, writers_stopped=writers_stopped)
    except ClusterMigrationError as e:
        raise click.ClickException(str(e)) from e
    finally:
        client.close()
    where = f"{settings.clickhouse.shown_url} database {database}"
    if how == "created":
        click.echo(f"cluster {cluster}: created at {names[-1]} ({len(plan.fresh)} statements) on {where} "
                   "(roles and grants: `db migrate --print-grants`, then ON CLUSTER)")
    else:
        click.echo(f"cluster {cluster}: applied {', '.join(names)} to {where}" if names
                   else f"cluster {cluster}: up to date: {where}")


@db.command("optimize")
@click.option("--table", "tables", multiple=True, metavar="NAME",
              help="Only this table (repeatable; default: every table the views read with FINAL).")
@click.pass_context
def optimize_cmd(ctx: click.Context, tables: tuple[str, ...]) -> None:
    """Merge each partition that has several parts into one (OPTIMIZE ... FINAL), so that FINAL reads
    need no merge. The sink does this by itself every clickhouse.optimize_interval_s; this runs a round
    now (a server, or an embedded store that no worker holds)."""
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.maintenance import FINAL_TABLES, optimize

    settings = settings_of(ctx)
    unknown = sorted(set(tables) - set(FINAL_TABLES))
    if unknown:
        raise click.UsageError(f"not a table the views read with FINAL: {', '.join(unknown)}")
    client = open_client(settings.clickhouse)
    try:
        done = optimize(client, settings.clickhouse.database, tables or FINAL_TABLES)
    finally:
        client.close()
    for part in done:
        click.echo(f"{part.table} partition {part.partition_id}: {part.parts} parts -> 1")
    click.echo(f"merged {len(done)} partitions" if done else "nothing to merge: one part per partition")


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
    from streams.ops import OpsServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = checked_settings(ctx)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service = SinkService(settings.kafka, settings.topics, settings.clickhouse)
    server: SqlServer | OpsServer | None = None
    if settings.embedded_clickhouse if web is None else web:
        port = settings.worker.web_port if web_port is None else web_port
        from radstream import access
        from streams.ops import kafka_check

        server = SqlServer(service, settings.worker.web_host, port, gate=access.gate(settings, "sql-page"),
                           tls=access.tls(settings), roles_dir=access.roles_dir(settings),
                           checks={"kafka": kafka_check(settings.kafka)})
        server.start()
        where = f"{server.scheme}://{settings.worker.web_host}:{server.port}/sql"
        click.echo(f"read-only SQL on {where}", err=True)
    else:  # no SQL page (a ClickHouse server): the metrics and probes on a port of their own
        from radstream.monitoring import serve_ops

        if settings.metrics.sink_port >= 0:
            server = serve_ops(settings, "clickhouse-sink", settings.metrics.sink_port,
                               {"clickhouse": service.ping}, health=lambda: {"sink": service.health()})
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
