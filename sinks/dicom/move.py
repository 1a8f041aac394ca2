"""C-MOVE at STUDY level, or of listed instances at IMAGE level (PS3.4 C.4.2), with every response checked.

A move is a success only when the final status is 0x0000 and no sub-operation failed
or ended with a warning. An empty status (DIMSE timeout, aborted association) is a
failure. Orthanc aborts a whole C-MOVE at the first refused image and then reports zero
counters: we keep the last pending counts so the caller can tell what had arrived.

With ``Pacs.fast_move`` (``pacs.fast_move``, default on) the request and its responses go over the
association's socket directly (``sinks.dicom.wire.scu``); otherwise, when the installed pynetdicom fails
the self-check (``sinks.dicom.wire.compat``), and whenever that path cannot take the association, through
pynetdicom's ``send_c_move``. Both give the same statuses and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove  # type: ignore[attr-defined]

from sinks.dicom.find import Pacs
from sinks.dicom.net import NODELAY_HANDLERS, make_ae
from sinks.dicom.wire import compat
from sinks.dicom.wire.scu import PENDING, MoveRsp, start_move

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


def _pynetdicom_responses(assoc: Any, ds: Dataset, destination_ae: str) -> Iterator[MoveRsp]:
    """pynetdicom's ``send_c_move``, as MoveRsp values (status None: an empty status data set)."""

    def get(status: Dataset, name: str) -> int | None:
        v = status.get(name, None)
        return None if v in (None, "") else int(v)

    for status, _ident in assoc.send_c_move(ds, destination_ae, StudyRootQueryRetrieveInformationModelMove):
        if not status:
            yield MoveRsp(None)
            return
        yield MoveRsp(int(status.Status), get(status, "NumberOfRemainingSuboperations"),
                      get(status, "NumberOfCompletedSuboperations"),
                      get(status, "NumberOfFailedSuboperations"), get(status, "NumberOfWarningSuboperations"))


def _identifier(study_uid: str, series_uid: str = "", sop_uids: Sequence[str] = ()) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE" if sop_uids else "STUDY"
    ds.StudyInstanceUID = study_uid
    if sop_uids:
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = list(sop_uids)  # a list of UIDs (PS3.4 C.4.2.2.1)
    return ds


def _responses(assoc: Any, ds: Dataset, destination_ae: str, fast: bool) -> Iterator[MoveRsp]:
    if fast and compat.usable("scu"):  # else plain pynetdicom: it lacks what the direct path reaches into
        direct = start_move(assoc, ds, destination_ae, StudyRootQueryRetrieveInformationModelMove)
        if direct is not None:
            return direct.responses()
    return _pynetdicom_responses(assoc, ds, destination_ae)


def c_move_study(pacs: Pacs, destination_ae: str, study_uid: str,
                 on_pending: Callable[[MoveResult], None] | None = None, assoc: Any = None) -> MoveResult:
    """Move one study; ``assoc``: an established association with the Move context to use (and leave
    open), else one is opened and released here."""
    return _c_move(pacs, destination_ae, _identifier(study_uid), on_pending, assoc)


def c_move_instances(pacs: Pacs, destination_ae: str, study_uid: str, series_uid: str,
                     sop_uids: Sequence[str], on_pending: Callable[[MoveResult], None] | None = None,
                     assoc: Any = None) -> MoveResult:
    """Move some instances of one series: an IMAGE-level C-MOVE (PS3.4 C.4.2.2.1: the unique keys of the
    levels above, Study and Series Instance UID, and the list of SOP Instance UIDs). ``assoc`` as for
    ``c_move_study``. A long list makes a large identifier, which pynetdicom sends in fragments."""
    if not sop_uids:
        raise ValueError("c_move_instances needs at least one SOP Instance UID")
    return _c_move(pacs, destination_ae, _identifier(study_uid, series_uid, sop_uids), on_pending, assoc)


def _c_move(pacs: Pacs, destination_ae: str, identifier: Dataset,
            on_pending: Callable[[MoveResult], None] | None, assoc: Any) -> MoveResult:
    own = assoc is None
    if assoc is None:
        ae = make_ae(pacs.calling_ae, pacs.acse_timeout_s, pacs.dimse_timeout_s, pacs.dimse_timeout_s)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title, evt_handlers=NODELAY_HANDLERS)
        if assoc.is_rejected:
            return MoveResult("failed", error=f"C-MOVE association rejected by {pacs.ae_title}",
                              retriable=False)
        if not assoc.is_established:
            return MoveResult("failed", error=f"C-MOVE association to {pacs.ae_title}@{pacs.host}:"
                                              f"{pacs.port} failed (PACS down?)")
    last = MoveResult("failed")
    final: MoveRsp | None = None
    empty = False
    responses = _responses(assoc, identifier, destination_ae, pacs.fast_move)
    try:
        for rsp in responses:
            if rsp.status is None:
                empty = True
                break
            if rsp.status in PENDING:
                last = MoveResult("moving", status=rsp.status, completed=rsp.completed or 0,
                                  failed=rsp.failed or 0, warning=rsp.warning or 0, remaining=rsp.remaining,
                                  pendings=last.pendings + 1)
                if on_pending is not None:
                    on_pending(last)
                continue
            final = rsp
        aborted = assoc.is_aborted
    finally:
        close = getattr(responses, "close", None)
        if close is not None:
            close()
        if own and assoc.is_established:
            assoc.release()
    if empty or final is None or final.status is None:
        why = "aborted association" if aborted else "empty response (timeout or aborted association)"
        return MoveResult("failed", completed=last.completed, failed=last.failed, warning=last.warning,
                          remaining=last.remaining, error=f"C-MOVE: {why}", pendings=last.pendings)
    code = final.status
    c, f, w, r = final.completed or 0, final.failed or 0, final.warning or 0, final.remaining
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
