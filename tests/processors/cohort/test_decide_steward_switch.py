"""Of several matching watches of one project and destination a steward's makes the request, also when an
earlier version of the report matched only an analyst's watch: that request (refused for an identified
project) is cancelled and the steward's made, once."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.cohort.decide import Watch, decide
from processors.cohort.rules import parse_rule

NOW = datetime(2026, 12, 7, tzinfo=UTC)
ANALYST = Watch("IDP:a", "IDP", "RESEARCH", "ann", parse_rule({"modality": ["CT"]}), ("analyst",))
STEWARD = Watch("IDP:s", "IDP", "RESEARCH", "sue", parse_rule({"modality": ["CT"], "body_region": ["chest"]}),
                ("steward",))
V1 = {"report_version": 1, "accession": "A1", "status": "final", "modality": "CT", "body_region": "abdomen",
      "site": "default", "study_ref": "r"}


def test_a_stewards_watch_matching_a_later_version_makes_the_request_in_its_name() -> None:
    watches = [ANALYST, STEWARD]
    state, [first] = decide(V1, watches, {}, NOW)
    assert (first["action"], first["requester"], first["requester_roles"]) == ("request", "ann", ["analyst"])
    v2 = {**V1, "report_version": 2, "body_region": "chest"}  # an addendum: the steward's watch matches too
    state, out = decide(v2, watches, state, NOW)
    assert [(r["action"], r["request_id"] == first["request_id"], r["requester"]) for r in out] == [
        ("cancel", True, "sue"), ("request", False, "sue")]
    assert out[1]["requester_roles"] == ["steward"]
    stewards = out[1]["request_id"]
    again, redelivered = decide(v2, watches, state, NOW)
    assert (again, redelivered) == (state, [])  # a redelivery emits nothing
    v3 = {**V1, "report_version": 3, "body_region": "chest"}
    state, out = decide(v3, watches, state, NOW)
    assert out == []  # still the steward's request
    v4 = {**V1, "report_version": 4, "modality": "MR"}  # matches nothing: the steward's request is cancelled
    _, [cancel] = decide(v4, watches, state, NOW)
    assert (cancel["action"], cancel["request_id"]) == ("cancel", stewards)


def test_a_stewards_request_is_not_replaced_when_an_analysts_watch_matches_too() -> None:
    v1 = {**V1, "body_region": "chest"}
    state, [req] = decide(v1, [ANALYST, STEWARD], {}, NOW)
    assert req["requester"] == "sue"
    v2 = {**v1, "report_version": 2, "body_region": "abdomen"}  # only the analyst's matches now
    state, out = decide(v2, [ANALYST, STEWARD], state, NOW)
    assert out == []
    v3 = {**v1, "report_version": 3}  # the steward's matches again: its request still stands
    _, out = decide(v3, [ANALYST, STEWARD], state, NOW)
    assert out == []


def test_a_steward_subscribing_after_the_version_matched_gets_a_new_id_for_that_same_version() -> None:
    v1 = {**V1, "body_region": "chest"}
    state, [first] = decide(v1, [ANALYST], {}, NOW)  # only the analyst's watch exists yet
    # the steward subscribes; the same version is evaluated again (a redelivery, an NLP re-emission)
    state, out = decide(v1, [ANALYST, STEWARD], state, NOW)
    assert [(r["action"], r["requester"]) for r in out] == [("cancel", "sue"), ("request", "sue")]
    assert out[0]["request_id"] == first["request_id"] != out[1]["request_id"]
    again, redelivered = decide(v1, [ANALYST, STEWARD], state, NOW)
    assert (again, redelivered) == (state, [])


def test_a_version_that_matches_again_after_its_cancel_gets_a_new_id() -> None:
    v1 = {**V1, "body_region": "chest"}
    state, [first] = decide(v1, [STEWARD], {}, NOW)
    state, [cancel] = decide({**v1, "modality": "MR"}, [STEWARD], state, NOW)  # a re-analysis: no match
    assert (cancel["action"], cancel["request_id"]) == ("cancel", first["request_id"])
    state, [again] = decide(v1, [STEWARD], state, NOW)  # the same version matches again
    assert again["action"] == "request" and again["request_id"] != first["request_id"]
    assert decide(v1, [STEWARD], state, NOW) == (state, [])  # a redelivery emits nothing


def test_the_stewards_replacement_cancelled_then_matching_again_reuses_no_id() -> None:
    v1 = {**V1, "body_region": "chest"}
    state, [analysts] = decide(v1, [ANALYST], {}, NOW)
    state, [_, stewards] = decide(v1, [ANALYST, STEWARD], state, NOW)
    state, [cancel] = decide({**v1, "modality": "MR"}, [ANALYST, STEWARD], state, NOW)
    assert cancel["request_id"] == stewards["request_id"]
    v3 = {**v1, "report_version": 1}
    _, [again] = decide(v3, [ANALYST, STEWARD], state, NOW)
    assert again["request_id"] not in (analysts["request_id"], stewards["request_id"])
