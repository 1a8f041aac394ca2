"""``radstream topics create|list``."""

from __future__ import annotations

import click

from radstream.cli import settings_of


@click.group()
def topics() -> None:
    """Kafka topics of radstream (created explicitly, never by auto-create)."""


@topics.command("create")
@click.pass_context
def create(ctx: click.Context) -> None:
    """Create missing topics (idempotent): partitions and retention from config."""
    from streams.topics import KafkaUnavailable, create_topics

    try:
        settings = settings_of(ctx)
        created = create_topics(settings.kafka, settings.topics, timeout=15)
    except KafkaUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    for name, state in created.items():
        click.echo(f"{state:8} {name}")


@topics.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Show our topics with their contracts."""
    from streams.topics import topic_specs

    for spec in topic_specs(settings_of(ctx).topics):
        click.echo(f"{spec.name}\t{spec.contract}")
