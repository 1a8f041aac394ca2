"""Standing cohorts from the web page: a saved search as a watch rule (``processors.cohort``), published
and withdrawn with the same record and function as ``radstream cohort watch|unwatch``
(``streams.cohort.watch_record`` / ``publish_watch``).

Only what the rule language can say is translated; a search with anything else is refused with the
reason, never subscribed approximately:

* finding + "present" -> ``finding.concept`` (the rule counts a finding only when present for the
  patient: it also leaves out hypothetical, historical and family-history mentions, which the search's
  "present" keeps); its size -> ``finding.min_size_mm``;
* modality -> ``modality``; exam dates -> ``after`` / ``before`` (both inclusive, as in the search);
* assessment system -> ``assessment.system``; category >= N -> the system's categories (``systems.json``
  of the NLP, with the Lung-RADS "S" modifier) whose leading number is >= N, as the search compares.

Refused: full text, critical result, a finding that is negated, uncertain or of any state, a size
without a finding, a category without a system, and any filter this module does not know.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from radstream.web.queries import category_number

NAMES = {"text": "full text", "critical": "critical result", "body_region": "body region",
         "patient_class": "patient class", "recommendation_due": "recommendation due"}


class NotExpressible(ValueError):
    """The saved search has a filter a standing-cohort rule cannot say."""


def _systems() -> dict[str, list[str]]:
    data = json.loads((resources.files("processors.nlp.assessments") / "systems.json").read_text("utf-8"))
    return {s["system"].lower(): list(s["categories"]) for s in data["systems"]}


def rule_of(search: Mapping[str, str], name: str) -> dict[str, Any]:
    """The watch rule (JSON object) that selects what ``search`` (saved query-string fields) selects."""
    s = {k: v for k, v in search.items() if v not in ("", None)}
    known = {"finding", "finding_state", "min_size_mm", "modality", "date_from", "date_to",
             "assessment_system", "min_category"}
    other = sorted(set(s) - known)
    if other:
        raise NotExpressible("a standing cohort cannot filter on " + ", ".join(NAMES.get(k, k) for k in other)
                             + ": save a search without it to subscribe")
    rule: dict[str, Any] = {"name": name}
    if "finding" in s:
        state = s.get("finding_state", "")
        if state != "present":
            raise NotExpressible(f"a standing cohort matches findings present for the patient only, not "
                                 f"{state or 'of any state'}: search with 'Finding is: present'")
        finding: dict[str, Any] = {"concept": s["finding"]}
        if "min_size_mm" in s:
            finding["min_size_mm"] = float(s["min_size_mm"])
        rule["finding"] = finding
    elif "min_size_mm" in s or "finding_state" in s:
        raise NotExpressible("a standing cohort needs the finding (concept) that a size or state applies to")
    if "modality" in s:
        rule["modality"] = [s["modality"]]
    if "date_from" in s:
        rule["after"] = s["date_from"]
    if "date_to" in s:
        rule["before"] = s["date_to"]
    if "assessment_system" in s:
        system = s["assessment_system"]
        assessment: dict[str, Any] = {"system": system}
        if "min_category" in s:
            cats = _systems().get(system.lower())
            if cats is None:
                raise NotExpressible(f"unknown assessment system {system!r}: its categories cannot be listed")
            n = int(s["min_category"])
            if n > 0:  # >= 0 is every category, as in the search
                keep = [c for c in cats if (category_number(c) or 0) >= n]
                if not keep:
                    raise NotExpressible(f"{system} has no category >= {n}")
                assessment["categories"] = sorted({*keep, *(c + "S" for c in keep)})
        rule["assessment"] = assessment
    elif "min_category" in s:
        raise NotExpressible("a standing cohort needs the assessment system that a category applies to")
    if not ({"finding", "modality", "assessment"} & set(rule)):
        raise NotExpressible("a standing cohort needs a finding, a modality or an assessment "
                             "(dates alone would request every new report)")
    from processors.cohort.rules import parse_rule

    parse_rule(rule)  # the rule language's own check (RuleError is a ValueError)
    return rule


def watch_id_of(cohort_id: str, project: str) -> str:
    """One watch per cohort and project: subscribing again replaces it on the compacted topic."""
    return f"{project}:web-cohort-{cohort_id}"


def subscribe(settings: Any, rule: dict[str, Any], project: str, destination: str, requester: str,
              watch_id: str, scratch: Path, requester_roles: Sequence[str] | None = None) -> dict[str, Any]:
    """Publish the watch (``radstream cohort watch``'s record, made from a rule file as the CLI does), with
    the subscriber's roles: the DICOM worker checks them against the project's registration when the
    watch's requests run (a project re-registered as identified later)."""
    from streams.cohort import publish_watch, watch_record

    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, path = tempfile.mkstemp(prefix="rule-", suffix=".json", dir=scratch)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(rule, fh)
        rec = watch_record(settings.research.allowed_destinations, project, destination, requester, path,
                           watch_id, requester_roles)
    finally:
        os.unlink(path)
    publish_watch(settings.kafka, settings.topics, rec)
    return rec


def unsubscribe(settings: Any, watch_id: str) -> dict[str, Any]:
    """Withdraw the watch: ``radstream cohort unwatch``'s inactive record (requests already made stay)."""
    from streams.cohort import publish_watch

    rec = {"watch_id": watch_id, "project_id": "", "destination_ae": "", "requester": "", "rule": "{}",
           "active": False, "time": datetime.now(UTC)}
    publish_watch(settings.kafka, settings.topics, rec)
    return rec
