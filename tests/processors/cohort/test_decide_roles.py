"""A standing cohort's requests say who subscribed it and with which roles (the DICOM worker refuses a
non-steward's request for an identified project), and of several matching watches of one project and
destination a steward's makes the request."""

from __future__ import annotations

from processors.cohort.decide import Watch, decide
from tests.processors.cohort.test_cohort_rules import NODULE_8, NOW, finding, record


def _watch(wid: str, requester: str, roles: tuple[str, ...] | None) -> Watch:
    return Watch(wid, "IRB-7", "RESEARCH", requester, NODULE_8, roles)


def test_a_request_carries_its_watch_subscribers_roles() -> None:
    hit = record(finding("nodule", size_mm=9.0))
    _, [req] = decide(hit, [_watch("w1", "ana", ("analyst",))], {}, NOW)
    assert (req["requester"], req["requester_roles"], req["source"]) == ("ana", ["analyst"], "watch")
    _, [old] = decide(hit, [_watch("w0", "old", None)], {}, NOW)  # a watch from before the roles
    assert old["requester_roles"] is None


def test_of_two_matching_watches_a_stewards_makes_the_request() -> None:
    hit = record(finding("nodule", size_mm=9.0))
    watches = [_watch("w1", "ana", ("analyst",)), _watch("w2", "stew", ("steward",))]
    for order in (watches, watches[::-1]):
        _, [req] = decide(hit, order, {}, NOW)
        assert (req["requester"], req["requester_roles"]) == ("stew", ["steward"])
