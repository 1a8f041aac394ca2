"""The storage SCP's events in the warehouse (real Kafka, real chDB): project registrations (history),
quarantine actions, and originals only from the restricted topic into the restricted deid_map."""

from __future__ import annotations

import pytest

from radstream.config import Settings
from sinks.dicom.projects import Project, publish

from .factories import BASE_TIME
from .kafka_helpers import produce_all, running_sink, wait_until
from .test_rows import sample_records

pytestmark = pytest.mark.integration


def test_projects_quarantine_and_originals_land_in_their_tables(sink_settings: Settings) -> None:
    s, t = sink_settings, sink_settings.topics
    recs = sample_records()
    publish(s.kafka, t, Project("P-7", "RESEARCH", "ana", "steward1", identified=True, irb_reference="IRB-1",
                                time=BASE_TIME))
    publish(s.kafka, t, Project("P-7", "RESEARCH", "ana", "steward1", active=False, time=BASE_TIME.replace(
        year=2030)))
    produce_all(s, [(t.received_instances, "received_instance", "1.2.3.4", recs["received_instance"]),
                    (t.received_restricted, "received_original", "1.2.3.4", recs["received_original"]),
                    (t.quarantine, "quarantine_event", "9.9.9", recs["quarantine_event"])])
    with running_sink(s) as sink:
        ch = sink.client
        wait_until(lambda: ch.query("SELECT count() FROM deid_map").result_rows[0][0] == 5, what="deid_map")
        wait_until(lambda: ch.query("SELECT count() FROM projects").result_rows[0][0] == 2, what="projects")
        wait_until(lambda: ch.query("SELECT count() FROM quarantine").result_rows[0][0] == 1,
                   what="quarantine")
        history = ch.query("SELECT identified, irb_reference, active FROM projects ORDER BY time").result_rows
        assert [tuple(r) for r in history] == [(True, "IRB-1", True), (False, "", False)]
        q = ch.query("SELECT action, sop_instance_uid, actor, note, reason FROM quarantine").result_rows
        assert [tuple(r) for r in q] == [("released", "9.9.9", "steward1", "checked: no text in the pixels",
                                          "BurnedInAnnotation=YES")]
        # wherever the instance went (P-7 was once identified: held back from analysts if it came before
        # the registrations), it carries no originals
        both = ("SELECT (SELECT count() FROM received_instances) + "
                "(SELECT count() FROM received_instances_identified)")
        wait_until(lambda: ch.query(both).result_rows[0][0] == 1, what="the instance")
        shared = ch.query("SELECT * FROM received_instances UNION ALL "
                          "SELECT * FROM received_instances_identified").result_rows
        originals = {"9", "9.9", "9.9.9", "A-REAL", "MRN-REAL"}
        assert len(shared) == 1 and not originals & {str(v) for v in shared[0]}
        pairs = ch.query("SELECT kind, original FROM deid_map ORDER BY kind").result_rows
        assert ("patient_id", "MRN-REAL") in [tuple(r) for r in pairs]
