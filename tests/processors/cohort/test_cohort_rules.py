from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from processors.cohort import RuleError, matches
from processors.cohort.decide import Watch, decide
from processors.cohort.rules import parse_rule

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def finding(concept: str, **kw: Any) -> dict[str, Any]:
    base = {"concept": concept, "negated": False, "uncertain": False, "historical": False,
            "hypothetical": False, "experiencer": "patient", "section": "findings", "size_mm": None}
    return {**base, **kw}


def record(*findings: dict[str, Any], version: int = 1, status: str = "final", modality: str = "CT",
           assessments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"accession": "A9", "site": "default", "report_version": version, "status": status,
            "patient_id": "P9", "modality": modality, "body_region": "chest", "processed_time": NOW,
            "findings": list(findings), "assessments": assessments or []}


NODULE_8 = parse_rule({"name": "nodules", "modality": "CT",
                       "finding": {"concept": ["nodule", "mass"], "min_size_mm": 8}})


@pytest.mark.parametrize(("f", "expected"), [
    (finding("nodule", size_mm=9.0), True),
    (finding("mass", size_mm=8.0), True),
    (finding("nodule", size_mm=6.0), False),
    (finding("nodule"), False),  # size required but unknown
    (finding("nodule", size_mm=12.0, negated=True), False),
    (finding("nodule", size_mm=12.0, uncertain=True), False),
    (finding("nodule", size_mm=12.0, hypothetical=True), False),
    (finding("nodule", size_mm=12.0, historical=True), False),
    (finding("nodule", size_mm=12.0, experiencer="other"), False),
    (finding("effusion", size_mm=12.0), False),
])
def test_finding_criterion(f: dict[str, Any], expected: bool) -> None:
    assert matches(NODULE_8, record(f)) is expected


def test_modality_status_and_dates() -> None:
    hit = finding("nodule", size_mm=9.0)
    assert not matches(NODULE_8, record(hit, modality="MR"))
    assert not matches(NODULE_8, record(hit, status="preliminary"))
    assert not matches(NODULE_8, record(hit, status="cancelled"))
    late = parse_rule({"modality": "CT", "after": "2026-11-02"})
    assert not matches(late, record(hit))
    assert matches(parse_rule({"modality": "CT", "after": "2026-10-31", "before": "2026-11-01"}), record(hit))


def test_uncertain_allowed_and_section_filter() -> None:
    rule = parse_rule({"finding": {"concept": "pneumothorax", "allow_uncertain": True,
                                   "sections": ["impression"]}})
    assert matches(rule, record(finding("pneumothorax", uncertain=True, section="impression")))
    assert not matches(rule, record(finding("pneumothorax", section="findings")))


def test_assessment_criterion() -> None:
    rule = parse_rule({"assessment": {"system": "BI-RADS", "categories": ["4A", "4B", "4C", "5"]}})
    assert matches(rule, record(assessments=[{"system": "BI-RADS", "category": "4b"}]))
    assert not matches(rule, record(assessments=[{"system": "BI-RADS", "category": "3"}]))
    assert not matches(rule, record(assessments=[{"system": "Lung-RADS", "category": "4B"}]))


@pytest.mark.parametrize("bad", [
    {}, {"name": "x"}, {"modality": 5}, {"finding": {"size": 3}},
    {"finding": {"concept": "x", "min_size_mm": "8"}},
    {"modality": "CT", "after": "yesterday"}, {"modality": "CT", "colour": "red"}, [],
])
def test_invalid_rules_are_refused(bad: Any) -> None:
    with pytest.raises(RuleError):
        parse_rule(bad)


WATCH = Watch("w1", "IRB-1", "RESEARCH", "alice", NODULE_8)


def corrected(size_mm: float, version: int) -> dict[str, Any]:
    return record(finding("nodule", size_mm=size_mm), version=version, status="corrected")


def test_decide_requests_once_then_cancels_after_a_correction_stops_matching() -> None:
    state, out = decide(record(finding("nodule", size_mm=9.0)), [WATCH], {}, NOW)
    assert [(r["action"], r["project_id"], r["destination_ae"], r["source"]) for r in out] == [
        ("request", "IRB-1", "RESEARCH", "watch")]
    rid = out[0]["request_id"]
    # the same version again (redelivery): nothing new
    again, out2 = decide(record(finding("nodule", size_mm=9.0)), [WATCH], state, NOW)
    assert out2 == [] and again == state
    # a correction that still matches: nothing new
    state2, out3 = decide(corrected(10.0, 2), [WATCH], state, NOW)
    assert out3 == []
    # a correction that no longer matches: cancel the same request
    state3, out4 = decide(corrected(4.0, 3), [WATCH], state2, NOW)
    assert [(r["action"], r["request_id"]) for r in out4] == [("cancel", rid)]
    # a late older version that matched does not bring it back
    state4, out5 = decide(record(finding("nodule", size_mm=9.0), version=2), [WATCH], state3, NOW)
    assert out5 == [] and state4 == state3
    # a newer version matching again is a new request
    _, out6 = decide(corrected(9.0, 4), [WATCH], state4, NOW)
    assert [r["action"] for r in out6] == ["request"] and out6[0]["request_id"] != rid


def test_decide_ignores_non_matching_reports_entirely() -> None:
    state, out = decide(record(finding("nodule", size_mm=3.0)), [WATCH], {}, NOW)
    assert state == {} and out == []


def test_two_watches_of_one_project_and_destination_give_one_request() -> None:
    other = Watch("w2", "IRB-1", "RESEARCH", "bob", parse_rule({"modality": "CT"}))
    _, out = decide(record(finding("nodule", size_mm=9.0)), [WATCH, other], {}, NOW)
    assert len(out) == 1
