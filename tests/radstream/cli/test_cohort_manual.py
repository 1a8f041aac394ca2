"""Manual retrieval: ``cohort export --project`` (open requests from the warehouse) and
``cohort import-status`` (their outcome as status events), on real Kafka and embedded ClickHouse."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from processors.ingest.research import research_report, research_request
from radstream.cli import main
from radstream.config import Settings, settings_env
from radstream.text_deid import research_key
from streams import serde
from tests.helpers_chdb import seed_store_of
from tests.streams.helpers import consume

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)


def _request(key: bytes, rid: str, accession: str, project: str = "IRB-5") -> dict[str, Any]:
    """A request as the cohort CLI sends it: in research terms, with the study reference."""
    return {"request_id": rid, "action": "request", "project_id": project, "requester": "carol",
            **research_request(key, "default", accession=accession), "destination_ae": "RESEARCH",
            "source": "cohort", "requested_time": NOW}


def _seed(settings: Settings) -> None:
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.sink import write_records

    key = research_key(settings)
    seed_store_of(settings.clickhouse.url, settings.clickhouse.database)  # a migrated copy (helpers_chdb)
    client = open_client(settings.clickhouse)
    try:
        migrate(client, settings.clickhouse.database)  # applies nothing; checks the copy is up to date
        write_records(client, "retrieval_requested", [
            _request(key, "R1", "M1"), _request(key, "R2", "M2"), _request(key, "R3", "M3"),
            _request(key, "R4", "M4"), _request(key, "X1", "M1", project="OTHER")])
        write_records(client, "retrieval_status", [
            {"request_id": "R1", "project_id": "IRB-5", "state": "completed", "time": NOW}])
        write_records(client, "retrieval_requested", [{**_request(key, "R4", "M4"), "action": "cancel"}])
        write_records(client, "report_finalized", [research_report({  # the analysts' copy, as the worker's
            "event_id": "e2", "accession": "M2", "report_id": "r2", "version": 1, "status": "final",
            "patient_id": "P2", "modality": "CT", "study_instance_uid": "1.2.3.4", "observation_time": NOW,
            "received_time": NOW, "source_format": "json", "text": "FINDINGS: Normal."}, key)])
    finally:
        client.close()
        from sinks.clickhouse.query import close_readonly_clients

        close_readonly_clients()


def test_export_open_requests_then_import_their_outcome(topic_settings: Settings, tmp_path: Path) -> None:
    settings = topic_settings.replace(state_dir=str(tmp_path), worker={"web_port": 1})  # no worker runs
    _seed(settings)
    env = settings_env(settings)
    runner = CliRunner()

    out = runner.invoke(main, ["cohort", "export", "--project", "IRB-5"], env=env)
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert [r["request_id"] for r in rows] == ["R2", "R3"]  # R1 is done, R4 cancelled, X1 another project
    # the warehouse holds research values only; the manifest for radiology has the PACS's (opened by the
    # local admin, who holds the steward role; audited)
    assert (rows[0]["accession"], rows[0]["modality"], rows[0]["study_instance_uid"], rows[0]["patient_id"],
            rows[0]["study_date"]) == ("M2", "CT", "1.2.3.4", "P2", "20261120")
    assert (rows[1]["accession"], rows[1]["study_instance_uid"], rows[1]["patient_id"]) == ("M3", "", "")
    entries = [json.loads(line) for line in Path(settings.auth.audit_log).read_text().splitlines()]
    opened = [e for e in entries if e["action"] == "cohort.export"]
    assert [(e["allowed"], json.loads(e["detail"])) for e in opened] == [(True, {"studies": 2})], entries[-2:]

    status = tmp_path / "done.csv"
    status.write_text("request_id,state,completed,failed,error\n"
                      "R2,completed,120,0,\n"
                      "R3,failed,,,study not found in the archive\n"
                      "R9,completed,1,0,\n"
                      "R2,finished,1,0,\n")
    res = runner.invoke(main, ["cohort", "import-status", str(status)], env=env)
    assert res.exit_code == 1, res.output
    assert "recorded 2 status(es), rejected 2" in res.output
    assert "unknown request_id 'R9'" in res.output and "state 'finished'" in res.output
    msgs = consume(settings, settings.topics.retrieval_status, 2)
    events = [serde.decode("retrieval_status", m.value()) for m in msgs]
    got = sorted((e["request_id"], e["state"], e["completed"], e["error"], e["pacs_ae"]) for e in events)
    assert got == [("R2", "completed", 120, None, "manual"),
                   ("R3", "failed", None, "study not found in the archive", "manual")]
    assert {e["project_id"] for e in events} == {"IRB-5"}


def test_unreachable_warehouse_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # a ClickHouse server address where nothing listens: every warehouse read of the cohort commands
    # ends in one readable line and exit code 1
    settings = Settings(state_dir=str(tmp_path)).replace(clickhouse={"url": "http://127.0.0.1:9"})
    env = settings_env(settings)
    runner = CliRunner()
    queries = [["cohort", "retrieve", "--sql", "SELECT accession FROM reports_latest", "--project", "P",
                "--destination", "RESEARCH", "--dry-run"],
               ["cohort", "export", "--project", "P"]]
    for args in queries:
        res = runner.invoke(main, args, env=env)
        assert res.exit_code == 1, res.output
        assert "Error: cannot " in res.output and "Traceback" not in res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)


def test_retrieve_help_says_what_the_sql_query_may_return() -> None:
    # the first column may be a study_ref or a research accession (``_rows_from_sql``)
    out = CliRunner().invoke(main, ["cohort", "retrieve", "--help"], terminal_width=200).output
    line = " ".join(out.split("--sql", 1)[1].split("--project", 1)[0].split())
    assert "study_ref" in line and "accession" in line, line
