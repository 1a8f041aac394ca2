"""The audit trail: who did what, when, to which data.

Any process records an event with one call::

    from streams import audit
    audit.record(target, actor, "quarantine.release", project="IRB-1", study="1.2.3")

``target`` is a ``KafkaAudit`` (the ``audit`` topic; the ClickHouse sink appends it to the
``audit_log`` table), anything else with an ``emit(event)`` method, or None. Every event also goes to
the ``radstream.audit`` logger (one JSON object a line) and, when configured, to a local audit log file
(mode 0600), so a refused or failed delivery is still on record on the host.

Actions: docs/access.md, "The audit trail", lists each one and the process that records it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Producer

from streams.producer import Deliveries

log = logging.getLogger("radstream.audit")


class AuditTarget(Protocol):
    def emit(self, event: dict[str, Any]) -> None: ...


class KafkaAudit:
    """Audit events to the audit topic (confluent-kafka producer: idempotent, acks=all)."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.sent = Deliveries(producer)

    def emit(self, event: dict[str, Any]) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                log.error("audit event %s not delivered to %s: %s", event["event_id"], self.topic, err)

        self.sent.produce(self.topic, "audit_event", event["actor"].encode(), event, on_delivery=delivered)
        self.producer.poll(0)

    def flush(self, timeout: float = 10.0) -> int:
        """How many events emitted here the topic has not confirmed after up to ``timeout``: still
        queued, or refused (no ACL, no such topic, too large) since the last flush."""
        return self.sent.flush(timeout)


class FileAudit:
    """Audit events appended to a local file, one JSON object a line (mode 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event, default=str, ensure_ascii=False) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The events of a local audit log file (``FileAudit``), as ``event`` built them: the same content,
    so that sending one to the topic again makes the same ``audit_log`` row (ddl/023 keys it on the
    whole content). A line that is not an event (a torn last line after a crash) raises ValueError
    with its line number: the file is evidence, so nothing in it is skipped in silence."""
    events: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
                ev["time"] = datetime.fromisoformat(ev["time"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: not an audit event ({exc})") from None
            events.append(ev)
    return events


class Tee:
    """Several targets; a failing one does not keep the event from the others."""

    def __init__(self, *targets: AuditTarget | None) -> None:
        self.targets = [t for t in targets if t is not None]

    def emit(self, event: dict[str, Any]) -> None:
        for target in self.targets:
            try:
                target.emit(event)
            except Exception:  # the logger has the event; the next target still gets it
                log.exception("audit target %s failed", type(target).__name__)


def event(actor: str, action: str, /, *, allowed: bool = True, project: str = "", query: str = "",
          tables: Iterable[str] = (), rows: int | None = None, duration_ms: float | None = None,
          **details: Any) -> dict[str, Any]:
    """An ``audit_event`` record (schemas/audit_event.avsc)."""
    return {
        "event_id": str(uuid.uuid4()),
        "time": datetime.now(UTC),
        "actor": actor,
        "action": action,
        "allowed": allowed,
        "project": project,
        "query": query,
        "tables": sorted(set(tables)),
        "rows": rows,
        "duration_ms": duration_ms,
        "detail": json.dumps(details, default=str, sort_keys=True) if details else "",
        "host": socket.gethostname(),
        "process": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "",
    }


def record(target: AuditTarget | None, actor: str, action: str, /, **fields: Any) -> dict[str, Any]:
    """Record one audit event (see ``event`` for the fields; other keywords go to ``detail``); returns
    it. Never raises for a failing target: the event is logged first."""
    ev = event(actor, action, **fields)
    log.info("%s", json.dumps(ev, default=str, ensure_ascii=False))
    if target is not None:
        try:
            target.emit(ev)
        except Exception:
            log.exception("audit event %s could not be emitted", ev["event_id"])
    return ev
