"""``radstream cohort watch|unwatch|watches``: standing cohorts, evaluated in the stream."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from radstream.cli import settings_of

if TYPE_CHECKING:
    from streams.auth import Principal


WATCHERS = ("analyst", "steward")  # as on the web page (radstream.web.app.READERS); admin holds every role


def _refused(target: Any, principal: Principal, action: str, why: str, **fields: Any) -> NoReturn:
    from radstream.access import flush_audit
    from streams import audit

    audit.record(target, principal.user, action, allowed=False, reason=why, **fields)
    flush_audit(target)
    raise click.ClickException(why)


def _taken_by_another(settings: Any, principal: Principal, watch_id: str, verb: str) -> str | None:
    """Why ``principal`` may not replace or end the standing watch ``watch_id`` (None: may): the web
    page's rule, ``streams.cohort.watch_refusal``. No such active watch: may."""
    if principal.has("steward"):  # reads no topic
        return None
    from radstream.cli.retrieve import registered_project
    from streams.cohort import WatchRegistry, watch_refusal

    watches = WatchRegistry(settings.kafka, settings.topics)
    watches.start()
    loaded = watches.loaded.wait(15)
    watches.stop()
    if not loaded:
        return "the watches topic could not be read: try again, or ask a steward"
    w = next((w for w in watches.current() if w.watch_id == watch_id), None)
    if w is None:
        return None
    _, registered = registered_project(settings, w.project_id, None)
    return watch_refusal(principal, w.project_id, None if registered is None else registered.identified,
                         w.requester, verb, f"watch {watch_id!r}")


@click.command("watch")
@click.option("--project", required=True, help="A registered project (radstream project add).")
@click.option("--destination", required=True, help="Destination AE (must be on the allow-list).")
@click.option("--rule", "rule_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Rule file (JSON): modality, body_region, status, finding, assessment, after, before.")
@click.option("--requester", default=None, help="Recorded with every request (default: the command's user).")
@click.option("--id", "watch_id", default=None, help="Watch id (default: generated).")
@click.pass_context
def watch(ctx: click.Context, project: str, destination: str, rule_file: str, requester: str | None,
          watch_id: str | None) -> None:
    """Register criteria once; every new report version that meets them becomes a retrieval request.

    The command's user (``RADSTREAM_TOKEN``, else the token store's owner) needs the analyst or steward
    role, the project must be registered (and active, and deliver to this destination), and only a
    steward may watch for an identified project, as on the web page. The watch carries the user's roles
    into every request it makes (the DICOM worker checks them again). Audited as ``cohort.watch``,
    refusals too."""
    from processors.cohort import RuleError
    from radstream.access import authorise, done
    from radstream.cli.retrieve import registered_project
    from streams.auth import AuthError
    from streams.cohort import DestinationNotAllowed, publish_watch, watch_record

    settings = settings_of(ctx)
    fields = {"project": project, "destination": destination}
    try:
        principal, target = authorise(settings, "cohort.watch", WATCHERS, **fields)
    except AuthError as exc:
        raise click.ClickException(f"cohort watch refused: {exc.reason}") from None
    allowed = settings.research.allowed_destinations
    if destination not in allowed:
        _refused(target, principal, "cohort.watch",
                 f"destination {destination!r} is not on the allow-list ({', '.join(allowed)})", **fields)
    why, registered = registered_project(settings, project, destination)
    if why is None and registered is not None and registered.identified and not principal.has("steward"):
        why = f"project {project!r} receives identified images: only a steward may send studies to it"
    if why is None and requester and requester != principal.user and not principal.has("steward"):
        why = f"only a steward may subscribe a watch in another's name ({requester!r})"
    if why is None and watch_id:  # the same id replaces the watch standing there (compacted topic)
        why = _taken_by_another(settings, principal, watch_id, "replace")
    if why:
        _refused(target, principal, "cohort.watch", why, **fields)
    try:
        rec = watch_record(settings.research.allowed_destinations, project, destination,
                           requester or principal.user, rule_file, watch_id, sorted(principal.roles))
    except (RuleError, DestinationNotAllowed) as exc:
        _refused(target, principal, "cohort.watch", str(exc), **fields)
    publish_watch(settings.kafka, settings.topics, rec)
    done(target, principal, "cohort.watch", watch_id=rec["watch_id"], **fields)
    click.echo(f"watching {rec['watch_id']}: project {project} -> {destination}")


@click.command("unwatch")
@click.argument("watch_id")
@click.pass_context
def unwatch(ctx: click.Context, watch_id: str) -> None:
    """End a standing cohort (requests already made are not cancelled).

    A steward may end any watch; an analyst only one they subscribed, and never one of an identified
    project, as on the web page. Audited as ``cohort.unwatch``, refusals too."""
    from radstream.access import authorise, done
    from streams.auth import AuthError
    from streams.cohort import publish_watch

    settings = settings_of(ctx)
    try:
        principal, target = authorise(settings, "cohort.unwatch", WATCHERS, watch_id=watch_id)
    except AuthError as exc:
        raise click.ClickException(f"cohort unwatch refused: {exc.reason}") from None
    why = _taken_by_another(settings, principal, watch_id, "end")
    if why:
        _refused(target, principal, "cohort.unwatch", why, watch_id=watch_id)
    publish_watch(settings.kafka, settings.topics, {
        "watch_id": watch_id, "project_id": "", "destination_ae": "", "requester": "", "rule": "{}",
        "active": False, "time": datetime.now(UTC)})
    done(target, principal, "cohort.unwatch", watch_id=watch_id)
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
