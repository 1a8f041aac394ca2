"""Fail closed: a received instance reaches the analysts' ``received_instances`` only when its project is
known to be de-identified without "Retain UIDs". An instance of a project registered as identified (even
one the SCP de-identified because its own view of the projects said otherwise), of a project that
retains UIDs, or of a project whose registration is not in the warehouse yet goes to the stewards'
``received_instances_identified``. Once a registration that was never anything but de-identified without
"Retain UIDs" arrives, the instances held back move to the analysts' table (``release_instances``);
ddl/028 moves what the sink wrote before (real chDB, and real Kafka for the sink)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.access import policy_for
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients, run_readonly
from sinks.clickhouse.sink import write_records
from sinks.dicom.projects import Project, publish

from .factories import BASE_TIME, ddl_until, registered
from .kafka_helpers import produce_all, running_sink, sink_knowing, wait_until
from .test_rows import sample_records

pytestmark = pytest.mark.integration


def instance(project_id: str, sop: str, deidentified: bool = True) -> dict[str, Any]:
    return {**sample_records()["received_instance"], "project_id": project_id, "sop_instance_uid": sop,
            "deidentified": deidentified}


def retaining(project_id: str, later: timedelta = timedelta(0)) -> dict[str, Any]:
    base = Project.from_record(registered(project_id))
    return dataclasses.replace(base, deid=dataclasses.replace(base.deid, retain_uids=True),
                               time=BASE_TIME + later).record()


def reregistered(project_id: str, later: timedelta) -> dict[str, Any]:
    """A de-identified registration without "Retain UIDs", ``later`` than ``registered``'s."""
    return dataclasses.replace(Project.from_record(registered(project_id)), time=BASE_TIME + later).record()


def where(ch: Client, table: str) -> list[tuple[str, str]]:
    rows = ch.query(f"SELECT project_id, sop_instance_uid FROM {table} FINAL ORDER BY ALL").result_rows
    return [(str(p), str(s)) for p, s in rows]


def test_only_instances_of_projects_known_deidentified_reach_analysts(ch: Client) -> None:
    write_records(ch, "project_registration", [registered("P-DE"), registered("P-ID", identified=True),
                                               retaining("P-KEEP")])
    write_records(ch, "received_instance", [
        instance("P-DE", "2.25.1"),
        instance("P-UNKNOWN", "1.2.840.5"),  # registration not in the warehouse (yet)
        instance("P-ID", "2.25.3"),  # identified here; the SCP's view said de-identify
        instance("P-ID", "1.2.840.4", deidentified=False),
        instance("P-KEEP", "1.2.840.6")])
    assert where(ch, "received_instances") == [("P-DE", "2.25.1")]
    assert where(ch, "received_instances_identified") == [
        ("P-ID", "1.2.840.4"), ("P-ID", "2.25.3"), ("P-KEEP", "1.2.840.6"), ("P-UNKNOWN", "1.2.840.5")]


def test_release_moves_held_instances_once_and_only_of_projects_never_registered_otherwise(
        ch: Client) -> None:
    from sinks.clickhouse.sink import release_instances

    write_records(ch, "received_instance", [  # before any registration: all held back
        instance("P-LATE", "2.25.1"), instance("P-LATE", "2.25.2"), instance("P-LATE", "2.25.9", False),
        instance("P-WAS-KEEP", "1.2.840.7"), instance("P-ID", "2.25.3"), instance("P-OTHER", "2.25.4")])
    write_records(ch, "project_registration", [
        registered("P-LATE"), registered("P-ID", identified=True), registered("P-OTHER"),
        # retained UIDs first: its held-back instance may carry the hospital's UIDs
        retaining("P-WAS-KEEP"), reregistered("P-WAS-KEEP", timedelta(hours=1))])
    assert release_instances(ch, ["P-LATE", "P-ID", "P-WAS-KEEP"], wait=True) == 2
    assert where(ch, "received_instances") == [("P-LATE", "2.25.1"), ("P-LATE", "2.25.2")]
    assert where(ch, "received_instances_identified") == [
        ("P-ID", "2.25.3"), ("P-LATE", "2.25.9"), ("P-OTHER", "2.25.4"), ("P-WAS-KEEP", "1.2.840.7")]
    # idempotent: nothing copied twice, nothing lost
    assert release_instances(ch, ["P-LATE"], wait=True) == 0
    assert ch.query("SELECT count() FROM received_instances").result_rows[0][0] == 2
    # a copy made while the DELETE did not get through (a crash between them): not copied again, deleted
    ch.command("INSERT INTO received_instances_identified SELECT * FROM received_instances")
    assert release_instances(ch, None, wait=True) == 1  # and None: every project (P-OTHER)
    assert ch.query("SELECT count() FROM received_instances").result_rows[0][0] == 3
    assert where(ch, "received_instances_identified") == [
        ("P-ID", "2.25.3"), ("P-LATE", "2.25.9"), ("P-WAS-KEEP", "1.2.840.7")]


def test_migration_028_moves_instances_of_projects_not_known_deidentified(tmp_path: Path) -> None:
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 27))
        write_records(client, "project_registration",
                      [registered("P-DE"), registered("P-ID", identified=True)])
        # as the sink wrote them before: whatever was not known as identified or retaining UIDs
        client.insert("rs.received_instances", [[p, "1.2", "1.2.3", sop, True] for p, sop in (
            ("P-DE", "2.25.1"), ("P-UNKNOWN", "1.2.840.5"), ("P-ID", "2.25.3"))],
            column_names=["project_id", "study_instance_uid", "series_instance_uid", "sop_instance_uid",
                          "deidentified"])
        assert migrate(client, "rs", ddl_until(tmp_path / "ddl28", 28)) == ["028_unknown_project_instances"]
        assert where(client, "rs.received_instances") == [("P-DE", "2.25.1")]
        assert where(client, "rs.received_instances_identified") == [("P-ID", "2.25.3"),
                                                                     ("P-UNKNOWN", "1.2.840.5")]
    finally:
        close_readonly_clients()
        client.close()


def test_the_sink_holds_back_instances_of_unknown_projects_until_registered(
        sink_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from sinks.clickhouse import sink as sink_module

    monkeypatch.setattr(sink_module, "PROJECTS_REFRESH_S", 0.0)
    s, t = sink_settings, sink_settings.topics
    early = [("P-LATE", "2.25.1"), ("P-ELSEWHERE", "2.25.2"), ("P-ID", "2.25.3")]
    with sink_knowing(s, registered("P-ID", identified=True)) as sink:
        ch = sink.client
        produce_all(s, [(t.received_instances, "received_instance", sop, instance(p, sop))
                        for p, sop in early])
        wait_until(lambda: ch.query("SELECT (SELECT count() FROM received_instances) + (SELECT count() FROM "
                                    "received_instances_identified)").result_rows[0][0] == 3,
                   what="the instances")
        analyst = policy_for(["analyst"])
        for sql in ("SELECT * FROM received_instances", "SELECT * FROM image_occurrence"):
            assert "2.25." not in str(run_readonly(ch, sql, "csv", policy=analyst)), sql
        assert where(ch, "received_instances_identified") == sorted(early)

        # the registration comes through this sink's projects topic ...
        publish(s.kafka, t, Project.from_record(registered("P-LATE")))
        # ... or another sink wrote it; this sink looks it up with the project's next instance
        write_records(ch, "project_registration", [registered("P-ELSEWHERE")])
        produce_all(s, [(t.received_instances, "received_instance", "2.25.5",
                         instance("P-ELSEWHERE", "2.25.5"))])
        wait_until(lambda: where(ch, "received_instances") == [
            ("P-ELSEWHERE", "2.25.2"), ("P-ELSEWHERE", "2.25.5"), ("P-LATE", "2.25.1")],
                   what="the held-back instances released to analysts")
        wait_until(lambda: where(ch, "received_instances_identified") == [("P-ID", "2.25.3")],
                   what="the stewards' copies deleted")
        seen = str(run_readonly(ch, "SELECT sop_instance_uid FROM received_instances", "csv", policy=analyst))
        assert "2.25.1" in seen and "2.25.3" not in seen


def test_a_project_once_retaining_uids_stays_private_after_a_keyed_registration(ch: Client) -> None:
    """An instance stored while the project retained the hospital's UIDs may come after the project was
    registered again without "Retain UIDs" (late, or delivered again); nothing in it says which UIDs it
    carries, so such a project's instances stay with stewards."""
    write_records(ch, "project_registration", [retaining("P-RK"), reregistered("P-RK", timedelta(hours=1))])
    write_records(ch, "received_instance", [instance("P-RK", "1.2.840.8")])
    assert where(ch, "received_instances") == []
    assert where(ch, "received_instances_identified") == [("P-RK", "1.2.840.8")]


def test_an_unreadable_projects_table_fails_no_record(
        sink_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sink reads the registrations again now and then; when that fails, it routes with what it knows
    (a project it does not know stays private) instead of dead-lettering the records."""
    from sinks.clickhouse import sink as sink_module

    monkeypatch.setattr(sink_module, "PROJECTS_REFRESH_S", 0.0)
    s, t = sink_settings, sink_settings.topics
    with sink_knowing(s, registered("P-DE")) as sink:
        ch = sink.client
        ch.command("RENAME TABLE projects TO projects_away")
        try:
            produce_all(s, [(t.received_instances, "received_instance", sop, instance(p, sop))
                            for p, sop in (("P-DE", "2.25.1"), ("P-UNKNOWN", "2.25.2"))])
            wait_until(lambda: (where(ch, "received_instances"), where(ch, "received_instances_identified"))
                       == ([("P-DE", "2.25.1")], [("P-UNKNOWN", "2.25.2")]), what="both instances stored")
        finally:
            ch.command("RENAME TABLE projects_away TO projects")


def test_held_back_instances_are_released_without_more_records_of_their_project(
        sink_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another sink wrote the registration, and no other instance of the project comes: the sink looks the
    projects it holds instances of up again between batches."""
    from sinks.clickhouse import sink as sink_module

    monkeypatch.setattr(sink_module, "PROJECTS_REFRESH_S", 0.2)
    s, t = sink_settings, sink_settings.topics
    with running_sink(s) as sink:
        ch = sink.client
        produce_all(s, [(t.received_instances, "received_instance", "2.25.1", instance("P-QUIET", "2.25.1"))])
        wait_until(lambda: where(ch, "received_instances_identified") == [("P-QUIET", "2.25.1")],
                   what="the instance held back")
        write_records(ch, "project_registration", [registered("P-QUIET")])  # as another sink would
        wait_until(lambda: where(ch, "received_instances") == [("P-QUIET", "2.25.1")], timeout=30,
                   what="the instance released")
