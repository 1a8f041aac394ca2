"""With a pseudonym key configured, no front door puts a real patient id into a topic or a table.

Covered here: the FHIR endpoint (single resource and Bundle), ``radstream ingest file`` (JSONL, CSV)
and the no-Kafka ``radstream backfill`` (JSONL, CSV, HL7 batch, FHIR NDJSON) into a real embedded
ClickHouse, where every table and view with a patient column is checked. The MLLP listener is
covered in test_ingest_front_doors.py and test_ingest_cli_servers.py. In every case the key must not
appear in what the command printed or logged. (Dead letters keep the original bytes of rejected
input, patient id included: see docs/analysts.md, "Research pseudonyms".)
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from processors.ingest.model import ReportEvent
from processors.ingest.pseudonym import pseudonym
from processors.ingest.records import ColumnMapping
from radstream.cli import main
from radstream.config import Settings
from sinks.clickhouse.client import open_client
from streams.ingest.fhir_server import start_server
from streams.ingest.files import guess_format, iter_file
from tests.streams.helpers import ingest_gate
from tests.streams.ingest.test_ingest_front_doors import env_of, read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"
CSV_MAP = ["exam_id=accession", "mrn=patient_id", "findings=text", "impression=text"]


def raw_patient_ids(paths: list[Path], maps: tuple[str, ...] | list[str] = ()) -> set[str]:
    """The real patient ids in ``paths``, read with the same parsers and no key."""
    out: set[str] = set()
    for path in paths:
        for _, item in iter_file(path, guess_format(path), ColumnMapping.parse(maps), site="default"):
            if isinstance(item, ReportEvent) and item.patient_id:
                out.add(item.patient_id)
    return out


def assert_pseudonymised(records: list[dict[str, Any]], raw_ids: set[str], key: str) -> None:
    assert records and raw_ids
    dumped = json.dumps(records, default=str)
    assert not [pid for pid in raw_ids if pid in dumped]
    for rec in records:
        assert rec["patient_id_is_pseudonym"] and rec["patient_id"].startswith("psn-"), rec["accession"]
    assert key not in dumped


def hl7_batch(tmp_path: Path) -> Path:
    names = ["vendor_a_obx_per_line.hl7", "vendor_b_ft_blob_latin1.hl7", "multi_obr_two_reports.hl7",
             "vendor_d_addendum_b.hl7", "bad_missing_obr.hl7"]
    path = tmp_path / "batch.hl7"
    path.write_bytes(b"".join((SAMPLES / "hl7" / n).read_bytes() for n in names))
    return path


def test_fhir_endpoint_publishes_pseudonyms_only(topic_settings: Settings, caplog: pytest.LogCaptureFixture,
                                                 tmp_path: Path) -> None:
    key = f"fhir-key-{uuid.uuid4().hex}"
    settings = topic_settings.replace(ingest={"pseudonym_key": key})
    bodies = [("/DiagnosticReport", SAMPLES / "fhir" / "diagnosticreport_final.json"),
              ("/Bundle", SAMPLES / "fhir" / "bundle_final.json"),
              ("", SAMPLES / "fhir" / "bundle_appended.json")]
    caplog.set_level(logging.DEBUG)
    gate, auth = ingest_gate(tmp_path)

    async def go() -> list[tuple[int, str]]:
        runner, port = await start_server(settings.kafka, settings.topics, settings.ingest, "127.0.0.1", 0,
                                          gate=gate)
        out = []
        try:
            async with aiohttp.ClientSession() as s:
                for path, body in bodies:
                    async with s.post(f"http://127.0.0.1:{port}/fhir{path}", data=body.read_bytes(),
                                      headers={"Content-Type": "application/fhir+json", **auth}) as r:
                        out.append((r.status, await r.text()))
        finally:
            await runner.cleanup()
        return out

    answers = asyncio.run(go())
    assert [status for status, _ in answers] == [201, 200, 200]
    events = read_topic(settings, settings.topics.reports, "report_finalized", expect=3)
    assert len(events) == 3
    raw_ids = raw_patient_ids([p for _, p in bodies])
    assert raw_ids == {"pat-5512", "MRN-9001"}
    assert_pseudonymised(events, raw_ids, key)
    assert {e["patient_id"] for e in events} == {pseudonym(key.encode(), "default", p) for p in raw_ids}
    assert not any(key in text for _, text in answers)
    assert "research pseudonyms on" in caplog.text and key not in caplog.text


def test_ingest_file_publishes_pseudonyms_only(topic_settings: Settings, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    key = f"file-key-{uuid.uuid4().hex}"
    env = {**env_of(topic_settings), "RADSTREAM_INGEST_PSEUDONYM_KEY": key}
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    jsonl, csv_path = SAMPLES / "reports.jsonl", SAMPLES / "reports.csv"
    out = []
    for args in (["ingest", "file", str(jsonl)],
                 ["ingest", "file", str(csv_path), *[a for m in CSV_MAP for a in ("--map", m)]]):
        res = runner.invoke(main, args, env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        out.append(res.output)
    assert "read 10, produced 10" in out[0] and "produced 4, rejected 1" in out[1]
    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=14)
    assert len(events) == 14
    assert_pseudonymised(events, raw_patient_ids([jsonl]) | raw_patient_ids([csv_path], CSV_MAP), key)
    assert key not in "".join(out) and key not in caplog.text


def test_backfill_without_kafka_writes_pseudonyms_only_to_every_table(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = f"backfill-key-{uuid.uuid4().hex}"
    key_file = tmp_path / "secret.key"
    key_file.write_text(key)
    env = {"RADSTREAM_STATE_DIR": str(tmp_path), "RADSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}",
           "RADSTREAM_CLICKHOUSE_DATABASE": "rs", "RADSTREAM_INGEST_PSEUDONYM_KEY_FILE": str(key_file),
           "RADSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}  # no Kafka: nothing may try to use it
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    files = [SAMPLES / "reports.jsonl", hl7_batch(tmp_path), SAMPLES / "fhir" / "reports.fhir.ndjson"]
    csv_path = SAMPLES / "reports.csv"
    out = []
    for paths, maps in ((files, []), ([csv_path], CSV_MAP)):
        args = ["backfill", *map(str, paths), "--workers", "0", "--no-progress",
                "--rejects", str(tmp_path / "rejects.tsv"), *[a for m in maps for a in ("--map", m)]]
        res = runner.invoke(main, args, env=env, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        out.append(res.output)
    raw_ids = raw_patient_ids(files) | raw_patient_ids([csv_path], CSV_MAP)
    assert {"MRN0001", "7301445", "M4455667", "MRN7001"} <= raw_ids  # one of each format at least

    client = open_client(Settings(state_dir=str(tmp_path)).replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"}).clickhouse)
    try:
        # every patient identifier column of every table and view (OMOP views: rs_patient_id)
        cols = client.query("SELECT table, name FROM system.columns WHERE database = 'rs' AND "
                            "name ILIKE '%patient_id%' AND type ILIKE '%String%'").result_rows
        tables: dict[str, list[str]] = {}
        for table, name in cols:
            tables.setdefault(table, []).append(name)
        assert {"report_versions", "reports", "reports_latest", "report_nlp", "findings", "findings_latest",
                "note", "note_nlp", "received_instances"} <= set(tables)
        loaded = client.query("SELECT count() FROM report_versions").result_rows[0][0]
        assert loaded >= 15
        seen_pseudonyms = 0
        for table, names in sorted(tables.items()):
            for name in names:
                rows = client.query(f"SELECT DISTINCT {name} FROM rs.{table}").result_rows
                values = {str(v) for (v,) in rows}
                assert not values & raw_ids, (table, name, sorted(values & raw_ids))
                assert all(v.startswith("psn-") or v == "" for v in values), (table, name, sorted(values)[:5])
                seen_pseudonyms += sum(v.startswith("psn-") for v in values)
        assert seen_pseudonyms > 0
        flags = client.query("SELECT DISTINCT patient_id_is_pseudonym FROM rs.report_versions").result_rows
        assert flags == [(True,)]
    finally:
        client.close()
    assert key not in "".join(out) and key not in caplog.text
    assert key not in (tmp_path / "rejects.tsv").read_text()
    for cp in (tmp_path / "backfill").glob("*.json"):  # the checkpoints
        assert key not in cp.read_text()


def test_backfill_jobs_never_show_the_key_in_a_repr() -> None:
    from datetime import UTC, datetime

    from streams.ingest.backfill import Job

    key = b"a-secret-key-of-32-bytes-length!"
    job = Job("jsonl", "f", [], ColumnMapping(), "s", "OBR-3", datetime(2026, 1, 1, tzinfo=UTC), False, key,
              [(1, b"{}")])
    assert job.key == key and "a-secret" not in repr(job) and "a-secret" not in str(job)
