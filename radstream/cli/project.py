"""``radstream project add|list|show|retire``: research projects as registered objects.

Every project is de-identified (PS3.15 Annex E Basic Profile with the options given here) unless it
is registered ``--identified`` with an ``--irb`` approval or waiver reference. Registrations go to the
compacted projects topic (read by the retrieval worker and the storage SCP) and into the warehouse's
``projects`` table.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from radstream.access import authorise, done
from radstream.cli import kafka_unconfirmed, settings_of

T = TypeVar("T")
ANSWER_S = 3.0  # how long a command waits for Kafka to answer at all before it says so


def _registry(ctx: click.Context) -> Any:
    from sinks.dicom.projects import ProjectRegistry

    settings = settings_of(ctx)
    return ProjectRegistry(settings.kafka, settings.topics)


class KafkaDown(click.ClickException):
    """The projects topic could not be read: nothing was sent."""


class Unconfirmed(KafkaDown):
    """A registration was sent and Kafka did not confirm it (refused, or no answer within the wait)."""


def _read(ctx: click.Context, read: Callable[[Any], T]) -> T:
    """``read`` on the registry once the projects topic is read to its end; KafkaDown when it was not
    within the registry's wait, or at once when Kafka does not answer a metadata request within
    ``ANSWER_S`` (a closed port: not the registry's 15 s wait and its stop); a project missing from a view
    that was never loaded is not "not registered" (``sinks.dicom.projects.unread``)."""
    from sinks.dicom.projects import unread
    from streams.ops import kafka_check

    settings = settings_of(ctx)

    def down(within_s: float) -> KafkaDown:
        return KafkaDown(f"could not read the projects topic from Kafka at {settings.kafka.bootstrap} within "
                         f"{within_s:g} s: is Kafka running and reachable (`radstream stack status` for the "
                         "local stack)? Try again when it is")

    try:
        kafka_check(settings.kafka, ANSWER_S)()
    except Exception:  # noqa: BLE001 - any failure of the request is "Kafka did not answer"
        raise down(ANSWER_S) from None
    registry = _registry(ctx)
    try:
        value = read(registry)
        if unread(registry):
            raise down(registry.load_timeout_s)
        return value
    finally:
        registry.stop()


def _current(ctx: click.Context, project_id: str) -> Any:
    """The project as last registered (ClickException when it is not)."""
    current = _read(ctx, lambda r: r.get(project_id))
    if current is None:
        raise click.ClickException(f"project {project_id} is not registered")
    return current


def _authorise(settings: Any, action: str, roles: tuple[str, ...], /, **fields: Any) -> Any:
    from streams.auth import AuthError

    try:
        return authorise(settings, action, roles, **fields)
    except AuthError as exc:
        raise click.ClickException(f"not allowed: {exc.reason}") from None


def _refuse(target: Any, principal: Any, action: str, reason: str, /, **fields: Any) -> click.ClickException:
    """Audit a refused action of an authorised user (allowed false, with the reason; as
    ``radstream.access.authorise`` does for a missing role) and return the error to raise."""
    from radstream.access import flush_audit
    from streams import audit

    audit.record(target, principal.user, action, allowed=False, reason=reason, **fields)
    flush_audit(target)
    return click.ClickException(reason)


def _failed(target: Any, principal: Any, action: str, what: str, exc: click.ClickException, /,
            **fields: Any) -> click.ClickException:
    """Audit an allowed user's attempt that failed (Kafka did not answer) as ``dicom quarantine`` does:
    allowed false, ``failed: <why>``; the error to raise says that ``what`` did not happen. The audit
    topic is on the same Kafka: its wait is short (the event is in the local audit log either way, for
    ``radstream audit push``)."""
    from radstream.access import flush_audit
    from streams import audit

    audit.record(target, principal.user, action, allowed=False, reason=f"failed: {exc.message}", **fields)
    flush_audit(target, timeout=2.0)
    if isinstance(exc, Unconfirmed):  # it may still have arrived (sent, the confirmation lost)
        what = f"{what.replace(' was not ', ' may not be ')} (`radstream project show` tells)"
    return KafkaDown(f"{what}: {exc.message}")


def _as_dict(project: Any) -> dict[str, Any]:
    rec: dict[str, Any] = project.record()
    rec["time"] = project.time.isoformat()
    return rec


@click.group()
def project() -> None:
    """Register and list research projects (de-identified unless registered as identified)."""


@project.command("add")
@click.argument("project_id")
@click.option("--destination", required=True, help="Destination AE of its images (on the allow-list).")
@click.option("--owner", required=True, help="Who is responsible for the project (PI).")
@click.option("--identified", is_flag=True, help="Store images as received (needs --irb).")
@click.option("--irb", "irb_reference", default="", help="IRB approval or waiver reference.")
@click.option("--no-modified-dates", is_flag=True,
              help="Leave out Retain Longitudinal Temporal Information with Modified Dates (113107).")
@click.option("--retain-patient-characteristics", is_flag=True, help="Option 113108.")
@click.option("--retain-device-identity", is_flag=True, help="Option 113109.")
@click.option("--retain-uids", is_flag=True, help="Option 113110 (UIDs are kept, not remapped).")
@click.option("--clean-descriptors", is_flag=True, help="Option 113105.")
@click.option("--keep-private", multiple=True, help="A private attribute to keep (safe list); repeatable.")
@click.option("--allow-burned-in-risk", is_flag=True,
              help="Store ultrasound, secondary capture, photographs, ... instead of quarantining them.")
@click.option("--replace", is_flag=True, help="Re-register an existing project with these settings.")
@click.option("--reason", default="", help="Why it is registered or changed (kept with the registration and "
                                           "in its audit entry).")
@click.pass_context
def add(ctx: click.Context, project_id: str, destination: str, owner: str, identified: bool,
        irb_reference: str, no_modified_dates: bool, retain_patient_characteristics: bool,
        retain_device_identity: bool, retain_uids: bool, clean_descriptors: bool,
        keep_private: tuple[str, ...], allow_burned_in_risk: bool, replace: bool, reason: str) -> None:
    """Register a project (the steward role: ``RADSTREAM_TOKEN``, else the local admin). Every
    registration, and every refused one, is audited (``project.register``)."""
    from sinks.dicom.deid import DeidOptions
    from sinks.dicom.projects import Project, ProjectError, validate

    settings = settings_of(ctx)
    deid = DeidOptions(retain_modified_dates=not no_modified_dates,
                       retain_patient_characteristics=retain_patient_characteristics,
                       retain_device_identity=retain_device_identity, retain_uids=retain_uids,
                       clean_descriptors=clean_descriptors, private_safe_list=tuple(keep_private))
    principal, target = _authorise(settings, "project.register", ("steward",), project=project_id,
                                   identified=identified)
    proj = Project(project_id=project_id, destination_ae=destination, owner=owner,
                   registered_by=principal.user, identified=identified,
                   irb_reference=irb_reference.strip(), deid=deid, allow_burned_in_risk=allow_burned_in_risk)
    fields = {"project": project_id, "identified": identified, "irb": proj.irb_reference,
              "destination": destination, "owner": owner, "why": reason.strip()}
    try:
        validate(proj, settings.research.allowed_destinations)
    except ProjectError as exc:
        raise _refuse(target, principal, "project.register", str(exc), **fields) from exc
    not_done = f"project {project_id} was not registered"
    try:
        registered = not replace and _read(ctx, lambda r: r.get(project_id)) is not None
        if not registered:
            _publish(settings, proj, reason)
    except KafkaDown as exc:
        raise _failed(target, principal, "project.register", not_done, exc, **fields) from None
    if registered:
        raise _refuse(target, principal, "project.register",
                      f"project {project_id} is registered already (--replace to change it)", **fields)
    done(target, principal, "project.register", **fields)
    kind = f"IDENTIFIED (IRB {proj.irb_reference})" if identified else "de-identified"
    click.echo(f"registered project {project_id}: {kind}, destination {destination}, owner {owner}")


def _publish(settings: Any, proj: Any, reason: str) -> None:
    """``sinks.dicom.projects.publish`` with the registration's ``reason`` (project_registration v2)."""
    from streams.producer import DeliveryError, make_producer, produce_sync

    try:
        produce_sync(make_producer(settings.kafka), settings.topics.projects, "project_registration",
                     proj.project_id.encode(), {**proj.record(), "reason": reason.strip() or None})
    except DeliveryError as exc:
        raise Unconfirmed(kafka_unconfirmed(settings, exc)) from None


@project.command("retire")
@click.argument("project_id")
@click.option("--reason", default="", help="Why it is retired (kept with the registration and in its audit "
                                           "entry).")
@click.pass_context
def retire(ctx: click.Context, project_id: str, reason: str) -> None:
    """Retire a project: its retrievals are refused from now on (its history stays in the warehouse)."""
    from datetime import UTC, datetime

    settings = settings_of(ctx)
    principal, target = _authorise(settings, "project.retire", ("steward",), project=project_id)
    not_done = f"project {project_id} was not retired"
    try:
        current = _current(ctx, project_id)
        _publish(settings, dataclasses.replace(current, active=False, registered_by=principal.user,
                                               time=datetime.now(UTC)), reason)
    except KafkaDown as exc:
        raise _failed(target, principal, "project.retire", not_done, exc, project=project_id) from None
    except click.ClickException as exc:
        raise _refuse(target, principal, "project.retire", exc.message, project=project_id) from None
    done(target, principal, "project.retire", project=project_id, why=reason.strip())
    click.echo(f"retired project {project_id}")


@project.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """The registered projects (as last registered)."""
    projects = _read(ctx, lambda r: r.all())
    for p in projects:
        if as_json:
            click.echo(json.dumps(_as_dict(p)))
            continue
        kind = f"identified (IRB {p.irb_reference})" if p.identified else "de-identified"
        state = "" if p.active else " RETIRED"
        click.echo(f"{p.project_id}\t{kind}\t{p.destination_ae}\t{p.owner}\t{p.registered_by}{state}")


@project.command("show")
@click.argument("project_id")
@click.pass_context
def show(ctx: click.Context, project_id: str) -> None:
    """One project's registration (JSON)."""
    click.echo(json.dumps(_as_dict(_current(ctx, project_id)), indent=2))
