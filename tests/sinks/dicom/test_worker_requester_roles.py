"""Only a steward may send studies to an identified project, and the DICOM worker (the last gate before
the PACS) checks it against the registration as it is when the request runs: a standing cohort subscribed
by an analyst while its project was de-identified must not go on sending studies once a steward
re-registers the project as identified, not even its requests queued before that. Real Kafka, a real
Orthanc, our research SCP."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from radstream.config import Settings
from sinks.dicom.projects import publish

from .helpers import TEST_PROJECTS, final_of, request, statuses, stored_sops
from .test_dicom_worker import new_worker, research_scp, run_until_idle, run_worker

pytestmark = pytest.mark.integration


def test_an_identified_project_takes_a_watch_request_only_from_a_steward(dicom_settings: Settings) -> None:
    s = dicom_settings  # P2 is registered identified
    analyst = request(s, "A1", project="P2", source="watch", requester="ana", requester_roles=["analyst"])
    unknown = request(s, "A1", project="P2", source="watch", requester="old",
                      requester_roles=None)  # roles not recorded
    steward = request(s, "A2", project="P2", source="watch", requester="stew", requester_roles=["steward"])
    manual = request(s, "A3", project="P2", requester="cli")  # a steward's from the CLI
    with research_scp(s):
        w = run_worker(s)
    events = statuses(s, {analyst, unknown, steward, manual})
    for rid in (analyst, unknown):
        final = final_of(events, rid)
        assert final["state"] == "failed" and "only a steward" in final["error"], final
        assert not any(e["request_id"] == rid and e["state"] == "resolving" for e in w.log)  # no C-FIND
    assert "'ana'" in final_of(events, analyst)["error"]
    assert final_of(events, steward)["state"] == "completed"
    assert final_of(events, manual)["state"] == "completed"


def test_a_project_that_becomes_identified_while_a_watch_request_waits_refuses_it(
        dicom_settings: Settings) -> None:
    s = dicom_settings  # IRB-7 is registered de-identified
    # its time comes 10 s from now: long enough for a worker that starts slowly on a loaded host to queue
    # it first (with 4 s one sometimes ran it at once), and for the re-registration to reach the worker
    rid = request(s, "A1", project="IRB-7", source="watch", requester="ana", requester_roles=["analyst"],
                  not_before=datetime.now(UTC) + timedelta(seconds=10))
    w = new_worker(s)
    t = threading.Thread(target=w.run, kwargs={"until_idle": 1.0}, daemon=True)
    with research_scp(s):
        t.start()
        deadline = time.monotonic() + 60
        while not any(e["request_id"] == rid and e["state"] == "waiting_for_window" for e in w.log):
            assert time.monotonic() < deadline, "the request was not queued"
            time.sleep(0.05)
        # a steward re-registers the project as identified while the request waits for its time
        irb7 = TEST_PROJECTS.get("IRB-7")
        assert irb7 is not None
        publish(s.kafka, s.topics, dataclasses.replace(irb7, identified=True, irb_reference="IRB-NEW",
                                                       time=datetime.now(UTC)))
        t.join(timeout=120)
        assert not t.is_alive(), "worker did not become idle"
    final = final_of(statuses(s, {rid}), rid)
    assert final["state"] == "failed" and "only a steward" in final["error"], final
    assert not any(e["request_id"] == rid and e["state"] == "moving" for e in w.log)
    assert stored_sops(s.research_store_dir / "IRB-7") == []


def test_a_project_that_becomes_identified_while_a_study_is_listed_is_not_moved(
        dicom_settings: Settings) -> None:
    """The last check runs after the study's expectation is out, right before the C-MOVE."""
    s = dicom_settings  # IRB-9 is registered de-identified
    rid = request(s, "A4", project="IRB-9", source="watch", requester="ana", requester_roles=["analyst"])
    w = new_worker(s)
    irb9 = TEST_PROJECTS.get("IRB-9")
    assert irb9 is not None
    listing = w.list_instances

    def list_then_flip(req: Any, study: Any) -> dict[str, str]:
        # a steward re-registers the project as identified while the PACS lists the study's instances
        publish(s.kafka, s.topics, dataclasses.replace(irb9, identified=True, irb_reference="IRB-NEW",
                                                       time=datetime.now(UTC)))
        deadline = time.monotonic() + 30
        while not getattr(w.projects.peek("IRB-9"), "identified", False):
            assert time.monotonic() < deadline, "the worker did not see the new registration"
            time.sleep(0.05)
        return listing(req, study)

    w.list_instances = list_then_flip  # type: ignore[method-assign]
    with research_scp(s):
        run_until_idle(w)
    final = final_of(statuses(s, {rid}), rid)
    assert final["state"] == "failed" and "only a steward" in final["error"], final
    assert not any(e["request_id"] == rid and e["state"] == "moving" for e in w.log)
    assert stored_sops(s.research_store_dir / "IRB-9") == []
