"""C-MOVE at STUDY level, with every response checked.

A move is a success only when the final status is 0x0000 and no sub-operation failed
or ended with a warning. An empty status (DIMSE timeout, aborted association) is a
failure. Orthanc aborts a whole C-MOVE at the first refused image and then reports zero
counters: we keep the last pending counts so the caller can tell what had arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

from sinks.dicom.find import Pacs
from sinks.dicom.net import NODELAY_HANDLERS, make_ae

# Statuses after which a retry cannot help (config problems on the PACS side).
NOT_RETRIABLE = {
    0xA801,  # Refused: move destination unknown
    0xA900,  # Identifier does not match SOP class
    0x0122,  # SOP class not supported
    0x0124,  # Not authorized
}


@dataclass
class MoveResult:
    outcome: str  # "completed" | "partial" | "failed"
    status: int | None = None  # final DIMSE status (None: no final response)
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None
    error: str | None = None
    retriable: bool = True
    pendings: int = 0


def _counts(status: Dataset) -> tuple[int, int, int, int | None]:
    def get(name: str) -> int | None:
        v = status.get(name, None)
        return None if v in (None, "") else int(v)

    return (get("NumberOfCompletedSuboperations") or 0, get("NumberOfFailedSuboperations") or 0,
            get("NumberOfWarningSuboperations") or 0, get("NumberOfRemainingSuboperations"))


def c_move_study(pacs: Pacs, destination_ae: str, study_uid: str,
                 on_pending: Callable[[MoveResult], None] | None = None) -> MoveResult:
    ae = make_ae(pacs.calling_ae, pacs.acse_timeout_s, pacs.dimse_timeout_s, pacs.dimse_timeout_s)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title, evt_handlers=NODELAY_HANDLERS)
    if assoc.is_rejected:
        return MoveResult("failed", error=f"C-MOVE association rejected by {pacs.ae_title}", retriable=False)
    if not assoc.is_established:
        return MoveResult("failed", error=f"C-MOVE association to {pacs.ae_title}@{pacs.host}:{pacs.port} "
                                          "failed (PACS down?)")
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    last = MoveResult("failed")
    final: Dataset | None = None
    empty = False
    try:
        responses = assoc.send_c_move(ds, destination_ae, StudyRootQueryRetrieveInformationModelMove)
        for status, _ident in responses:
            if not status:
                empty = True
                break
            code = int(status.Status)
            c, f, w, r = _counts(status)
            if code in (0xFF00, 0xFF01):
                last = MoveResult("moving", status=code, completed=c, failed=f, warning=w, remaining=r,
                                  pendings=last.pendings + 1)
                if on_pending is not None:
                    on_pending(last)
                continue
            final = status
        aborted = assoc.is_aborted
    finally:
        if assoc.is_established:
            assoc.release()
    if empty or final is None:
        why = "aborted association" if aborted else "empty response (timeout or aborted association)"
        return MoveResult("failed", completed=last.completed, failed=last.failed, warning=last.warning,
                          remaining=last.remaining, error=f"C-MOVE: {why}", pendings=last.pendings)
    code = int(final.Status)
    c, f, w, r = _counts(final)
    if code == 0x0000 and f == 0 and w == 0:
        return MoveResult("completed", status=code, completed=c, remaining=0, pendings=last.pendings)
    if code in (0x0000, 0xB000) or (code & 0xF000) == 0xB000:
        # Sub-operations done, some failed or with warnings.
        return MoveResult("partial", status=code, completed=c, failed=f, warning=w, remaining=r,
                          error=f"C-MOVE finished with {f} failed and {w} warning sub-operations",
                          pendings=last.pendings)
    # Failure or cancel. Orthanc reports zeros here: keep the larger (last pending) counts.
    if c == 0 and f == 0 and w == 0:
        c, f, w, r = last.completed, last.failed, last.warning, last.remaining
    return MoveResult("failed", status=code, completed=c, failed=f, warning=w, remaining=r,
                      error=f"C-MOVE failed with status 0x{code:04X}", retriable=code not in NOT_RETRIABLE,
                      pendings=last.pendings)
