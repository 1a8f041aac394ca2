"""``cohort import-status`` (the radiology team's outcome of a manual retrieval, as status events):
steward only and audited; each status in its request's project (``--project`` only confirms); for a
project that is not identified, research values only (the manifest's PACS study UID keyed, the error
text de-identified), as the DICOM worker's events for it. Real Kafka and embedded ClickHouse."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from processors.ingest.pseudonym import keyed_uid
from processors.ingest.research import research_request
from radstream.cli import main
from radstream.config import Settings
from radstream.text_deid import research_key
from sinks.dicom.projects import StaticProjects
from streams import serde
from tests.helpers_chdb import seed_store_of
from tests.sinks.dicom.helpers import audit_events, project, register_projects, role_env
from tests.streams.helpers import consume

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
# the PACS's own values of the two studies (what the manifest sent to radiology holds)
UID_D, ACC_D, PID_D = "1.2.840.113619.2.55.3.604688119.971.1718288400.123", "RAD7700123", "MRN4455661"
UID_I, ACC_I, PID_I = "1.2.840.113619.2.55.3.604688119.971.1718288400.456", "RAD7700456", "MRN4455662"


def _request(key: bytes, rid: str, project_id: str, accession: str, uid: str, patient: str) -> dict[str, Any]:
    """A request as ``cohort retrieve`` sends a radiology list's row: research values + study reference."""
    return {"request_id": rid, "action": "request", "project_id": project_id, "requester": "carol",
            **research_request(key, "default", accession=accession, study_uid=uid, patient_id=patient,
                               study_date="20261101"),
            "destination_ae": "RESEARCH", "source": "cohort", "requested_time": NOW}


def _setup(topic_settings: Settings, tmp_path: Path) -> Settings:
    """Requests RD (de-identified project IRB-D) and RI (identified project P2) in the warehouse, the
    projects registered on the projects topic (where the DICOM worker learns them too)."""
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.query import close_readonly_clients
    from sinks.clickhouse.sink import write_records

    settings = topic_settings.replace(state_dir=str(tmp_path), worker={"web_port": 1})
    register_projects(settings, StaticProjects([project("IRB-D", identified=False), project("P2")]))
    key = research_key(settings)
    seed_store_of(settings.clickhouse.url, settings.clickhouse.database)  # a migrated copy (helpers_chdb)
    client = open_client(settings.clickhouse)
    try:
        migrate(client, settings.clickhouse.database)  # applies nothing; checks the copy is up to date
        write_records(client, "retrieval_requested", [_request(key, "RD", "IRB-D", ACC_D, UID_D, PID_D),
                                                      _request(key, "RI", "P2", ACC_I, UID_I, PID_I)])
    finally:
        client.close()
        close_readonly_clients()
    return settings


def _manifest(settings: Settings, project_id: str) -> dict[str, str]:
    """The one row of ``cohort export --project`` (opened to the PACS's values, by the local admin)."""
    out = CliRunner().invoke(main, ["cohort", "export", "--project", project_id],
                             env=role_env(settings, "sally", "steward"))
    assert out.exit_code == 0, out.output
    (row,) = list(csv.DictReader(io.StringIO(out.output)))
    return row


def _returned(path: Path, rows: list[dict[str, str]], error: str) -> Path:
    """The manifest as radiology sends it back: its columns, plus state, counts and a note."""
    cols = [*rows[0], "state", "completed", "failed", "error"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        w.writerows({**r, "state": "partial", "completed": "3", "failed": "1", "error": error} for r in rows)
    return path


def _records(settings: Settings, n: int) -> list[Any]:
    msgs = consume(settings, settings.topics.retrieval_status, n)
    assert len(msgs) == n
    return msgs


def _produced(settings: Settings) -> int:
    """How many records the status topic holds (end offsets)."""
    topic = settings.topics.retrieval_status
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "probe-end"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def _audited(settings: Settings) -> list[tuple[str, bool, dict[str, Any]]]:
    path = Path(settings.auth.audit_log)
    entries = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [(e["actor"], e["allowed"], {**json.loads(e["detail"] or "{}"), "rows": e["rows"],
                                         "project": e["project"]})
            for e in entries if e["action"] == "cohort.import_status"]


def test_an_analyst_is_refused_and_audited(topic_settings: Settings, tmp_path: Path) -> None:
    settings = _setup(topic_settings, tmp_path)
    returned = _returned(tmp_path / "done.csv", [_manifest(settings, "IRB-D")], "")
    res = CliRunner().invoke(main, ["cohort", "import-status", str(returned)],
                             env=role_env(settings, "rita", "analyst"))
    assert res.exit_code == 1, res.output
    assert "needs the steward role" in res.output
    assert _produced(settings) == 0
    assert [(a, ok) for a, ok, _ in _audited(settings)] == [("rita", False)]
    seen = audit_events(settings, 3)  # the manifest's query and export (sally), the refusal
    refused = [e for e in seen if e["action"] == "cohort.import_status"]
    assert [(e["actor"], e["allowed"]) for e in refused] == [("rita", False)]  # on the audit topic too


def test_a_deidentified_projects_status_carries_research_values_only(topic_settings: Settings,
                                                                      tmp_path: Path) -> None:
    settings = _setup(topic_settings, tmp_path)
    row = _manifest(settings, "IRB-D")
    assert (row["request_id"], row["study_instance_uid"], row["accession"]) == ("RD", UID_D, ACC_D)
    note = f"study {UID_D} ({ACC_D}, patient {PID_D}, John Smith) has 1 image on the old archive"
    returned = _returned(tmp_path / "done.csv", [row], note)
    res = CliRunner().invoke(main, ["cohort", "import-status", str(returned)],
                             env=role_env(settings, "sally", "steward"))
    assert res.exit_code == 0, res.output
    assert "recorded 1 status(es), rejected 0" in res.output
    (msg,) = _records(settings, 1)
    raw = msg.value()
    for clinical in (UID_D, ACC_D, PID_D, "John Smith"):
        assert clinical.encode() not in raw, clinical
    event = serde.decode("retrieval_status", raw)
    research = keyed_uid(research_key(settings), UID_D)  # the research store's name of the study
    assert (event["project_id"], event["state"], event["completed"], event["failed"]) == (
        "IRB-D", "partial", 3, 1)
    assert (event["study_instance_uid"], event["study_instance_uids"]) == (research, [research])
    assert event["error"] is not None and research in event["error"] and "[ACCESSION]" in event["error"]
    assert [(a, ok, d["rows"], d["projects"]) for a, ok, d in _audited(settings)] == [
        ("sally", True, 1, ["IRB-D"])]

    # and in the warehouse: the analysts' retrieval_events names the study by its research UID only
    from sinks.clickhouse.access import ROLES_DIR, policy_for
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.query import close_readonly_clients, run_readonly
    from sinks.clickhouse.sink import write_records

    client = open_client(settings.clickhouse)
    try:
        write_records(client, "project_registration", [project("IRB-D", identified=False).record()])
        write_records(client, "retrieval_status", [event])
        seen = str(run_readonly(client, "SELECT * FROM retrieval_events", "tsv",
                                policy=policy_for(["analyst"], ROLES_DIR)))
    finally:
        client.close()
        close_readonly_clients()
    assert research in seen and UID_D not in seen


def test_an_identified_projects_status_keeps_the_pacs_uid(topic_settings: Settings, tmp_path: Path) -> None:
    settings = _setup(topic_settings, tmp_path)
    row = _manifest(settings, "P2")
    returned = _returned(tmp_path / "done.csv", [row], f"study {UID_I} partly on the old archive")
    res = CliRunner().invoke(main, ["cohort", "import-status", str(returned)],
                             env=role_env(settings, "sally", "steward"))
    assert res.exit_code == 0, res.output
    event = serde.decode("retrieval_status", _records(settings, 1)[0].value())
    # the sink keeps it in the stewards' retrieval_events_identified (rows.for_identified_project)
    assert (event["project_id"], event["study_instance_uid"]) == ("P2", UID_I)
    assert event["error"] == f"study {UID_I} partly on the old archive"


def test_project_is_the_requests_and_a_mismatching_project_is_refused(topic_settings: Settings,
                                                                       tmp_path: Path) -> None:
    settings = _setup(topic_settings, tmp_path)
    returned = _returned(tmp_path / "done.csv", [_manifest(settings, "P2")], "")
    runner = CliRunner()
    env = role_env(settings, "sally", "steward")
    # naming the de-identified project for the identified project's request: nothing is sent
    res = runner.invoke(main, ["cohort", "import-status", str(returned), "--project", "IRB-D"], env=env)
    assert res.exit_code == 1, res.output
    assert "requests of project(s) P2, not IRB-D" in res.output
    assert _produced(settings) == 0
    assert [(a, ok, d["project"]) for a, ok, d in _audited(settings)] == [("sally", False, "IRB-D")]
    # the matching project only confirms
    res = runner.invoke(main, ["cohort", "import-status", str(returned), "--project", "P2"], env=env)
    assert res.exit_code == 0, res.output
    event = serde.decode("retrieval_status", _records(settings, 1)[0].value())
    assert (event["project_id"], event["study_instance_uid"]) == ("P2", UID_I)


def test_help_says_steward_and_what_project_does() -> None:
    out = CliRunner().invoke(main, ["cohort", "import-status", "--help"], terminal_width=200).output
    text = " ".join(out.split())
    assert "Steward only" in text and "refused whole" in text, text


def test_a_status_the_broker_refuses_is_not_counted_as_recorded(topic_settings: Settings,
                                                                tmp_path: Path) -> None:
    # a topic that takes no record (max.message.bytes=1) refuses the event the way a missing write ACL
    # does: a delivery report with an error, nothing left in the queue
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    settings = _setup(topic_settings, tmp_path)
    returned = _returned(tmp_path / "done.csv", [_manifest(settings, "P2")], "")
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.topics.retrieval_status, incremental_configs=[
        ConfigEntry("max.message.bytes", "1", incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result(30)
    out = CliRunner().invoke(main, ["cohort", "import-status", str(returned)],
                             env=role_env(settings, "sally", "steward"))
    assert out.exit_code == 1, out.output
    assert "Kafka did not confirm 1 of 1 status event(s)" in out.output and "recorded 1" not in out.output
    assert _produced(settings) == 0
    assert [(ok, d["rows"], d["unconfirmed"]) for _, ok, d in _audited(settings)] == [(True, 0, 1)]


def test_the_note_keys_uids_at_a_full_stop_and_uuid_uids_and_drops_dates_without_a_patient(
        tmp_path: Path) -> None:
    from radstream.cli.cohort import _research_error

    settings = Settings(state_dir=str(tmp_path))
    key = research_key(settings)
    req = {"study_instance_uid": "", "accession": "ACC-1", "patient_id": ""}
    uuid_uid = "2.25.329800735698586629295641978511506172918"
    note = f"Moved study {UID_D}. Then {uuid_uid} failed on 2026-11-02."
    out = _research_error(settings, key, note, {}, req)
    assert UID_D not in out and uuid_uid not in out and keyed_uid(key, UID_D) in out
    assert "2026-11-02" not in out and "[DATE]" in out
    # with the patient's pseudonym the date is shifted by that patient's days, as in the images
    shifted = _research_error(settings, key, "Seen 2026-11-02.", {}, {**req, "patient_id": "psn-" + "a" * 32})
    assert "2026-11-02" not in shifted and "[DATE]" not in shifted
