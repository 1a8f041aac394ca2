"""``radstream auth add-user|add-token|revoke|list``: who may call the HTTP endpoints (docs/access.md).

The token store is ``auth.token_file`` (default ``<state_dir>/auth/tokens.json``, mode 0600): only the
OS user who owns the state dir can run these commands, which is what makes them admin commands.
Running servers pick up changes on their next request. Each change is written to the audit log file.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from radstream.cli import settings_of
from streams.auth import ROLES, TokenStore


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
    """Add (or update) user NAME with its roles."""
    try:
        _store(ctx).add_user(name, roles)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _audit(ctx, "auth.add-user", user=name, roles=sorted(roles))
    click.echo(f"user {name}: {', '.join(sorted(roles))}")


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
    try:
        ids = _store(ctx).revoke(what)
    except KeyError as exc:
        raise click.UsageError(str(exc.args[0])) from None
    _audit(ctx, "auth.revoke", what=what, token_ids=ids)
    click.echo(f"revoked {len(ids)} token(s): {', '.join(ids) or '-'}")


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
