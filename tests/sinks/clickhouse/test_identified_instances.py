"""Instances of identified projects (the hospital's own patient id, accession, UIDs, path) are kept from
analysts: the sink writes them to ``received_instances_identified``, which only stewards may read, and
ddl/023 moves the ones written before (real Kafka, real chDB, the real role check)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.access import AccessDenied, policy_for
from sinks.clickhouse.migrate import DDL_DIR, migrate, statements
from sinks.clickhouse.query import run_readonly

from .kafka_helpers import produce_all, running_sink, wait_until
from .test_rows import sample_records

pytestmark = pytest.mark.integration


def test_an_identified_projects_instances_are_for_stewards_only(sink_settings: Settings) -> None:
    s, t = sink_settings, sink_settings.topics
    deid = sample_records()["received_instance"]
    ident = {**deid, "project_id": "P-ID", "deidentified": False, "sop_instance_uid": "9.9.9.1",
             "accession": "A-REAL", "patient_id": "MRN-REAL", "path": "/store/P-ID/9/9.9/9.9.9.1.dcm"}
    produce_all(s, [(t.received_instances, "received_instance", "1.2.3.4", deid),
                    (t.received_instances, "received_instance", "9.9.9.1", ident)])
    with running_sink(s) as sink:
        ch = sink.client
        both = ("SELECT (SELECT count() FROM received_instances) + "
                "(SELECT count() FROM received_instances_identified)")
        wait_until(lambda: ch.query(both).result_rows[0][0] == 2, what="both instances")
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


def test_migration_023_moves_identified_rows_written_before(ch: Client, ch_settings: Settings) -> None:
    db = ch_settings.clickhouse.database
    ch.command(f"DROP TABLE {db}.received_instances_identified")  # as a store before 023 was
    ch.command(f"INSERT INTO {db}.received_instances (project_id, study_instance_uid, series_instance_uid, "
               "sop_instance_uid, sop_class_uid, accession, patient_id, path, size_bytes, deidentified, "
               "time) VALUES ('P-ID', '9', '9.9', '9.9.9', '1.2', 'A-REAL', 'MRN-REAL', '/s/9.9.9.dcm', 1, "
               "false, now()), ('P-7', '1.2', '1.2.3', '1.2.3.4', '1.2', 'ACC-1F', 'psn-77', "
               "'/s/1.2.3.4.dcm', 1, true, now())")
    sql = (Path(DDL_DIR) / "023_identified_instances.sql").read_text()
    for stmt in statements(sql, db):
        ch.command(stmt, settings={"mutations_sync": 2} if stmt.startswith("ALTER") else None)
    left = ch.query(f"SELECT project_id FROM {db}.received_instances").result_rows
    moved = ch.query(f"SELECT project_id, patient_id FROM {db}.received_instances_identified").result_rows
    assert [tuple(r) for r in left] == [("P-7",)] and [tuple(r) for r in moved] == [("P-ID", "MRN-REAL")]
    migrate(ch, db)  # recorded as applied: nothing runs again
