"""A registration every registry ignores (identified without an IRB reference, an invalid project id) is
not the project's registration in the warehouse either: its audit entry says it was refused and why, and
``projects`` (whose latest row per project is what the views read as the current registration) keeps the
one the DICOM side applies. Real Kafka, the real sink, real chDB."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from radstream.config import Settings
from sinks.dicom.projects import ProjectRegistry

from .factories import BASE_TIME, registered
from .kafka_helpers import committed, end_offsets, produce_all, running_sink, wait_until

pytestmark = pytest.mark.integration


def test_a_registration_the_registries_ignore_is_audited_as_refused_and_is_not_current(
        sink_settings: Settings) -> None:
    s = sink_settings
    ok = registered("IDP2", identified=False)
    no_irb = {**ok, "identified": True, "irb_reference": None, "registered_by": "mallory",
              "time": BASE_TIME + timedelta(hours=1)}
    bad_id = {**ok, "project_id": "../x", "registered_by": "mallory", "time": BASE_TIME + timedelta(hours=2)}
    produce_all(s, [(s.topics.projects, "project_registration", str(r["project_id"]), r)
                    for r in (ok, no_irb, bad_id)])
    registry = ProjectRegistry(s.kafka, s.topics)
    try:  # what the DICOM side holds: the first registration
        held = registry.get("IDP2", wait_s=30)
        assert held is not None and not held.identified
    finally:
        registry.stop()
    with running_sink(s) as sink:
        topics = [s.topics.projects]
        wait_until(lambda: committed(s, sink.group_id, topics) == end_offsets(s, topics), what="commit")
        audit = [tuple(r) for r in sink.client.query(
            "SELECT actor, allowed, project, detail FROM audit_log FINAL "
            "WHERE action = 'registration.register' ORDER BY time").result_rows]
        rows = [tuple(r) for r in sink.client.query(
            "SELECT project_id, identified, registered_by FROM projects ORDER BY time").result_rows]
        current = sink.client.query(
            "SELECT argMax(identified, time) FROM projects WHERE project_id = 'IDP2'").result_rows
    assert [(a, allowed, p) for a, allowed, p, _ in audit] == [
        ("steward1", True, "IDP2"), ("mallory", False, "IDP2"), ("mallory", False, "../x")]
    assert "refused" not in json.loads(audit[0][3])
    assert json.loads(audit[1][3])["refused"] == ("ignored by the registries: identified without an IRB "
                                                  "reference")
    assert "invalid project id" in json.loads(audit[2][3])["refused"]
    assert [(p, bool(i)) for p, i, _ in rows] == [("IDP2", False)]
    assert [bool(c[0]) for c in current] == [False]
