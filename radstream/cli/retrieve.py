"""``radstream retrieve``: ask for one study to be moved to a research destination."""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from radstream.cli import settings_of
from radstream.config import Settings
from radstream.retrieval import research_ids
from radstream.text_deid import research_key

if TYPE_CHECKING:
    from sinks.dicom.projects import Project


def registered_project(settings: Settings, project: str,
                       destination: str | None) -> tuple[str | None, Project | None]:
    """(why a retrieval for ``project`` to ``destination`` is refused or None, its registration), read
    once from the projects topic."""
    from sinks.dicom.projects import ProjectRegistry, refusal

    registry = ProjectRegistry(settings.kafka, settings.topics)
    try:
        return refusal(registry, project, destination), registry.get(project)
    finally:
        registry.stop()


def refused(settings: Settings, why: str, /, **fields: Any) -> str:
    """Audit a refused ``retrieval.request`` of this command (allowed false, the reason, ``fields``) and
    return ``why`` for the error to raise. The actor is the command's user (``RADSTREAM_TOKEN``, else the
    token store's owner), or the OS user (``os:<name>``) when that cannot be told: a de-identified
    project's request needs no token, and its refusal is on record all the same."""
    from radstream.access import audit_target, cli_principal, flush_audit
    from streams import audit
    from streams.auth import AuthError, local_user

    try:
        actor = cli_principal(settings).user
    except (AuthError, OSError):
        actor = local_user()
    target = audit_target(settings)
    audit.record(target, actor, "retrieval.request", allowed=False, reason=why, **fields)
    flush_audit(target)
    return why


def request_checked(settings: Settings, project: str, destination: str, requester: str | None,
                    /, **fields: Any) -> tuple[str, list[str] | None]:
    """-> (requester, requester_roles) of a CLI request for ``project`` to ``destination``: the project
    must be registered, active and deliver there, and an identified one takes a steward's requests only
    (``identified_requester``). Every refusal is audited as ``retrieval.request`` (allowed false, the
    reason, ``fields``), then raised (ClickException)."""
    fields = {"project": project, "destination": destination, **fields}
    if requester:
        fields["requester"] = requester
    why, registered = registered_project(settings, project, destination)
    if why:
        raise click.ClickException(refused(settings, why, **fields))
    return identified_requester(settings, registered, requester, **fields)


def identified_requester(settings: Settings, project: Project | None,
                         requester: str | None, /, **fields: Any) -> tuple[str, list[str] | None]:
    """-> (requester, requester_roles) of a CLI request for ``project``.

    Only a steward may send studies to an identified project: for one, the command's principal
    (``RADSTREAM_TOKEN``, else the token store's owner) must hold steward (a refusal is audited as
    ``retrieval.request``, with ``fields``) and the request carries its roles, which the DICOM worker
    checks again when the request runs; it refuses a request for an identified project that carries none.
    A de-identified project's request carries none (any requester may ask; the worker re-checks if the
    project turns identified before it runs); it names ``requester``, else the user of ``RADSTREAM_TOKEN``
    when one is set (so that its user may cancel it: ``retrieve cancel``), else the OS user. An identified
    project's request names its steward: another ``requester`` is refused, or nothing would tie the
    request to the steward who made it (``retrieve cancel --requester``, the audit trail)."""
    from radstream.access import authorise, cli_principal
    from streams.auth import AuthError

    if project is None or not project.identified:
        if requester:
            return requester, None
        if not os.environ.get("RADSTREAM_TOKEN", "").strip():
            return getpass.getuser(), None
        try:
            return cli_principal(settings).user, None
        except (AuthError, OSError) as exc:
            why = exc.reason if isinstance(exc, AuthError) else str(exc)
            raise click.ClickException(refused(settings, why, **fields)) from None
    try:
        principal, _ = authorise(settings, "retrieval.request", ("steward",),
                                 **{"project": project.project_id, **fields})
    except AuthError as exc:
        raise click.ClickException(f"project {project.project_id!r} receives identified images: only a "
                                   f"steward may send studies to it ({exc.reason})") from None
    if requester and requester != principal.user:
        why = (f"project {project.project_id!r} receives identified images: its requests name the steward "
               f"who makes them ({principal.user!r}), not --requester {requester!r}")
        raise click.ClickException(refused(settings, why, **fields))
    return principal.user, sorted(principal.roles)


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.astimezone()


@click.group(invoke_without_command=True, subcommand_metavar="[cancel REQUEST_ID...]")
@click.option("--study-ref", default=None,
              help="The study's encrypted reference (column study_ref of reports_latest): how analysts ask.")
@click.option("--accession", default=None, help="The PACS's accession number (radiology, stewards).")
@click.option("--study-uid", default=None, help="Study Instance UID (instead of or with the accession).")
@click.option("--patient-id", default=None, help="Fallback match key, with --study-date.")
@click.option("--study-date", default=None, help="YYYYMMDD, with --patient-id.")
@click.option("--destination", default=None,
              help="Destination AE title (must be on the allow-list). Required.")
@click.option("--project", default=None, help="A registered project (radstream project add). Required.")
@click.option("--priority", type=click.Choice(["low", "normal", "high"]), default="normal", show_default=True)
@click.option("--not-before", default=None, help="ISO time; the move does not start earlier.")
@click.option("--not-after", default=None, help="ISO time; the request fails if not started by then.")
@click.option("--requester", default=None,
              help="Who asks (default: the user of RADSTREAM_TOKEN, else the OS user; an identified "
                   "project's request names its steward).")
@click.pass_context
def retrieve(ctx: click.Context, study_ref: str | None, accession: str | None, study_uid: str | None,
             patient_id: str | None, study_date: str | None, destination: str | None, project: str | None,
             priority: str, not_before: str | None, not_after: str | None, requester: str | None) -> None:
    """Produce one retrieval request; prints its request id (last word of the output).

    Refused unless the project is registered (and active, and delivers to this destination), and, for an
    identified project, unless the command's user is a steward. A refusal is audited
    (``retrieval.request``, allowed false, with the reason). ``radstream retrieve cancel`` cancels
    requests."""
    from streams.producer import make_producer, produce_sync

    given_any = any(v is not None for v in (study_ref, accession, study_uid, patient_id, study_date,
                                            destination, project, not_before, not_after, requester))
    if ctx.invoked_subcommand is not None:
        if given_any:  # a group's options would be silently dropped: say so
            raise click.UsageError(f"the options of a request do not go with "
                                   f"'retrieve {ctx.invoked_subcommand}'")
        return
    if destination is None or project is None:
        raise click.UsageError("Missing option '--destination' or '--project'")
    settings = settings_of(ctx)
    if not (study_ref or accession or study_uid or (patient_id and study_date)):
        raise click.UsageError("give --study-ref, --accession, --study-uid, "
                               "or --patient-id with --study-date")
    if destination not in settings.research.allowed_destinations:
        raise click.UsageError(refused(
            settings, f"destination {destination!r} is not on the allow-list "
                      f"{list(settings.research.allowed_destinations)}",
            project=project, destination=destination))
    who, roles = request_checked(settings, project, destination, requester)
    given = {"accession": accession, "study_instance_uid": study_uid, "patient_id": patient_id,
             "study_date": study_date, "study_ref": study_ref}
    # clinical identifiers go out in research terms, as a cohort's rows do (the worker opens the reference)
    ids = research_ids(research_key(settings), settings.ingest.site, {k: v or "" for k, v in given.items()})
    request_id = str(uuid.uuid4())
    record = {
        "request_id": request_id, "action": "request", "project_id": project,
        "requester": who, "requester_roles": roles, **ids, "destination_ae": destination,
        "priority": priority,
        "not_before": _when(not_before), "not_after": _when(not_after), "source": "manual",
        "requested_time": datetime.now(UTC),
    }
    produce_sync(make_producer(settings.kafka), settings.topics.retrieval_requests, "retrieval_requested",
                 request_id, record)
    click.echo(f"retrieval requested: {request_id}")


def cancelable(settings: Settings, ids: tuple[str, ...], project: str | None,
                requester: str | None) -> dict[str, dict[str, str]]:
    """request id -> its project, destination, requester, final state ('' none yet) and the requester of
    a cancel of it already on record ('' none), from the warehouse's ``retrieval_requests`` and
    ``retrieval_events`` (the analysts' tables: any role may read them). By ``ids``, or every request
    of ``project`` / by ``requester`` that has no final state and no cancel yet."""
    from radstream.warehouse import WarehouseError, query_rows, quote
    from sinks.dicom.worker import FINAL

    where = ["action = 'request'"]
    if ids:
        where.append("request_id IN (" + ", ".join(f"'{quote(i)}'" for i in ids) + ")")
    if project is not None:
        where.append(f"project_id = '{quote(project)}'")
    if requester is not None:
        where.append(f"requester = '{quote(requester)}'")
    finals = ", ".join(f"'{s}'" for s in FINAL)
    q = f"""
        SELECT q.request_id, q.project_id, q.destination_ae, q.requester, f.final_state, c.cancelled_by
        FROM (SELECT request_id, project_id, destination_ae, requester FROM retrieval_requests FINAL
              WHERE {' AND '.join(where)}) AS q
        LEFT JOIN (SELECT request_id, argMax(state, time) AS final_state FROM retrieval_events
                   WHERE state IN ({finals}) GROUP BY request_id) AS f ON f.request_id = q.request_id
        LEFT JOIN (SELECT request_id, any(requester) AS cancelled_by FROM retrieval_requests
                   WHERE action = 'cancel' GROUP BY request_id) AS c ON c.request_id = q.request_id"""
    try:
        rows = query_rows(settings, q)
    except (OSError, WarehouseError) as exc:
        raise click.ClickException(f"cannot look the requests up in the warehouse: {exc}") from None
    cols = ("request_id", "project_id", "destination_ae", "requester", "state", "cancelled_by")
    found = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
    if ids:
        return found
    return {k: v for k, v in found.items() if not v["state"] and not v["cancelled_by"]}


def cancel_refusal(user: str, steward: bool, rid: str, req: dict[str, str] | None) -> str | None:
    """Why ``user`` may not cancel request ``rid`` (None: may). A steward (or admin) may cancel any
    request; anyone else only one that names them as its requester (the name the request states). An
    unknown or finished request, or one cancelled already, is
    refused for everyone: the worker would ignore the cancel."""
    if req is None:
        return f"request {rid!r} is not in the warehouse's retrieval_requests (unknown request id)"
    if req["state"]:
        return f"request {rid!r} is {req['state']} already: nothing to cancel"
    if req["cancelled_by"]:
        return f"request {rid!r} was cancelled by {req['cancelled_by']!r} already"
    if not steward and req["requester"] != user:
        return f"request {rid!r} was made by {req['requester']!r}: only they or a steward may cancel it"
    return None


def send_cancels(settings: Settings, target: Any, user: str, reqs: list[dict[str, str]], /,
                 by: Callable[[dict[str, str]], str], reason: str = "") -> tuple[set[str], Any]:
    """Write a cancel record for each of ``reqs`` (rows of ``cancelable``) as ``user``, and audit each as
    ``retrieval.cancel`` once Kafka confirmed it or did not (``by``: why ``user`` may). -> (the request
    ids whose cancel Kafka confirmed, its last delivery error). The caller flushes nothing: this does."""
    from radstream.access import flush_audit
    from streams import audit
    from streams.producer import Deliveries, make_producer

    confirmed: set[str] = set()

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            confirmed.add(msg.key().decode())

    sent = Deliveries(make_producer(settings.kafka))
    now = datetime.now(UTC)
    for req in reqs:
        # as the worker reads a cancel: the request's id (the record's key: same partition, after the
        # request), project and destination; the canceller as requester (the actor of the sink's audit row)
        record = {"request_id": req["request_id"], "action": "cancel", "project_id": req["project_id"],
                  "requester": user, "destination_ae": req["destination_ae"], "source": "manual",
                  "requested_time": now}
        sent.produce(settings.topics.retrieval_requests, "retrieval_requested", req["request_id"], record,
                     on_delivery=delivered)
    if reqs:
        sent.flush(30)
    for req in reqs:
        ok = req["request_id"] in confirmed
        audit.record(target, user, "retrieval.cancel", allowed=ok,
                     reason=reason if ok else f"failed: Kafka did not confirm the cancel ({sent.last_error})",
                     request_id=req["request_id"], project=req["project_id"],
                     destination=req["destination_ae"], requester=req["requester"], by=by(req))
    flush_audit(target)
    return confirmed, sent.last_error


@retrieve.command("cancel")
@click.argument("request_ids", nargs=-1)
@click.option("--project", default=None,
              help="Cancel every open request of this project (a non-steward's own ones only).")
@click.option("--requester", "by", default=None,
              help="Cancel every open request this name made (a non-steward: their own name only).")
@click.pass_context
def cancel(ctx: click.Context, request_ids: tuple[str, ...], project: str | None, by: str | None) -> None:
    """Cancel retrieval requests: each REQUEST_ID, or every open one of --project and/or --requester.

    A steward (or admin) may cancel any request, anyone else the requests that name them as requester.
    Each is looked up in the warehouse (its project, destination, requester); an unknown id, a finished
    request or one cancelled already is refused. The DICOM worker drops a request that has not started
    and stops a running one before its next study. Every decision is audited (``retrieval.cancel``);
    the refused ones are named and the exit status is 1, the others are cancelled all the same."""
    from radstream.access import audit_target, cli_principal, flush_audit
    from streams import audit
    from streams.auth import AuthError, local_user

    settings = settings_of(ctx)
    if request_ids and (project is not None or by is not None):
        raise click.UsageError("give request ids, or --project / --requester, not both")
    if not (request_ids or project is not None or by is not None):
        raise click.UsageError("give one or more request ids, or --project / --requester")
    target = audit_target(settings)
    action = "retrieval.cancel"
    try:
        principal = cli_principal(settings)
    except (AuthError, OSError) as exc:
        why = exc.reason if isinstance(exc, AuthError) else f"no token: {exc}"
        audit.record(target, local_user(), action, allowed=False, reason=why, request_ids=list(request_ids),
                     project=project or "", requester=by)
        flush_audit(target)
        raise click.ClickException(f"cannot tell who cancels: {why}") from None
    user, steward = principal.user, principal.has("steward")
    if not request_ids and not steward and by is not None and by != user:
        why = f"only a steward may cancel the requests of {by!r}"
        audit.record(target, user, action, allowed=False, reason=why, project=project or "", requester=by)
        flush_audit(target)
        raise click.ClickException(why)
    ids = tuple(dict.fromkeys(request_ids))  # once each
    found = cancelable(settings, ids, project, by if steward or ids else user)
    wanted = ids or tuple(sorted(found))
    allowed: list[dict[str, str]] = []
    refusals: list[str] = []
    for rid in wanted:
        req = found.get(rid)
        refusal = cancel_refusal(user, steward, rid, req)
        if refusal is None and req is not None:
            allowed.append(req)
            continue
        refusals.append(refusal or "")
        audit.record(target, user, action, allowed=False, reason=refusal, request_id=rid,
                     project=req["project_id"] if req else "",
                     **({"destination": req["destination_ae"], "requester": req["requester"]} if req else {}))
    confirmed, error = send_cancels(settings, target, user, allowed,
                                    by=lambda req: "steward" if req["requester"] != user else "requester")
    for req in allowed:
        if req["request_id"] in confirmed:
            click.echo(f"cancel sent for {req['request_id']} (project {req['project_id']}, destination "
                       f"{req['destination_ae']}, requested by {req['requester']})")
    for why in refusals:
        click.echo(f"refused: {why}", err=True)
    if len(confirmed) < len(allowed):
        raise click.ClickException(f"Kafka did not confirm {len(allowed) - len(confirmed)} of {len(allowed)} "
                                   f"cancel(s) ({error}): not cancelled")
    if not wanted:
        click.echo("no open request matches")
    if refusals:
        ctx.exit(1)
