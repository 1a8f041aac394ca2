"""A de-identified project registered with "Retain UIDs" (``--retain-uids``) stores instances that keep the
hospital's Study, Series and SOP Instance UIDs, and the DICOM worker names its studies by those UIDs in
status events: the sink keeps both from analysts (``received_instances_identified``, and the status rows'
UIDs in ``retrieval_events_identified``), as for an identified project (real Kafka, real chDB, the real
role check)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from radstream.config import Settings
from sinks.clickhouse.access import policy_for
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients, run_readonly
from sinks.clickhouse.sink import write_records
from sinks.dicom.projects import Project, publish

from .factories import ddl_until, registered
from .kafka_helpers import produce_all, running_sink, wait_until
from .test_rows import sample_records

pytestmark = pytest.mark.integration


def retaining(project_id: str) -> Project:
    base = Project.from_record(registered(project_id))
    return dataclasses.replace(base, deid=dataclasses.replace(base.deid, retain_uids=True))


def test_a_uid_retaining_projects_instances_and_uids_are_for_stewards_only(sink_settings: Settings) -> None:
    s, t = sink_settings, sink_settings.topics
    publish(s.kafka, t, Project.from_record(registered("P-DE")))
    publish(s.kafka, t, retaining("P-KEEP"))
    inst = sample_records()["received_instance"]
    keyed = {**inst, "project_id": "P-DE", "deidentified": True}
    kept = {**inst, "project_id": "P-KEEP", "deidentified": True, "study_instance_uid": "1.2.840.77",
            "series_instance_uid": "1.2.840.77.1", "sop_instance_uid": "1.2.840.77.1.1"}
    status = sample_records()["retrieval_status"]
    events = [{**status, "request_id": f"r-{p}", "project_id": p, "study_instance_uids": [u],
               "missing_sop_instance_uids": [u + ".1"], "error": ""}
              for p, u in (("P-DE", "2.25.5"), ("P-KEEP", "1.2.840.77"))]
    with running_sink(s) as sink:
        ch = sink.client
        wait_until(lambda: ch.query("SELECT count() FROM projects").result_rows[0][0] == 2, what="projects")
        batch: list[tuple[str, str, str, dict[str, Any]]] = [
            (t.received_instances, "received_instance", "a", keyed),
            (t.received_instances, "received_instance", "b", kept),
            *[(t.retrieval_status, "retrieval_status", str(e["request_id"]), e) for e in events]]
        produce_all(s, batch)
        wait_until(lambda: ch.query("SELECT (SELECT count() FROM received_instances) + (SELECT count() FROM "
                                    "received_instances_identified) + (SELECT count() FROM retrieval_events)"
                                    ).result_rows[0][0] == 4, what="the instances and status events")
        analyst = policy_for(["analyst"])
        for sql in ("SELECT * FROM received_instances", "SELECT * FROM image_occurrence",
                    "SELECT * FROM retrieval_events", "SELECT * FROM retrievals_latest"):
            seen = str(run_readonly(ch, sql, "csv", policy=analyst))
            assert "1.2.840.77" not in seen, sql
        mine = run_readonly(ch, "SELECT project_id FROM received_instances", "csv", policy=analyst)
        assert "P-DE" in str(mine)
        moved = ch.query("SELECT project_id, sop_instance_uid FROM received_instances_identified").result_rows
        assert [tuple(r) for r in moved] == [("P-KEEP", "1.2.840.77.1.1")]
        uids = ch.query("SELECT project_id, study_instance_uids FROM retrieval_events_identified").result_rows
        assert [tuple(r) for r in uids] == [("P-KEEP", ["1.2.840.77"])]


def test_migration_027_moves_rows_written_before(tmp_path: Path) -> None:
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 26))
        write_records(client, "project_registration", [registered("P-DE"), retaining("P-KEEP").record()])
        inst = sample_records()["received_instance"]
        # as the sink wrote them before: both in the analysts' table (the columns of that time: no 030)
        client.insert("rs.received_instances", [
            [p, inst["study_instance_uid"], inst["series_instance_uid"], sop, True]
            for p, sop in (("P-DE", inst["sop_instance_uid"]), ("P-KEEP", "1.2.840.77.1.1"))],
            column_names=["project_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
                          "deidentified"])
        client.insert("rs.retrieval_events", [[f"r-{p}", p, "partial", [u], u] for p, u in
                                              (("P-DE", "2.25.5"), ("P-KEEP", "1.2.840.77"))],
                      column_names=["request_id", "project_id", "state", "study_instance_uids", "error"])
        assert migrate(client, "rs")[0] == "027_retained_uids_instances"
        rows = client.query("SELECT project_id FROM rs.received_instances ORDER BY ALL").result_rows
        assert [tuple(r) for r in rows] == [("P-DE",)]
        moved = client.query("SELECT project_id, sop_instance_uid FROM rs.received_instances_identified"
                             ).result_rows
        assert [tuple(r) for r in moved] == [("P-KEEP", "1.2.840.77.1.1")]
        left = client.query("SELECT project_id, study_instance_uids, error FROM rs.retrieval_events "
                            "ORDER BY project_id").result_rows
        assert [tuple(r) for r in left] == [("P-DE", ["2.25.5"], "2.25.5"), ("P-KEEP", [], "")]
        kept = client.query("SELECT project_id, study_instance_uids FROM rs.retrieval_events_identified"
                            ).result_rows
        assert [tuple(r) for r in kept] == [("P-KEEP", ["1.2.840.77"])]
    finally:
        close_readonly_clients()
        client.close()
