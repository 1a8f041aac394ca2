"""The web app's own state under ``<state_dir>/web`` (0700): the session-signing key and the saved
cohorts (one JSON file, 0600; a cohort is a saved search and its size each time it was counted)."""

from __future__ import annotations

import json
import os
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def session_secret(web_dir: Path) -> str:
    """The key that signs session cookies: created once (0600); a new key signs everyone out."""
    path = web_dir / "session.key"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    if len(text) < 32:
        text = secrets.token_urlsafe(48)
        _write_private(path, text.encode())
    return text


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Cohort:
    cohort_id: str
    name: str
    owner: str
    search: dict[str, str]
    created: str
    sizes: list[tuple[str, int]] = field(default_factory=list)  # (when counted, studies)
    sent: list[dict[str, Any]] = field(default_factory=list)  # retrievals sent: when, project, n
    # standing cohort, one watch per project: project, destination, watch_id, since, by
    watches: list[dict[str, str]] = field(default_factory=list)

    @property
    def size(self) -> int | None:
        return self.sizes[-1][1] if self.sizes else None


class Cohorts:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Cohort]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        out = {}
        for k, v in raw.items():
            v.pop("watch_id", None)  # an earlier file's placeholder, never set
            out[k] = Cohort(**{**v, "sizes": [tuple(s) for s in v.get("sizes", [])]})
        return out

    def _save(self, data: dict[str, Cohort]) -> None:
        _write_private(self.path, json.dumps({k: asdict(v) for k, v in data.items()}, indent=1).encode())

    def all(self) -> list[Cohort]:
        with self._lock:
            return sorted(self._load().values(), key=lambda c: c.created, reverse=True)

    def get(self, cohort_id: str) -> Cohort | None:
        with self._lock:
            return self._load().get(cohort_id)

    def add(self, name: str, owner: str, search: dict[str, str], size: int) -> Cohort:
        with self._lock:
            data = self._load()
            c = Cohort(uuid.uuid4().hex[:12], name, owner, search, now(), [(now(), size)])
            data[c.cohort_id] = c
            self._save(data)
            return c

    def update(self, cohort: Cohort) -> None:
        with self._lock:
            data = self._load()
            data[cohort.cohort_id] = cohort
            self._save(data)
