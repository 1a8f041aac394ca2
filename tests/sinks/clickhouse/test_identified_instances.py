"""What names the hospital's own patients and studies in an identified project is kept from analysts:
its instances (patient id, accession, UIDs, path) go to ``received_instances_identified`` and its status
events' UIDs and error text to ``retrieval_events_identified``, which only stewards may read; ddl/022 and
024 move what was written before (real Kafka, real chDB, the real role check)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.access import AccessDenied, policy_for
from sinks.clickhouse.migrate import DDL_DIR, migrate, statements
from sinks.clickhouse.query import run_readonly
from sinks.dicom.projects import Project, publish

from .factories import registered
from .kafka_helpers import produce_all, running_sink, wait_until
from .test_rows import sample_records

pytestmark = pytest.mark.integration


def test_an_identified_projects_instances_are_for_stewards_only(sink_settings: Settings) -> None:
    s, t = sink_settings, sink_settings.topics
    deid = sample_records()["received_instance"]
    ident = {**deid, "project_id": "P-ID", "deidentified": False, "sop_instance_uid": "9.9.9.1",
             "accession": "A-REAL", "patient_id": "MRN-REAL", "path": "/store/P-ID/9/9.9/9.9.9.1.dcm"}
    publish(s.kafka, t, Project.from_record(registered("P-7")))  # de-identified, so analysts get its rows
    produce_all(s, [(t.received_instances, "received_instance", "1.2.3.4", deid),
                    (t.received_instances, "received_instance", "9.9.9.1", ident)])
    with running_sink(s) as sink:
        ch = sink.client
        # P-7's instance may come before its registration: held back, then released
        both = ("SELECT (SELECT count() FROM received_instances), "
                "(SELECT count() FROM received_instances_identified)")
        wait_until(lambda: tuple(ch.query(both).result_rows[0]) == (1, 1), what="both instances")
        analyst, steward = policy_for(["analyst"]), policy_for(["steward"])
        seen = str(run_readonly(ch, "SELECT project_id, patient_id, accession FROM received_instances", "csv",
                                policy=analyst))
        assert "P-7" in seen and "MRN-REAL" not in seen and "A-REAL" not in seen
        with pytest.raises(AccessDenied):
            run_readonly(ch, "SELECT * FROM received_instances_identified", "csv", policy=analyst)
        for view in ("image_occurrence",):  # the analysts' OMOP view over the instances
            assert "MRN-REAL" not in str(run_readonly(ch, f"SELECT * FROM {view}", "csv", policy=analyst))
        kept = str(run_readonly(ch, "SELECT patient_id, path FROM received_instances_identified", "csv",
                                policy=steward))
        assert "MRN-REAL" in kept and "/store/P-ID/" in kept


def test_migration_022_moves_identified_rows_written_before(ch: Client, ch_settings: Settings) -> None:
    db = ch_settings.clickhouse.database
    ch.command(f"DROP TABLE {db}.received_instances_identified")  # as a store before 022 was
    ch.command(f"INSERT INTO {db}.received_instances (project_id, study_instance_uid, series_instance_uid, "
               "sop_instance_uid, sop_class_uid, accession, patient_id, path, size_bytes, deidentified, "
               "time) VALUES ('P-ID', '9', '9.9', '9.9.9', '1.2', 'A-REAL', 'MRN-REAL', '/s/9.9.9.dcm', 1, "
               "false, now()), ('P-7', '1.2', '1.2.3', '1.2.3.4', '1.2', 'ACC-1F', 'psn-77', "
               "'/s/1.2.3.4.dcm', 1, true, now())")
    sql = (Path(DDL_DIR) / "022_identified_instances.sql").read_text()
    for stmt in statements(sql, db):
        ch.command(stmt, settings={"mutations_sync": 2} if stmt.startswith("ALTER") else None)
    left = ch.query(f"SELECT project_id FROM {db}.received_instances").result_rows
    moved = ch.query(f"SELECT project_id, patient_id FROM {db}.received_instances_identified").result_rows
    assert [tuple(r) for r in left] == [("P-7",)] and [tuple(r) for r in moved] == [("P-ID", "MRN-REAL")]
    migrate(ch, db)  # recorded as applied: nothing runs again


def test_status_events_name_pacs_uids_for_stewards_only_unless_the_project_is_deidentified(
        sink_settings: Settings) -> None:
    s, t = sink_settings, sink_settings.topics
    publish(s.kafka, t, Project.from_record(registered("P-DE")))
    publish(s.kafka, t, Project.from_record(registered("P-ID", identified=True)))
    status = sample_records()["retrieval_status"]
    events = [{**status, "request_id": f"r-{p}", "project_id": p, "study_instance_uids": [f"9.{i}"],
               "missing_sop_instance_uids": [f"9.{i}.1"], "error": f"9.{i}.1 not stored"}
              for i, p in enumerate(("P-DE", "P-ID", "P-UNKNOWN"))]
    with running_sink(s) as sink:
        ch = sink.client
        wait_until(lambda: ch.query("SELECT count() FROM projects").result_rows[0][0] == 2, what="projects")
        produce_all(s, [(t.retrieval_status, "retrieval_status", e["request_id"], e) for e in events])
        wait_until(lambda: ch.query("SELECT count() FROM retrieval_events").result_rows[0][0] == 3,
                   what="the status events")
        analyst = policy_for(["analyst"])
        seen = str(run_readonly(ch, "SELECT project_id, study_instance_uids, missing_sop_instance_uids, "
                                    "error FROM retrieval_events ORDER BY project_id", "csv", policy=analyst))
        assert "9.0" in seen and "9.0.1 not stored" in seen  # the de-identified project's: whole
        assert "9.1" not in seen and "9.2" not in seen  # identified, and not known to be de-identified
        assert seen.count("P-ID") == 1 and seen.count("P-UNKNOWN") == 1  # their state stays on the dashboard
        with pytest.raises(AccessDenied):
            run_readonly(ch, "SELECT * FROM retrieval_events_identified", "csv", policy=analyst)
        kept = ch.query("SELECT project_id, study_instance_uids, error FROM retrieval_events_identified "
                        "ORDER BY project_id").result_rows
        assert [tuple(r) for r in kept] == [("P-ID", ["9.1"], "9.1.1 not stored"),
                                            ("P-UNKNOWN", ["9.2"], "9.2.1 not stored")]


def test_migration_024_moves_status_rows_of_projects_not_known_deidentified(ch: Client,
                                                                            ch_settings: Settings) -> None:
    db = ch_settings.clickhouse.database
    ch.command(f"DROP TABLE {db}.retrieval_events_identified")  # as a store before 024 was
    ch.command(f"INSERT INTO {db}.projects (project_id, identified, destination_ae, owner, registered_by, "
               "active, time) VALUES ('P-DE', false, 'RESEARCH', 'o', 's', true, now())")
    ch.command(f"INSERT INTO {db}.retrieval_events (request_id, project_id, state, study_instance_uids, "
               "error, time) VALUES ('r1', 'P-DE', 'partial', ['2.25.1'], 'e1', now()), "
               "('r2', 'P-ID', 'partial', ['1.2.840.9'], '1.2.840.9.1 missing', now())")
    for stmt in statements((Path(DDL_DIR) / "024_identified_retrieval_events.sql").read_text(), db):
        ch.command(stmt, settings={"mutations_sync": 2} if stmt.startswith("ALTER") else None)
    left = ch.query(f"SELECT request_id, study_instance_uids, error FROM {db}.retrieval_events "
                    "ORDER BY request_id").result_rows
    assert [tuple(r) for r in left] == [("r1", ["2.25.1"], "e1"), ("r2", [], "")]
    moved = ch.query(f"SELECT request_id, study_instance_uids FROM {db}.retrieval_events_identified"
                     ).result_rows
    assert [tuple(r) for r in moved] == [("r2", ["1.2.840.9"])]


def test_a_registration_another_sink_wrote_is_found_in_the_warehouse(
        sink_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several sinks share the topics' partitions on a server: the registration may have gone to another
    sink. A status event of a project the sink does not know sends it to the projects table first."""
    from sinks.clickhouse import sink as sink_module
    from sinks.clickhouse.sink import write_records

    monkeypatch.setattr(sink_module, "PROJECTS_REFRESH_S", 0.0)
    s, t = sink_settings, sink_settings.topics
    status = {**sample_records()["retrieval_status"], "request_id": "r-late", "project_id": "P-LATE",
              "study_instance_uids": ["2.25.7"]}
    with running_sink(s) as sink:
        ch = sink.client
        write_records(ch, "project_registration", [registered("P-LATE")])  # as another sink would
        produce_all(s, [(t.retrieval_status, "retrieval_status", "r-late", status)])
        wait_until(lambda: ch.query("SELECT count() FROM retrieval_events").result_rows[0][0] == 1,
                   what="the status event")
        got = ch.query("SELECT study_instance_uids FROM retrieval_events").result_rows
        assert [tuple(r) for r in got] == [(["2.25.7"],)]
        assert ch.query("SELECT count() FROM retrieval_events_identified").result_rows[0][0] == 0


def test_a_project_another_sink_registered_again_as_identified_is_private_again(
        sink_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink knows the project as de-identified; another sink writes its newer registration as
    identified. The next status event's UIDs go to stewards only (the sink read the projects table only
    for projects it did not know, so it kept the project de-identified until it restarted)."""
    import dataclasses
    from datetime import timedelta

    from sinks.clickhouse import sink as sink_module
    from sinks.clickhouse.sink import write_records

    monkeypatch.setattr(sink_module, "PROJECTS_REFRESH_S", 0.0)
    s, t = sink_settings, sink_settings.topics
    first = registered("P-RE")
    again = dataclasses.replace(Project.from_record(registered("P-RE", identified=True)),
                                time=Project.from_record(first).time + timedelta(days=1)).record()
    status = sample_records()["retrieval_status"]
    with running_sink(s) as sink:
        ch = sink.client
        write_records(ch, "project_registration", [first])  # as another sink would
        one = {**status, "request_id": "r1", "project_id": "P-RE", "study_instance_uids": ["2.25.1"]}
        produce_all(s, [(t.retrieval_status, "retrieval_status", "r1", one)])
        wait_until(lambda: ch.query("SELECT count() FROM retrieval_events").result_rows[0][0] == 1,
                   what="the first status event, for analysts")
        write_records(ch, "project_registration", [again])
        two = {**status, "request_id": "r2", "project_id": "P-RE", "study_instance_uids": ["1.2.840.9"]}
        produce_all(s, [(t.retrieval_status, "retrieval_status", "r2", two)])
        wait_until(lambda: ch.query("SELECT count() FROM retrieval_events_identified").result_rows[0][0] == 1,
                   what="the second status event, for stewards")
        seen = ch.query("SELECT request_id, study_instance_uids FROM retrieval_events ORDER BY request_id")
        assert [tuple(r) for r in seen.result_rows] == [("r1", ["2.25.1"]), ("r2", [])]  # UIDs for stewards
