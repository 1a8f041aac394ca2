"""A standing cohort subscribed in the web app records its subscriber's roles, and every request the watch
makes carries them: the DICOM worker checks them against the project's registration when the request
runs (a project re-registered as identified after the watch was subscribed; tests/sinks/dicom/
test_worker_requester_roles.py). Real Kafka: the watch topic, the cohort agent, the requests topic."""

from __future__ import annotations

import uuid

from streams import serde
from streams.agents import create_changelogs
from streams.agents.cohort import CohortHandler
from streams.agents.table import ChangelogTable
from streams.cohort import WatchRegistry
from streams.handlers import analyze_batch
from streams.loop import Acks, Record, _Offsets
from streams.producer import make_producer, produce_sync
from tests.radstream.web.test_web_app import PROJECT, App, save, signed_in, watches_on_topic
from tests.radstream.web.test_web_app import web as web  # noqa: F401 - the fixture
from tests.streams.helpers import consume, report


def test_a_watch_subscribed_by_an_analyst_sends_requests_that_say_so(web: App) -> None:  # noqa: F811
    s = web.settings.replace(kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"})
    client, csrf = signed_in(web, "analyst")
    cid = save(client, csrf, "nodules", finding="nodule", finding_state="present", min_size_mm="6")
    r = client.post(f"/cohorts/{cid}/subscribe", data={"csrf": csrf, "project": PROJECT,
                                                       "destination": "RESEARCH"})
    assert r.status_code == 303, r.text
    (w,) = watches_on_topic(s).values()
    assert (w.requester, w.requester_roles) == ("rita", ("analyst",))

    # a matching report's findings, as the NLP agent writes them, through the cohort agent
    text = "FINDINGS: 12 mm solid nodule in the right upper lobe."
    [out] = analyze_batch([serde.encode("report_finalized", report("C1", text))])
    assert out.value is not None
    producer = make_producer(s.kafka)
    produce_sync(producer, s.topics.findings, "report_findings", b"default|C1",
                 serde.decode("report_findings", out.value))
    [msg] = consume(s, s.topics.findings, 1)
    registry = WatchRegistry(s.kafka, s.topics)
    registry.start()
    try:
        assert registry.loaded.wait(30)
        changelog = f"t{uuid.uuid4().hex[:8]}-cohort-state-changelog"
        create_changelogs(s.kafka, {changelog: s.kafka.partitions})
        handler = CohortHandler(s.topics, registry, producer, ChangelogTable(s.kafka, changelog, producer),
                                s.research.allowed_destinations)
        handler.add([Record.of(msg)], Acks(_Offsets()))
        handler.drain([], 30)
    finally:
        registry.stop()
    [msg] = consume(s, s.topics.retrieval_requests, 1)
    sent = serde.decode("retrieval_requested", msg.value())
    assert (sent["project_id"], sent["source"], sent["requester"], sent["requester_roles"]) == (
        PROJECT, "watch", "rita", ["analyst"])


def test_a_cohort_sent_by_an_analyst_sends_requests_that_say_so(web: App) -> None:  # noqa: F811
    """A cohort sent at once is checked again when its requests run, like a watch's."""
    client, csrf = signed_in(web, "analyst")
    cid = save(client, csrf, "ct", modality="CT")
    r = client.post(f"/cohorts/{cid}/retrieve", data={"csrf": csrf, "project": PROJECT,
                                                      "destination": "RESEARCH"})
    assert r.status_code == 303, r.text
    sent = [serde.decode("retrieval_requested", m.value())
            for m in consume(web.settings, web.settings.topics.retrieval_requests, 2)]
    assert [(q["source"], q["requester"], q["requester_roles"]) for q in sent] == [
        ("cohort", "rita", ["analyst"])] * 2
