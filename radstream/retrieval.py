"""Retrieval requests of a cohort, as ``radstream cohort retrieve`` and the web app send them: one
``retrieval_requested`` record per study, in research terms (a row of the analysts' tables names its
study by ``study_ref``; a row of clinical identifiers is keyed and gets its reference here; a clinical
identifier beside a study reference is keyed too)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from processors.ingest.pseudonym import keyed_identifier, keyed_uid, pseudonym
from processors.ingest.research import (
    StudyRefError,
    looks_keyed,
    open_study_ref,
    research_request,
    shifted_study_date,
)

_FIELDS = ("accession", "study_instance_uid", "study_ref", "patient_id", "study_date")


def clinical(r: dict[str, str]) -> bool:
    """A row of the PACS's own identifiers (a radiology list), not of the analysts' tables."""
    ids = (r.get("accession"), r.get("study_instance_uid"), r.get("patient_id"))
    return not r.get("study_ref") and not any(looks_keyed(v) for v in ids)


def _plain(value: str) -> bool:
    """An accession or patient id given that is not a research value by its form (the PACS's own)."""
    return bool(value) and not looks_keyed(value)


def research_ids(key: bytes, site: str, r: dict[str, str]) -> dict[str, Any]:
    """The request's identifiers in research terms: clinical rows keyed, with their study reference; in a
    row with a study reference (or a research value), every clinical identifier keyed all the same."""
    if clinical(r):
        return research_request(key, site, accession=r.get("accession") or None,
                                study_uid=r.get("study_instance_uid") or None,
                                patient_id=r.get("patient_id") or None,
                                study_date=r.get("study_date") or None)
    acc, uid, pid = r.get("accession") or "", r.get("study_instance_uid") or "", r.get("patient_id") or ""
    date = r.get("study_date") or ""
    if _plain(acc) or _plain(pid):
        # a mixed row (``retrieve --study-ref R --accession A --patient-id P``, a CSV with both kinds of
        # columns) was made from clinical values: its UID (whose form tells nothing) and its date are the
        # PACS's too; each is keyed (or shifted) as research_request does it; the worker opens the ref
        patient = pid if looks_keyed(pid) else (pseudonym(key, site, pid) if pid else "")
        return {"accession": keyed_identifier(key, "accession", acc) if _plain(acc) else acc or None,
                "study_instance_uid": keyed_uid(key, uid) if uid else None,
                "study_ref": r.get("study_ref") or None, "patient_id": patient or None,
                "study_date": shifted_study_date(key, patient, date)}
    out = {f: r.get(f) or None for f in _FIELDS}
    if r.get("study_ref") and (uid or date):
        # research values as given, unless they are the referenced study's own UID or real exam date (which
        # neither form nor neighbours tell): compared inside this process, nothing is shown
        try:
            ref = open_study_ref(key, r["study_ref"])
        except StudyRefError:
            return out  # not this installation's reference: the worker refuses the request
        if uid and uid == ref.study_instance_uid:
            out["study_instance_uid"] = keyed_uid(key, uid)
        if date and date == ref.study_date:
            patient = pid or (pseudonym(key, ref.site, ref.patient_id) if ref.patient_id else "")
            out["study_date"] = shifted_study_date(key, patient, date)
    return out


def cohort_request(key: bytes, site: str, row: dict[str, str], *, project: str, destination: str,
                   requester: str, now: datetime, priority: str = "normal",
                   not_before: datetime | None = None, not_after: datetime | None = None,
                   source: str = "cohort") -> dict[str, Any]:
    """The ``retrieval_requested`` record of one cohort row (a new request id)."""
    return {
        "request_id": str(uuid.uuid4()), "action": "request", "project_id": project, "requester": requester,
        **research_ids(key, site, row), "destination_ae": destination, "priority": priority,
        "not_before": not_before, "not_after": not_after, "source": source, "requested_time": now,
    }
