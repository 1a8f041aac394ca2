"""Which project an incoming study belongs to.

A C-MOVE names only a destination AE, so the storage SCP cannot tell the project from the
association. Before each C-MOVE the worker registers the expected Study Instance UID with its
project and request id in ``<research_store>/.expected/<study_uid>.json``; the SCP looks the study
up when its first instance arrives. One file per study, written atomically; the worker removes it
when the request is final. A study is moved for one project at a time (the worker serialises
requests of the same study). Studies nobody registered go to the SCP's default project when one is
configured (manual ``movescu`` use), otherwise they are refused (0x0124 not authorised).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

DIRNAME = ".expected"


@dataclass(frozen=True)
class Expectation:
    study_uid: str
    project_id: str
    request_id: str
    destination_ae: str
    since: float


class Registry:
    def __init__(self, store_dir: Path) -> None:
        self.dir = Path(store_dir) / DIRNAME
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, study_uid: str) -> Path:
        return self.dir / f"{study_uid}.json"

    def register(self, study_uid: str, project_id: str, request_id: str, destination_ae: str) -> None:
        data = {"study_uid": study_uid, "project_id": project_id, "request_id": request_id,
                "destination_ae": destination_ae, "since": time.time()}
        tmp = self.dir / f".{study_uid}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path(study_uid))

    def lookup(self, study_uid: str) -> Expectation | None:
        try:
            data = json.loads(self.path(study_uid).read_text())
        except (OSError, ValueError):
            return None
        return Expectation(**data)

    def release(self, study_uid: str, request_id: str) -> None:
        exp = self.lookup(study_uid)
        if exp is not None and exp.request_id == request_id:
            self.path(study_uid).unlink(missing_ok=True)

    # -- what the SCP did with each instance of a request (read by the worker to reconcile) ----------
    def manifest(self, study_uid: str, request_id: str) -> Path:
        return self.dir / f"{study_uid}.{request_id or 'none'}.received"

    def record(self, study_uid: str, request_id: str, sop_uid: str, outcome: str, reason: str = "") -> None:
        """Append one line (original SOP Instance UID, ``stored``/``quarantined``/``failed``, reason).

        Called by the SCP after the outcome is final (a stored file is durably in place). One short
        ``O_APPEND`` write per line, so lines of concurrent writers never interleave. The file lives in
        the clinical zone beside the registrations: it names original UIDs.
        """
        line = json.dumps({"sop": sop_uid, "outcome": outcome, "reason": reason}) + "\n"
        fd = os.open(self.manifest(study_uid, request_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def received(self, study_uid: str, request_id: str) -> dict[str, tuple[str, str]]:
        """Original SOP Instance UID -> (outcome, reason) of a request; the last line of a UID wins."""
        out: dict[str, tuple[str, str]] = {}
        try:
            text = self.manifest(study_uid, request_id).read_text()
        except OSError:
            return out
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            out[str(rec["sop"])] = (str(rec["outcome"]), str(rec.get("reason", "")))
        return out

    def forget(self, study_uid: str, request_id: str) -> None:
        self.manifest(study_uid, request_id).unlink(missing_ok=True)
