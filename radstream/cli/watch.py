"""``radstream cohort watch|unwatch|watches``: standing cohorts, evaluated in the stream."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

import click

from radstream.cli import settings_of


@click.command("watch")
@click.option("--project", required=True, help="Project / IRB protocol id.")
@click.option("--destination", required=True, help="Destination AE (must be on the allow-list).")
@click.option("--rule", "rule_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Rule file (JSON): modality, body_region, status, finding, assessment, after, before.")
@click.option("--requester", default=None, help="Recorded with every request (default: the OS user).")
@click.option("--id", "watch_id", default=None, help="Watch id (default: generated).")
@click.pass_context
def watch(ctx: click.Context, project: str, destination: str, rule_file: str, requester: str | None,
          watch_id: str | None) -> None:
    """Register criteria once; every new report version that meets them becomes a retrieval request."""
    from processors.cohort import RuleError
    from streams.cohort import DestinationNotAllowed, publish_watch, watch_record

    settings = settings_of(ctx)
    try:
        who = requester or getpass.getuser()
        rec = watch_record(settings.research.allowed_destinations, project, destination, who, rule_file,
                           watch_id)
    except (RuleError, DestinationNotAllowed) as exc:
        raise click.ClickException(str(exc)) from exc
    publish_watch(settings.kafka, settings.topics, rec)
    click.echo(f"watching {rec['watch_id']}: project {project} -> {destination}")


@click.command("unwatch")
@click.argument("watch_id")
@click.pass_context
def unwatch(ctx: click.Context, watch_id: str) -> None:
    """End a standing cohort (requests already made are not cancelled)."""
    from streams.cohort import publish_watch

    settings = settings_of(ctx)
    publish_watch(settings.kafka, settings.topics, {
        "watch_id": watch_id, "project_id": "", "destination_ae": "", "requester": "", "rule": "{}",
        "active": False, "time": datetime.now(UTC)})
    click.echo(f"stopped {watch_id}")


@click.command("watches")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def watches(ctx: click.Context, as_json: bool) -> None:
    """List the active standing cohorts."""
    from streams.cohort import WatchRegistry

    settings = settings_of(ctx)
    registry = WatchRegistry(settings.kafka, settings.topics)
    registry.start()
    registry.loaded.wait(15)
    registry.stop()
    rows = [{"watch_id": w.watch_id, "project": w.project_id, "destination": w.destination_ae,
             "requester": w.requester, "rule": w.rule.name} for w in registry.current()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo("\t".join(r.values()))
