"""``radstream auth add-user|add-token|revoke|list``: who may call the HTTP endpoints (docs/access.md).

The token store is ``auth.token_file`` (default ``<state_dir>/auth/tokens.json``, mode 0600): only the
OS user who owns the state dir can run these commands, which is what makes them admin commands.
Running servers pick up changes on their next request. Each change is written to the audit log file.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from radstream.cli import settings_of
from radstream.config import Settings
from streams.auth import ROLES, TokenStore

WATCHES_WAIT_S = 30.0
SINK_WAIT_S = 30.0  # for the warehouse to hold every retrieval request on the topic (auth end-requests)


def _store(ctx: click.Context) -> TokenStore:
    from radstream.access import token_store

    return token_store(settings_of(ctx))


def _audit(ctx: click.Context, action: str, **details: object) -> None:
    from radstream.access import record_auth_change

    record_auth_change(settings_of(ctx), action, **details)


@click.group()
def auth() -> None:
    """Users, roles and API tokens of the HTTP endpoints (SQL page, FHIR server)."""


@auth.command("add-user")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES),
              help="Role of the user (repeatable). Re-adding a user replaces its roles.")
@click.pass_context
def add_user(ctx: click.Context, name: str, roles: tuple[str, ...]) -> None:
    """Add (or update) user NAME with its roles. A user who loses a role loses the standing cohorts
    (watches) subscribed with it: they are ended (see ``end-watches``)."""
    store = _store(ctx)
    before = set(store.users().get(name, {}).get("roles", ()))
    try:
        store.add_user(name, roles)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _audit(ctx, "auth.add-user", user=name, roles=sorted(roles))
    click.echo(f"user {name}: {', '.join(sorted(roles))}")
    if before - set(roles) and "admin" not in roles:
        _end_watches(ctx, name)
        from sinks.dicom.worker import STEWARD_ROLES

        if before & set(STEWARD_ROLES) and not set(roles) & set(STEWARD_ROLES):
            _end_requests(ctx, name)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def lifetime(text: str) -> timedelta:
    """``90s``, ``30m``, ``8h`` or ``7d`` as a timedelta."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter(f"{text!r}: give a positive number and a unit, e.g. 30m, 8h or 7d")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


@auth.command("add-token")
@click.argument("user")
@click.option("--note", default="", help="What the token is for (shown by `auth list`).")
@click.option("--expires", default=None, metavar="DURATION",
              help="Lifetime of the token, e.g. 30m, 8h or 7d (default: until revoked).")
@click.pass_context
def add_token(ctx: click.Context, user: str, note: str, expires: str | None) -> None:
    """Create an API token for USER and print it (shown once: only its argon2 hash is kept)."""
    life = lifetime(expires) if expires else None
    store = _store(ctx)
    try:
        token = store.add_token(user, note, expires_in=life)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None
    tid = token.split("_")[1]
    _audit(ctx, "auth.add-token", user=user, token_id=tid, note=note,
           expires=store.tokens()[tid].get("expires", ""))
    click.echo(f"token id {tid} for {user} (send it as 'Authorization: Bearer <token>'):", err=True)
    click.echo(token)


@auth.command("revoke")
@click.argument("what")
@click.pass_context
def revoke(ctx: click.Context, what: str) -> None:
    """Revoke a token (by its id) or a user (all its tokens; the user is disabled)."""
    store = _store(ctx)
    try:
        ids = store.revoke(what)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None
    _audit(ctx, "auth.revoke", what=what, token_ids=ids)
    click.echo(f"revoked {len(ids)} token(s): {', '.join(ids) or '-'}")
    if what in store.users():  # a user (disabled now), not one token: every watch of theirs ends
        _end_watches(ctx, what)
        _end_requests(ctx, what)


@auth.command("end-watches")
@click.argument("user")
@click.pass_context
def end_watches_cmd(ctx: click.Context, user: str) -> None:
    """End USER's standing cohorts (watches) that carry a role USER no longer holds (all of them if USER
    is disabled or unknown). ``add-user`` (when a role is lost) and ``revoke USER`` do this themselves;
    run it again if they could not reach Kafka."""
    _end_watches(ctx, user)


def _end_watches(ctx: click.Context, user: str) -> None:
    settings = settings_of(ctx)
    entry = _store(ctx).users().get(user)
    held = None if entry is None or entry.get("disabled") else set(entry.get("roles", ()))
    try:
        ended = end_watches(settings, user, held)
    except TimeoutError as exc:
        raise click.ClickException(f"{exc}: {user}'s standing cohorts may still be running with roles "
                                   f"{user} no longer holds; run `radstream auth end-watches {user}` "
                                   f"(and `radstream auth end-requests {user}` if they lost steward) "
                                   "once Kafka is reachable") from None
    _audit(ctx, "auth.end-watches", user=user, roles=None if held is None else sorted(held),
           watch_ids=ended)
    if ended:
        click.echo(f"ended {len(ended)} standing cohort(s) of {user}: {', '.join(ended)}")


@contextlib.contextmanager
def _read_whole(registry: Any, what: str, topic: str) -> Iterator[None]:
    """A replaying view (``WatchRegistry``, ``ProjectRegistry``) started and read to the end of its topic,
    stopped afterwards; TimeoutError when it is not read within ``WATCHES_WAIT_S``."""
    registry.start()
    try:
        if not registry.loaded.wait(WATCHES_WAIT_S):
            raise TimeoutError(f"the {what} (topic {topic}) were not read within {WATCHES_WAIT_S:.0f} s")
        yield
    finally:
        registry.stop()


def end_watches(settings: Settings, user: str, held: set[str] | None) -> list[str]:
    """End (the web app's unsubscribe record) every active watch subscribed by ``user`` whose recorded
    roles include one ``held`` lacks (``held`` None: the user is disabled, every watch of theirs).

    A watch's roles are its subscriber's when it was subscribed, and every request it makes carries them
    (the DICOM worker trusts them): a demoted or revoked steward's watch must not go on sending studies
    to an identified project in their name. A watch that records no roles is refused for an identified
    project anyway and is left alone unless the user is disabled. Returns the ended watch ids;
    TimeoutError when the watches topic cannot be read."""
    from radstream.web.standing import unsubscribe
    from streams.cohort import WatchRegistry

    registry = WatchRegistry(settings.kafka, settings.topics)
    with _read_whole(registry, "standing cohorts", settings.topics.cohort_watches):
        watches = [w for w in registry.current() if w.requester == user]

    def beyond(roles: tuple[str, ...] | None) -> bool:
        if held is None:
            return True
        return "admin" not in held and any(r not in held for r in roles or ())

    ended = sorted(w.watch_id for w in watches if beyond(w.requester_roles))
    for watch_id in ended:
        unsubscribe(settings, watch_id)
    return ended


@auth.command("end-requests")
@click.argument("user")
@click.pass_context
def end_requests_cmd(ctx: click.Context, user: str) -> None:
    """Cancel USER's open retrieval requests for projects that are identified now, unless USER still
    holds steward. ``add-user`` (when steward is lost) and ``revoke USER`` do this themselves; run it
    again if they could not reach Kafka or the warehouse, or for a request USER made moments before
    (one the warehouse had not received yet)."""
    from sinks.dicom.worker import STEWARD_ROLES

    entry = _store(ctx).users().get(user)
    if entry is not None and not entry.get("disabled") and set(entry.get("roles", ())) & set(STEWARD_ROLES):
        raise click.UsageError(f"{user} holds steward: their requests stand (cancel one with "
                               "`radstream retrieve cancel`)")
    _end_requests(ctx, user)


def _end_requests(ctx: click.Context, user: str) -> None:
    """``end_requests`` for the commands, audited (``auth.end-requests``) whatever its outcome."""
    from confluent_kafka import KafkaException

    from streams.topics import KafkaUnavailable

    settings = settings_of(ctx)
    again = (f"{user}'s requests for identified projects may still run; run `radstream auth end-requests "
             f"{user}`")
    cancelled: list[str] = []
    unconfirmed: list[str] = []
    why = ""
    try:
        cancelled, unconfirmed = end_requests(settings, user)
        if unconfirmed:
            why = f"Kafka did not confirm the cancel of {', '.join(unconfirmed)}"
    except (TimeoutError, KafkaException, KafkaUnavailable) as exc:
        why = f"{exc}"
    except click.ClickException as exc:  # the warehouse could not be read
        why = exc.message
    _audit(ctx, "auth.end-requests", user=user, request_ids=cancelled, allowed=not why,
           **({"reason": why} if why else {}))
    if cancelled:
        click.echo(f"cancelled {len(cancelled)} open request(s) of {user} for identified projects: "
                   f"{', '.join(cancelled)}")
    if why:
        raise click.ClickException(f"{why}: {again} once that is mended")


def end_requests(settings: Settings, user: str) -> tuple[list[str], list[str]]:
    """Cancel every open retrieval request (warehouse: no final state, no cancel yet) that names ``user``
    as requester, for a project registered as identified now. An identified project's request names the
    steward who made it and carries their roles, which the DICOM worker trusts when it runs (it has no
    token store to ask, sinks.dicom.worker.requester_refusal): so a steward demoted or revoked must not
    leave requests behind that would still send identified images. De-identified projects' requests
    stand (any role may make them). Each cancel is audited (``retrieval.cancel``, by ``auth``). Returns
    (the ids cancelled, the ids whose cancel Kafka did not confirm); TimeoutError when the projects
    topic cannot be read, click.ClickException when the warehouse cannot."""
    from radstream.access import audit_target
    from radstream.cli.retrieve import cancelable, send_cancels
    from sinks.dicom.projects import ProjectRegistry
    from streams.auth import local_user
    from streams.topics import group_lag

    registry = ProjectRegistry(settings.kafka, settings.topics)
    with _read_whole(registry, "projects", settings.topics.projects):
        identified = {p.project_id for p in registry.all() if p.identified}
    if not identified:  # nothing to look up (and a site without any needs no warehouse for this)
        return [], []
    # the warehouse must hold every request already on the topic: the sink's group has committed them
    group, deadline = f"{settings.kafka.consumer_group}.clickhouse-sink", time.monotonic() + SINK_WAIT_S
    while (behind := group_lag(settings.kafka, group, settings.topics.retrieval_requests)) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warehouse has not received {behind} record(s) of the retrieval requests "
                               f"topic within {SINK_WAIT_S:.0f} s (is the worker's sink, group {group}, "
                               "running?)")
        time.sleep(0.5)
    reqs = sorted((r for r in cancelable(settings, (), None, user).values() if r["project_id"] in identified),
                  key=lambda r: r["request_id"])
    confirmed, _ = send_cancels(settings, audit_target(settings), local_user(), reqs, by=lambda _r: "auth",
                                reason=f"{user} no longer holds steward")
    ids = [r["request_id"] for r in reqs]
    return [i for i in ids if i in confirmed], [i for i in ids if i not in confirmed]


@auth.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Users with their roles, and tokens (id, user, created, state, note); never a secret."""
    store = _store(ctx)
    for name, user in sorted(store.users().items()):
        state = " (disabled)" if user.get("disabled") else ""
        click.echo(f"user\t{name}\t{','.join(user.get('roles', []))}{state}")
    for tid, tok in sorted(store.tokens().items(), key=lambda kv: kv[1]["created"]):
        state = f"revoked {tok['revoked']}" if tok.get("revoked") else "active"
        if not tok.get("revoked") and tok.get("expires"):
            expired = datetime.fromisoformat(tok["expires"]) <= datetime.now(UTC)
            state = f"{'expired' if expired else 'expires'} {tok['expires']}"
        click.echo(f"token\t{tid}\t{tok['user']}\t{tok['created']}\t{state}\t{tok.get('note', '')}")
