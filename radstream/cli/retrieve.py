"""``radstream retrieve``: ask for one study to be moved to a research destination."""

from __future__ import annotations

import getpass
import uuid
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
    project turns identified before it runs)."""
    if project is None or not project.identified:
        return requester or getpass.getuser(), None
    from radstream.access import authorise
    from streams.auth import AuthError

    try:
        principal, _ = authorise(settings, "retrieval.request", ("steward",),
                                 **{"project": project.project_id, **fields})
    except AuthError as exc:
        raise click.ClickException(f"project {project.project_id!r} receives identified images: only a "
                                   f"steward may send studies to it ({exc.reason})") from None
    return requester or principal.user, sorted(principal.roles)


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.astimezone()


@click.command()
@click.option("--study-ref", default=None,
              help="The study's encrypted reference (column study_ref of reports_latest): how analysts ask.")
@click.option("--accession", default=None, help="The PACS's accession number (radiology, stewards).")
@click.option("--study-uid", default=None, help="Study Instance UID (instead of or with the accession).")
@click.option("--patient-id", default=None, help="Fallback match key, with --study-date.")
@click.option("--study-date", default=None, help="YYYYMMDD, with --patient-id.")
@click.option("--destination", required=True, help="Destination AE title (must be on the allow-list).")
@click.option("--project", required=True, help="A registered project (radstream project add).")
@click.option("--priority", type=click.Choice(["low", "normal", "high"]), default="normal", show_default=True)
@click.option("--not-before", default=None, help="ISO time; the move does not start earlier.")
@click.option("--not-after", default=None, help="ISO time; the request fails if not started by then.")
@click.option("--requester", default=None, help="Who asks (default: the OS user).")
@click.pass_context
def retrieve(ctx: click.Context, study_ref: str | None, accession: str | None, study_uid: str | None,
             patient_id: str | None, study_date: str | None, destination: str, project: str, priority: str,
             not_before: str | None, not_after: str | None, requester: str | None) -> None:
    """Produce one retrieval request; prints its request id (last word of the output).

    Refused unless the project is registered (and active, and delivers to this destination), and, for an
    identified project, unless the command's user is a steward. A refusal is audited
    (``retrieval.request``, allowed false, with the reason)."""
    from streams.producer import make_producer, produce_sync

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
