"""Retrieval requests of a cohort, as ``radstream cohort retrieve`` and the web app send them: one
``retrieval_requested`` record per study, in research terms (a row of the analysts' tables names its
study by ``study_ref``; a row of clinical identifiers is keyed and gets its reference here)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from processors.ingest.research import looks_keyed, research_request


def clinical(r: dict[str, str]) -> bool:
    """A row of the PACS's own identifiers (a radiology list), not of the analysts' tables."""
    ids = (r.get("accession"), r.get("study_instance_uid"), r.get("patient_id"))
    return not r.get("study_ref") and not any(looks_keyed(v) for v in ids)


def research_ids(key: bytes, site: str, r: dict[str, str]) -> dict[str, Any]:
    """The request's identifiers in research terms: clinical rows keyed, with their study reference."""
    if clinical(r):
        return research_request(key, site, accession=r.get("accession") or None,
                                study_uid=r.get("study_instance_uid") or None,
                                patient_id=r.get("patient_id") or None,
                                study_date=r.get("study_date") or None)
    return {f: r.get(f) or None for f in ("accession", "study_instance_uid", "study_ref", "patient_id",
                                          "study_date")}


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
