"""Wiring of authentication and audit for the processes (docs/access.md): the token store, the audit
targets (the local audit log file and the audit topic) and TLS of our HTTP endpoints, from Settings."""

from __future__ import annotations

import ssl
from typing import Any

from radstream.config import Settings
from streams.audit import FileAudit, KafkaAudit, Tee
from streams.auth import Gate, TokenStore, local_token, server_ssl_context


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
    local_token(store)
    return Gate(store, audit if audit is not None else audit_target(settings), service=service)


def roles_dir(settings: Settings) -> str:
    from sinks.clickhouse.access import ROLES_DIR

    return settings.auth.roles_dir or str(ROLES_DIR)


def tls(settings: Settings) -> ssl.SSLContext | None:
    return server_ssl_context(settings.auth.tls_cert, settings.auth.tls_key)
