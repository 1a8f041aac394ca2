"""Routing by content first (received_instance v4): an instance that says it kept the hospital's UIDs
(``uids_retained`` true) goes to the stewards' ``received_instances_identified`` whatever its project's
registrations say, and ``release_instances`` never moves it; one that says its UIDs were remapped still
needs its project known as de-identified without "Retain UIDs"; an event without the field (v3, an older
SCP) routes by the registrations as before (real Kafka, real chDB, the real role check)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from schemas import HISTORY_DIR
from sinks.clickhouse.access import policy_for
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients, run_readonly
from sinks.clickhouse.sink import release_instances, write_records
from sinks.dicom.projects import Project, publish
from streams import serde

from .factories import ddl_until, registered
from .kafka_helpers import produce_all, produce_raw, sink_knowing, wait_until
from .test_rows import sample_records
from .test_unknown_project_instances import instance, where

pytestmark = pytest.mark.integration


def flagged(project_id: str, sop: str, retained: bool | None) -> dict[str, Any]:
    return {**instance(project_id, sop), "uids_retained": retained}


def v3_bytes(rec: dict[str, Any]) -> bytes:
    """``rec`` as an SCP older than v4 wrote it: received_instance v3, which has no ``uids_retained``."""
    raw = json.loads((HISTORY_DIR / "received_instance.v3.avsc").read_text())
    writer = fastavro.parse_schema(raw)
    fingerprint = next(fp for fp, sv in serde.registry().by_fingerprint.items()
                       if sv.name == "received_instance" and sv.version == 3)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, {k: v for k, v in rec.items() if k != "uids_retained"})
    return serde.MAGIC + fingerprint + body.getvalue()


def test_an_instance_that_kept_its_uids_never_reaches_analysts_whatever_the_registrations(
        sink_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from sinks.clickhouse import sink as sink_module

    monkeypatch.setattr(sink_module, "PROJECTS_REFRESH_S", 0.0)
    s, t = sink_settings, sink_settings.topics
    # registered keyed (de-identified, no "Retain UIDs"), but the instance says it kept the UIDs: a
    # registration that is wrong, or one the SCP did not see yet
    with sink_knowing(s, registered("P-KEYED")) as sink:
        ch = sink.client
        produce_all(s, [(t.received_instances, "received_instance", sop, flagged(p, sop, kept))
                        for p, sop, kept in (("P-KEYED", "1.2.840.91", True), ("P-KEYED", "2.25.91", False),
                                             ("P-LATE", "1.2.840.92", True), ("P-LATE", "2.25.92", False))])
        # v3 events (no flag): the registrations decide, as before
        for p, sop in (("P-KEYED", "2.25.93"), ("P-LATE", "2.25.94")):
            produce_raw(s, t.received_instances, sop.encode(), v3_bytes(instance(p, sop)))
        wait_until(lambda: ch.query("SELECT (SELECT count() FROM received_instances) + (SELECT count() FROM "
                                    "received_instances_identified)").result_rows[0][0] == 6,
                   what="the instances")
        assert where(ch, "received_instances") == [("P-KEYED", "2.25.91"), ("P-KEYED", "2.25.93")]
        assert where(ch, "received_instances_identified") == [
            ("P-KEYED", "1.2.840.91"), ("P-LATE", "1.2.840.92"), ("P-LATE", "2.25.92"), ("P-LATE", "2.25.94")]
        flags = ch.query("SELECT sop_instance_uid, uids_retained FROM received_instances_identified FINAL "
                         "ORDER BY ALL").result_rows
        assert [tuple(r) for r in flags] == [("1.2.840.91", True), ("1.2.840.92", True), ("2.25.92", False),
                                             ("2.25.94", None)]

        # P-LATE's keyed registration arrives: what was held back only for it moves, the flagged one stays
        publish(s.kafka, t, Project.from_record(registered("P-LATE")))
        wait_until(lambda: where(ch, "received_instances") == [
            ("P-KEYED", "2.25.91"), ("P-KEYED", "2.25.93"), ("P-LATE", "2.25.92"), ("P-LATE", "2.25.94")],
                   what="the held-back instances released")
        wait_until(lambda: where(ch, "received_instances_identified") == [
            ("P-KEYED", "1.2.840.91"), ("P-LATE", "1.2.840.92")], what="the stewards' copies deleted")
        analyst = policy_for(["analyst"])
        for sql in ("SELECT * FROM received_instances", "SELECT * FROM image_occurrence"):
            assert "1.2.840.9" not in str(run_readonly(ch, sql, "csv", policy=analyst)), sql


def test_release_never_moves_a_row_that_kept_its_uids(ch: Client) -> None:
    write_records(ch, "received_instance", [  # before the registration: all with stewards
        flagged("P-LATE", "1.2.840.95", True), flagged("P-LATE", "2.25.95", False),
        flagged("P-LATE", "2.25.96", None)])
    assert where(ch, "received_instances") == []
    write_records(ch, "project_registration", [registered("P-LATE")])
    assert release_instances(ch, None, wait=True) == 2
    assert where(ch, "received_instances") == [("P-LATE", "2.25.95"), ("P-LATE", "2.25.96")]
    assert where(ch, "received_instances_identified") == [("P-LATE", "1.2.840.95")]
    assert release_instances(ch, ["P-LATE"], wait=True) == 0
    # written directly (write_records, the backfill's path): the same content-first routing
    identified = {**flagged("P-LATE", "1.2.840.99", False), "deidentified": False}
    write_records(ch, "received_instance", [flagged("P-LATE", "1.2.840.98", True), identified])
    assert ("P-LATE", "1.2.840.98") not in where(ch, "received_instances")
    assert ("P-LATE", "1.2.840.99") not in where(ch, "received_instances")


def test_migration_030_adds_the_flag_and_leaves_older_rows_as_they_were(tmp_path: Path) -> None:
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 28))
        write_records(client, "project_registration", [registered("P-DE")])
        client.insert("rs.received_instances", [["P-DE", "1.2", "1.2.3", "2.25.1", True]],
                      column_names=["project_id", "study_instance_uid", "series_instance_uid",
                                    "sop_instance_uid", "deidentified"])
        assert "030_uids_retained" in migrate(client, "rs")
        for table in ("received_instances", "received_instances_identified"):
            cols = [r[0] for r in client.query(f"DESCRIBE rs.{table}").result_rows]
            assert cols[cols.index("deidentified") + 1] == "uids_retained", table
        assert [tuple(r) for r in client.query("SELECT sop_instance_uid, uids_retained FROM "
                                               "rs.received_instances").result_rows] == [("2.25.1", None)]
        write_records(client, "received_instance", [{**sample_records()["received_instance"],
                                                     "project_id": "P-DE", "uids_retained": False}])
        assert client.query("SELECT count() FROM rs.received_instances").result_rows[0][0] == 2
    finally:
        close_readonly_clients()
        client.close()
