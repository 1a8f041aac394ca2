"""Which project an incoming study belongs to.

A C-MOVE names only a destination AE, so the storage SCP cannot tell the project from the
association. Before each C-MOVE the worker registers the expected Study Instance UID with its
project and request id in ``<research_store>/.expected/<study_uid>.json``; the SCP looks the study
up when its first instance arrives. One file per study, written atomically; the worker removes it
when the request is final. A study is moved for one project at a time (the worker serialises
requests of the same study). Studies nobody registered go to the SCP's default project when one is
configured (manual ``movescu`` use; it must be a registered project), otherwise they are refused (0x0124
not authorised).

The registration carries the project's store options (``sinks.dicom.projects.StoreOptions``: identified
or the de-identification options, burned-in risk allowed), so the SCP applies exactly the options of
the request's project. A study UID or request id that is not safe in a file name is refused here
(``sinks.dicom.paths``) before it becomes one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinks.dicom.paths import check_uid, is_token

DIRNAME = ".expected"


@dataclass(frozen=True)
class Expectation:
    study_uid: str
    project_id: str
    request_id: str
    destination_ae: str
    since: float
    options: dict[str, Any] | None = None  # StoreOptions.to_dict() of the project; None: not given


class Registry:
    def __init__(self, store_dir: Path) -> None:
        self.dir = Path(store_dir) / DIRNAME
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, study_uid: str) -> Path:
        return self.dir / f"{check_uid(study_uid, 'Study Instance UID')}.json"

    def register(self, study_uid: str, project_id: str, request_id: str, destination_ae: str,
                 options: dict[str, Any] | None = None) -> None:
        """Expect ``study_uid`` for ``project_id``; ``options``: the project's
        ``StoreOptions.to_dict()`` (without them the SCP looks the project up itself)."""
        data = {"study_uid": study_uid, "project_id": project_id, "request_id": request_id,
                "destination_ae": destination_ae, "since": time.time(), "options": options}
        tmp = self.dir / f".{check_uid(study_uid, 'Study Instance UID')}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path(study_uid))

    def lookup(self, study_uid: str) -> Expectation | None:
        try:
            data = json.loads(self.path(study_uid).read_text())
            return Expectation(**data)
        except (OSError, ValueError, TypeError):
            return None

    def release(self, study_uid: str, request_id: str) -> None:
        exp = self.lookup(study_uid)
        if exp is not None and exp.request_id == request_id:
            self.path(study_uid).unlink(missing_ok=True)

    # -- what the SCP did with each instance of a request (read by the worker to reconcile) ----------
    def manifest(self, study_uid: str, request_id: str) -> Path:
        rid = request_id or "none"
        if not is_token(rid):  # not from our CLI (a uuid): a stable name that is safe
            rid = "h" + hashlib.sha256(rid.encode()).hexdigest()[:32]
        return self.dir / f"{check_uid(study_uid, 'Study Instance UID')}.{rid}.received"

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
