"""C-FIND (Study Root, PS3.4 C.4.1, C.6.2): studies at STUDY level (accession first, patient id + study
date as fallback), and the instances of a study at IMAGE level (the list the worker reconciles against)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from sinks.dicom.config import PacsConfig
from sinks.dicom.header import Header, read_header
from sinks.dicom.net import NODELAY_HANDLERS, make_ae
from sinks.dicom.wire import compat

LOG = logging.getLogger(__name__)


class DicomError(RuntimeError):
    """A DIMSE exchange that did not end in success.

    ``retriable`` is False for errors that a retry cannot fix (e.g. unknown move destination).
    """

    def __init__(self, message: str, status: int | None = None, retriable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retriable = retriable


@dataclass(frozen=True)
class Pacs:
    ae_title: str
    host: str
    port: int
    calling_ae: str
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 120.0
    fast_move: bool = True  # C-MOVE responses read directly from the socket (sinks.dicom.wire.scu)

    @classmethod
    def of(cls, p: PacsConfig) -> Pacs:
        return cls(p.ae_title, p.host, p.port, p.calling_ae, p.acse_timeout_s, p.dimse_timeout_s, p.fast_move)


@dataclass(frozen=True)
class StudyMatch:
    study_instance_uid: str
    accession: str | None = None
    patient_id: str | None = None
    study_date: str | None = None
    modalities: tuple[str, ...] = field(default_factory=tuple)
    instances: int | None = None  # NumberOfStudyRelatedInstances when the PACS returns it


def _query(accession: str | None, patient_id: str | None, study_date: str | None,
           study_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid or ""
    ds.AccessionNumber = accession or ""
    ds.PatientID = patient_id or ""
    ds.StudyDate = study_date or ""
    ds.ModalitiesInStudy = ""
    ds.NumberOfStudyRelatedInstances = ""
    return ds


class PacsSession:
    """One association to the PACS with the C-FIND and C-MOVE contexts, reused for consecutive
    operations (a worker thread's requests back to back): each association costs the PACS and us a
    negotiation and a release, more than a C-FIND itself. ``get()`` (re)opens it when needed; the owner
    ``close()``s it as soon as it has no more work ready, so an idle worker holds no association."""

    def __init__(self, pacs: Pacs) -> None:
        self.pacs = pacs
        self.assoc: Any = None

    def get(self) -> Any:
        """An established association; raises DicomError when the PACS refuses or cannot be reached."""
        if self.assoc is not None and self.assoc.is_established:
            return self.assoc
        self.assoc = None
        pacs = self.pacs
        ae = make_ae(pacs.calling_ae, pacs.acse_timeout_s, pacs.dimse_timeout_s, pacs.dimse_timeout_s)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title, evt_handlers=NODELAY_HANDLERS)
        if assoc.is_rejected:
            raise DicomError(f"association rejected by {pacs.ae_title}", retriable=False)
        if not assoc.is_established:
            raise DicomError(f"association to {pacs.ae_title}@{pacs.host}:{pacs.port} failed (PACS down?)")
        self.assoc = assoc
        return assoc

    def close(self) -> None:
        assoc, self.assoc = self.assoc, None
        if assoc is not None and assoc.is_established:
            assoc.release()


def c_find_studies(pacs: Pacs, *, accession: str | None = None, patient_id: str | None = None,
                   study_date: str | None = None, study_uid: str | None = None,
                   session: PacsSession | None = None) -> list[StudyMatch]:
    """All studies matching the keys; raises DicomError on any non-success outcome.

    With ``session`` the query goes over its association (left open); else over one opened here."""
    if not (accession or study_uid or patient_id):
        raise DicomError("C-FIND needs an accession, a study UID or a patient id", retriable=False)
    query = _query(accession, patient_id, study_date, study_uid)
    return [_match(ident) for ident in c_find(pacs, query, session) if ident.get("StudyInstanceUID")]


def c_find(pacs: Pacs, query: Dataset, session: PacsSession | None = None) -> list[Dataset]:
    """The matching identifiers of one C-FIND (Study Root, PS3.4 C.4.1.3); raises DicomError on any
    outcome other than pending matches followed by success."""
    return [i for i in _c_find(pacs, query, session, quick=False) if isinstance(i, Dataset)]


def _c_find(pacs: Pacs, query: Dataset, session: PacsSession | None, quick: bool) -> list[Dataset | Header]:
    """``c_find``; with ``quick`` the identifiers the direct path receives are read as a ``Header`` (the UIDs,
    straight from the bytes: ``sinks.dicom.header``) where that can, else decoded by pydicom."""
    own = session is None  # a one-off association, released at the end
    active = PacsSession(pacs) if session is None else session
    try:
        assoc = active.get()
    except DicomError as exc:
        raise DicomError(f"C-FIND {exc}", exc.status, exc.retriable) from None
    matches: list[Dataset | Header] = []
    final: int | None = None
    try:
        for code, ident in _find_responses(assoc, query, pacs.fast_move, quick):
            if code is None:  # empty status dataset: timeout, abort or invalid response
                raise DicomError("C-FIND: empty response (timeout or aborted association)")
            if code in (0xFF00, 0xFF01):
                if ident is not None:
                    matches.append(ident)
                continue
            final = code
        if assoc.is_aborted:
            raise DicomError("C-FIND: association aborted")
    finally:
        if own:
            active.close()
    if final is None:
        raise DicomError("C-FIND: no final response")
    if final != 0x0000:
        raise DicomError(f"C-FIND failed with status 0x{final:04X}", status=final,
                         retriable=final in (0xA700, 0xA701, 0xA702))
    return matches


def _level_query(level: str, study_uid: str, series_uid: str = "") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid  # empty: universal matching, returned
    if level == "IMAGE":
        ds.SOPInstanceUID = ""
    else:
        ds.NumberOfSeriesRelatedInstances = ""
    return ds


def _instances(idents: list[Dataset | Header], series_uid: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for ident in idents:
        if isinstance(ident, Header):
            sop, series = ident.sop_instance, ident.series
        else:
            sop = str(ident.get("SOPInstanceUID", "") or "")
            series = str(ident.get("SeriesInstanceUID", "") or "")
        if sop:
            out[sop] = series or series_uid
    return out


def c_find_instances(pacs: Pacs, study_uid: str, expected: int | None = None,
                     session: PacsSession | None = None) -> dict[str, str]:
    """Every instance of a study the PACS lists: {SOP Instance UID: Series Instance UID}.

    First one IMAGE-level query for the whole study (PS3.4 C.4.1, C.6.2: the Study Instance UID, universal
    matching, C.2.2.2.3, on the Series Instance UID). A strictly hierarchical SCP wants a single value for
    every level above IMAGE (C.4.1.3.1.1): when it refuses that query (a failure status), or lists fewer
    instances than its own NumberOfStudyRelatedInstances (``expected``, C.3.4), they are listed the
    hierarchical way: the study's series at SERIES level, then one IMAGE-level query per series. Orthanc
    answers the study-wide query: one round trip per study. Raises DicomError like ``c_find``.
    """
    try:
        listed = _instances(_c_find(pacs, _level_query("IMAGE", study_uid), session, quick=True))
    except DicomError as exc:
        if exc.status is None or exc.status in (0xA700, 0xA701, 0xA702):  # no answer or busy: no fallback
            raise
        LOG.info("study-wide IMAGE-level C-FIND refused (status 0x%04X); listing series by series",
                 exc.status)
        listed = {}
    if listed and (expected is None or len(listed) >= expected):
        return listed
    series = [str(s.SeriesInstanceUID) for s in c_find(pacs, _level_query("SERIES", study_uid), session)
              if s.get("SeriesInstanceUID")]
    for uid in series:
        query = _level_query("IMAGE", study_uid, uid)
        listed.update(_instances(_c_find(pacs, query, session, quick=True), uid))
    return listed


def _find_responses(assoc: Any, query: Dataset, fast: bool,
                    quick: bool = False) -> Iterator[tuple[int | None, Dataset | Header | None]]:
    """(status, matching identifier) of each C-FIND response; status None: none came.

    ``quick``: an identifier received on the direct path is read as a ``Header`` where ``read_header`` can
    (one instance of an IMAGE-level listing costs about a tenth of pydicom's decoding).

    ``fast``: request and responses directly on the socket (``sinks.dicom.wire.scu.DirectFind``);
    otherwise, when the installed pynetdicom fails the self-check (``sinks.dicom.wire.compat``), or when
    that cannot take the association, pynetdicom's ``send_c_find``."""
    if fast and compat.usable("scu"):
        from pynetdicom.dsutils import decode

        from sinks.dicom.wire.scu import start_find

        started = start_find(assoc, query, StudyRootQueryRetrieveInformationModelFind)
        if started is not None:
            direct, ts = started
            for status, _cmd, data in direct.messages():
                ident: Dataset | Header | None = None
                if data is not None and status in (0xFF00, 0xFF01) and quick and ts.is_little_endian:
                    ident = read_header(data, ts.is_implicit_VR)
                if ident is None and data is not None and status in (0xFF00, 0xFF01):
                    try:
                        ident = decode(io.BytesIO(data), ts.is_implicit_VR, ts.is_little_endian)
                    except Exception as exc:  # what pynetdicom does with an undecodable identifier
                        LOG.error("C-FIND: undecodable identifier (%s)", type(exc).__name__)
                yield status, ident
            return
    for status, ident in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        yield (int(status.Status) if status else None), ident


def _match(ident: Dataset) -> StudyMatch:
    mods = ident.get("ModalitiesInStudy", "")
    values = mods.split("\\") if isinstance(mods, str) else [str(m) for m in mods]
    mods_t = tuple(m for m in values if m)
    n = ident.get("NumberOfStudyRelatedInstances", None)
    return StudyMatch(
        study_instance_uid=str(ident.StudyInstanceUID),
        accession=str(ident.get("AccessionNumber", "")) or None,
        patient_id=str(ident.get("PatientID", "")) or None,
        study_date=str(ident.get("StudyDate", "")) or None,
        modalities=mods_t,
        instances=int(n) if n not in (None, "") else None,
    )


def resolve(pacs: Pacs, *, accession: str | None, study_uid: str | None = None,
            patient_id: str | None = None, study_date: str | None = None,
            session: PacsSession | None = None) -> list[StudyMatch]:
    """Studies of one retrieval request: by study UID, else accession, else patient id + study date."""
    if study_uid:
        found = c_find_studies(pacs, study_uid=study_uid, session=session)
        if found:
            return found
    if accession:
        found = c_find_studies(pacs, accession=accession, session=session)
        if found:
            return found
    if patient_id and study_date:
        return c_find_studies(pacs, patient_id=patient_id, study_date=study_date, session=session)
    return []
