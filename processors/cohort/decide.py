"""What a standing cohort does with one new report version: request, cancel, or nothing.

State per report (site|accession) and per (project, destination): the request id emitted, whether the
latest evaluated version matched, that version (a late older version never flips the decision), and
whether the request was made in a steward's name: when a steward's watch matches a report whose request
went out in a non-steward's name, that request is cancelled and a new one made in the steward's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from processors.cohort.rules import CohortRule, matches

_NAMESPACE = uuid.UUID("6f1c1d1e-3b7e-4c2a-9d7e-2f3a4b5c6d7e")


@dataclass(frozen=True)
class Watch:
    watch_id: str
    project_id: str
    destination_ae: str
    requester: str
    rule: CohortRule
    # the subscriber's roles when subscribed (None: not recorded); every request carries them, so the DICOM
    # worker can refuse a non-steward's request once the project is (or becomes) identified
    requester_roles: tuple[str, ...] | None = None


def request_id_for(project_id: str, destination_ae: str, site: str, accession: str, version: int,
                   generation: int = 0) -> str:
    """Deterministic, so a redelivered report or a restarted worker emits the same request id. The
    version that matched and the report's ``generation`` (how many of its requests this project and
    destination have cancelled) are part of it: a request made after a cancel, on the same version too
    (a steward's in place of an analyst's, a re-analysis that matches again), never reuses the
    cancelled id, which the DICOM worker has run once already."""
    name = f"{project_id}|{destination_ae}|{site}|{accession}|{version}" + (f"|g{generation}" if generation
                                                                            else "")
    return str(uuid.uuid5(_NAMESPACE, name))


def decide(record: Mapping[str, Any], watches: Iterable[Watch], state: Mapping[str, Any],
           requested_time: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """-> (new state for this report, RetrievalRequested records to emit).

    ``state`` maps ``project|destination`` -> {"request_id", "matched", "version", "steward",
    "generation"} ("steward": the request was made in a steward's watch's name; "generation": how many
    requests were cancelled; each missing in states written before it was recorded, taken as not / 0).
    ``requested_time`` must be the same each time ``record`` is delivered (not the clock): the warehouse
    keys requests on (request_id, action, requested_time), so a redelivery then collapses onto the same
    row.
    """
    new_state: dict[str, Any] = {k: dict(v) for k, v in state.items()}
    out: list[dict[str, Any]] = []
    version = int(record["report_version"])
    site, accession = str(record.get("site", "default")), str(record["accession"])
    # several watches of one project and destination: the report matches if any of them does; the request
    # is made in the name of a steward's matching watch when there is one (an identified project takes
    # only a steward's requests: the DICOM worker refuses the others)
    verdicts: dict[str, tuple[Watch, bool]] = {}
    for w in watches:
        key = f"{w.project_id}|{w.destination_ae}"
        hit = matches(w.rule, record)
        best = verdicts.get(key)
        if best is None or (hit and (not best[1] or _steward(w) > _steward(best[0]))):
            verdicts[key] = (w, hit)
    for key, (w, hit) in verdicts.items():
        prev = new_state.get(key)
        if prev is not None and int(prev.get("version", -1)) > version:
            continue  # a late older version
        was = bool(prev and prev.get("matched"))
        generation = int(prev.get("generation", 0)) if prev else 0  # cancels so far (0 in older states)
        rid = str(prev["request_id"]) if prev and was else request_id_for(
            w.project_id, w.destination_ae, site, accession, version, generation)
        by_steward = bool(prev and was and prev.get("steward"))
        if hit and was and _steward(w) and not by_steward:
            # the request went out in a non-steward's name (refused if the project is identified) and a
            # steward's watch matches now: withdraw it and ask again in the steward's name (a new id)
            out.append(_request(w, record, rid, "cancel", requested_time))
            generation += 1
            rid = request_id_for(w.project_id, w.destination_ae, site, accession, version, generation)
            was = False
        if hit and not was:
            out.append(_request(w, record, rid, "request", requested_time))
            by_steward = _steward(w)
        elif was and not hit:
            out.append(_request(w, record, rid, "cancel", requested_time))
            generation += 1
        if hit or was or generation:
            new_state[key] = {"request_id": rid, "matched": hit, "version": version, "steward": by_steward,
                              "generation": generation}
    return new_state, out


def _steward(w: Watch) -> bool:
    return bool({"steward", "admin"} & set(w.requester_roles or ()))


def _request(w: Watch, record: Mapping[str, Any], rid: str, action: str,
             requested_time: datetime) -> dict[str, Any]:
    return {
        "request_id": rid,
        "action": action,
        "project_id": w.project_id,
        "requester": w.requester,
        "requester_roles": None if w.requester_roles is None else sorted(w.requester_roles),
        "accession": record["accession"],
        "study_ref": record.get("study_ref"),
        "study_instance_uid": record.get("study_instance_uid"),
        "patient_id": record.get("patient_id"),
        "destination_ae": w.destination_ae,
        "priority": "normal",
        "source": "watch",
        "requested_time": requested_time,
    }
