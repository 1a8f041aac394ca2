"""Wiring of authentication and audit for the processes (docs/access.md): the token store, the audit
targets (the local audit log file and the audit topic) and TLS of our HTTP endpoints, from Settings."""

from __future__ import annotations

import logging
import ssl
from datetime import datetime
from typing import Any

from radstream.config import Settings
from streams import audit
from streams.audit import FileAudit, KafkaAudit, Tee
from streams.auth import AuthError, Gate, Principal, TokenStore, client_token, local_token, server_ssl_context

log = logging.getLogger("radstream.access")


def token_store(settings: Settings) -> TokenStore:
    return TokenStore(settings.auth.token_file, cache_s=settings.auth.cache_s)


def audit_target(settings: Settings, producer: Any = None) -> Tee:
    """The local audit log file and the audit topic (through ``producer``, default a new one)."""
    from streams.producer import make_producer

    kafka = KafkaAudit(producer or make_producer(settings.kafka), settings.topics.audit)
    return Tee(FileAudit(settings.auth.audit_log), kafka)


def gate(settings: Settings, service: str, audit: Any = None) -> Gate:
    """The authentication gate of one HTTP endpoint. Makes sure the local admin token exists, so that
    local commands (``radstream sql`` ...) can reach it (streams.auth.local_token)."""
    store = token_store(settings)
    local_token(store, settings.auth.audit_log)
    return Gate(store, audit if audit is not None else audit_target(settings), service=service)


def record_auth_change(settings: Settings, action: str, **details: Any) -> None:
    """A change of the token store by the OS user (``radstream auth``, ``make demo``'s sign-in), in the
    local audit log file."""
    from streams.auth import local_user

    audit.record(FileAudit(settings.auth.audit_log), local_user(), action, **details)


def roles_dir(settings: Settings) -> str:
    from sinks.clickhouse.access import ROLES_DIR

    return settings.auth.roles_dir or str(ROLES_DIR)


def tls(settings: Settings) -> ssl.SSLContext | None:
    return server_ssl_context(settings.auth.tls_cert, settings.auth.tls_key)


def cli_principal(settings: Settings) -> Principal:
    """Who runs a local command: the user of ``RADSTREAM_TOKEN``, else the OS user who owns the token
    store (its local token, role admin: streams.auth.local_token)."""
    principal = token_store(settings).verify(client_token(settings.auth.token_file, settings.auth.audit_log))
    if principal is None:
        raise AuthError(401, "RADSTREAM_TOKEN is not a valid token (radstream auth add-token)")
    return principal


def authorise(settings: Settings, action: str, roles: tuple[str, ...], /,
              **fields: Any) -> tuple[Principal, Tee]:
    """The principal of a local command that needs one of ``roles``; a refusal is audited, then raised
    (AuthError). The caller audits the action itself once it is done (with the returned target)."""
    target = audit_target(settings)
    user = "?"
    try:
        principal = cli_principal(settings)
        user = principal.user
        principal.require(*roles)
    except AuthError as exc:
        audit.record(target, user, action, allowed=False, reason=exc.reason, **fields)
        flush_audit(target)
        raise
    return principal, target


def done(target: Tee, principal: Principal, action: str, /, **fields: Any) -> None:
    """Audit a completed action of a local command and wait for the audit topic to take it."""
    audit.record(target, principal.user, action, allowed=True, **fields)
    flush_audit(target)


def flush_audit(target: Tee, timeout: float = 10.0) -> int:
    """Wait for the audit topic to take what was recorded (the local file has it already). Returns how
    many events the topic has not confirmed (still queued, or refused by the broker: no ACL, no such
    topic), and says so on the log: a command that waited the whole ``timeout`` for an unreachable
    broker, or whose events were refused, tells its user why, and where the events are kept."""
    targets = getattr(target, "targets", ())
    kafka = [t for t in targets if isinstance(t, KafkaAudit)]
    left = sum(t.flush(timeout) for t in kafka)
    if left:
        files = [str(t.path) for t in targets if isinstance(t, FileAudit)]
        errors = sorted({str(t.sent.last_error) for t in kafka if t.sent.last_error is not None})
        why = f"refused: {'; '.join(errors)}" if errors else "is Kafka reachable?"
        log.warning("%d audit event(s) not confirmed by the audit topic within %g s (%s); "
                    "kept in the local audit log %s", left, timeout, why,
                    ", ".join(files) or "(none configured)")
    return left


def push_local_log(settings: Settings, since: datetime | None = None,
                   timeout: float = 30.0) -> tuple[int, int]:
    """Send the events of this host's local audit log (from ``since``) to the audit topic, for the ones
    the topic never confirmed (docs/access.md). Every event is sent: the warehouse keeps one
    ``audit_log`` row per event content (ddl/023), so the ones it has already collapse into it, and
    nothing needs to remember which were confirmed. Returns (sent, not confirmed, the ``audit.push`` event
    that records the push itself included)."""
    from streams.auth import local_user
    from streams.producer import make_producer

    path = settings.auth.audit_log
    events = [e for e in audit.read_log(path) if since is None or e["time"] >= since]
    kafka = KafkaAudit(make_producer(settings.kafka), settings.topics.audit)
    for ev in events:
        kafka.emit(ev)
    target = Tee(FileAudit(path), kafka)
    audit.record(target, local_user(), "audit.push", rows=len(events), file=str(path),
                 since=since.isoformat() if since else "")
    return len(events), flush_audit(target, timeout)
