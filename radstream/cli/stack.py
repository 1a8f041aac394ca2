"""``radstream stack up|down|status``: the local Kafka + Orthanc without Docker."""

from __future__ import annotations

import time

import click

from radstream.cli import settings_of


@click.group()
def stack() -> None:
    """Local stack (Kafka KRaft broker, Orthanc); state in <state_dir>, settings in stack.json."""


@stack.command("up")
@click.option("--only", type=click.Choice(["kafka", "orthanc"]), default=None,
              help="Start just this component.")
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="Kafka as a KRaft cluster of this many nodes (3: topics replicated 3 times, "
                   "min.insync.replicas 2). Default: as last time, else 1.")
@click.pass_context
def up(ctx: click.Context, only: str | None, brokers: int | None) -> None:
    """Start the stack (reuses running components) and write <state_dir>/stack.json."""
    from radstream import stack as st

    settings = settings_of(ctx)
    started = time.monotonic()
    try:
        data = st.up(settings, (only,) if only else st.COMPONENTS, brokers=brokers)
    except Exception as exc:  # KafkaStackError and Orthanc's errors carry the log tail
        raise click.ClickException(str(exc)) from exc
    for section, values in sorted(data["settings"].items()):
        for key, value in sorted(values.items()):
            click.echo(f"{section}.{key} = {value}")
    click.echo(f"stack up in {time.monotonic() - started:.1f} s (state: {settings.state_dir})")
    if "kafka" in data["settings"]:
        # the local broker has no accounts: say so where the stack is started, not only in the docs
        click.echo("note: this broker is PLAINTEXT on 127.0.0.1 with no accounts: any local user can read "
                   "every topic, original report text included. Use it for trials with test data; for "
                   "real reports use a broker with SASL and ACLs (docs/access.md, \"Kafka\").", err=True)


@stack.command("down")
@click.option("--only", type=click.Choice(["kafka", "orthanc"]), default=None,
              help="Stop just this component.")
@click.pass_context
def down(ctx: click.Context, only: str | None) -> None:
    """Stop what `stack up` started for this state dir."""
    from radstream import stack as st

    st.down(settings_of(ctx), (only,) if only else st.COMPONENTS)
    click.echo("stack down")


@stack.command("status")
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show each component: pid, address, running?"""
    from rich.console import Console
    from rich.table import Table

    from radstream import stack as st

    table = Table("component", "pid", "address", "running", "state")
    for row in st.status(settings_of(ctx)):
        table.add_row(row.component, str(row.pid or "-"), row.address or "-",
                      "[green]yes[/green]" if row.running else "[red]no[/red]", row.state)
    Console().print(table)
