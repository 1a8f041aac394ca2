"""End to end on the live path: MLLP / FHIR -> Kafka -> ClickHouse sink -> the latest-version views.

A correction replaces the final report in ``reports_latest``; a preliminary that arrives late
(older status time) is kept in the history but never becomes the latest; a resent message adds
no version; a cancellation retracts the report. The worker's NLP agent (a real ``radstream worker
--no-sink``) sits between: the analysts' tables get the reports it de-identified.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from clickhouse_connect.driver.client import Client

from processors.ingest.hl7v2 import parse_ack
from processors.ingest.pseudonym import keyed_identifier
from radstream.config import Settings
from radstream.text_deid import research_key
from streams.ingest.fhir_server import start_server
from streams.ingest.mllp import HL7Listener, send_messages
from tests.sinks.clickhouse.kafka_helpers import running_sink
from tests.streams.helpers import clinical_of, free_port, ingest_gate, research_accession, worker_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HL7 = ROOT / "samples" / "hl7"
FHIR = ROOT / "samples" / "fhir"


def wait_for(client: Client, sql: str, ok: Callable[[list[tuple[Any, ...]]], bool],
             timeout: float = 60.0) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        rows = [tuple(r) for r in client.query(sql).result_rows]
        if ok(rows):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"timed out: {sql} -> {rows}")


@pytest.fixture
def wh_settings(topic_settings: Settings, tmp_path: Path) -> Settings:
    return topic_settings.replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs", "flush_ms": 200},
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"}, state_dir=str(tmp_path),
        worker={"web_port": free_port()})


def test_correction_replaces_final_and_late_older_event_is_ignored(wh_settings: Settings) -> None:
    order = ["vendor_c_2_final.hl7", "vendor_c_3_corrected.hl7", "vendor_c_1_preliminary.hl7",
             "vendor_c_2_final.hl7", "vendor_a_obx_per_line.hl7", "cancelled.hl7"]

    gate, auth = ingest_gate(Path(wh_settings.state_dir))

    async def traffic() -> tuple[list[bytes], list[int]]:
        listener = HL7Listener(wh_settings.kafka, wh_settings.topics, wh_settings.ingest)
        port = await listener.start("127.0.0.1", 0)
        runner, http_port = await start_server(wh_settings.kafka, wh_settings.topics, wh_settings.ingest,
                                               "127.0.0.1", 0, gate=gate)
        statuses = []
        try:
            acks = await send_messages("127.0.0.1", port, [(HL7 / n).read_bytes() for n in order])
            async with aiohttp.ClientSession() as s:
                for name in ("bundle_appended.json", "bundle_final.json"):  # the addendum first, final late
                    async with s.post(f"http://127.0.0.1:{http_port}/fhir/Bundle",
                                      data=(FHIR / name).read_bytes(),
                                      headers={"Content-Type": "application/fhir+json", **auth}) as r:
                        statuses.append(r.status)
        finally:
            await listener.stop()
            await runner.cleanup()
        return acks, statuses

    log = Path(wh_settings.state_dir) / "worker.log"
    with worker_process(wh_settings, log, "--no-sink"), running_sink(wh_settings) as sink:
        acks, statuses = asyncio.run(traffic())
        assert [parse_ack(a)[0] for a in acks] == ["AA"] * len(order)
        assert statuses == [200, 200]
        client = sink.client
        rows = wait_for(
            client, "SELECT accession, status, version FROM report_versions FINAL",
            lambda rows: len(rows) >= 7)
        clinical = ("ACC-C-5001", "ACC-X-1", "ACC20260302001", "FH-ACC-9001")
        back = clinical_of(wh_settings, clinical)
        versions = [(a, st) for a, _, st in sorted((back[a], v, st) for a, st, v in rows)]
        assert versions == [
            ("ACC-C-5001", "preliminary"), ("ACC-C-5001", "final"), ("ACC-C-5001", "corrected"),
            ("ACC-X-1", "cancelled"), ("ACC20260302001", "final"),
            ("FH-ACC-9001", "final"), ("FH-ACC-9001", "addendum"),
        ]
        latest = {back[r[0]]: r[1:] for r in client.query(
            "SELECT accession, status, text FROM reports_latest").result_rows}
        assert latest["ACC-C-5001"][0] == "corrected" and "greater tuberosity" in latest["ACC-C-5001"][1]
        assert latest["FH-ACC-9001"][0] == "addendum"  # the final that arrived late did not win
        assert latest["ACC20260302001"][0] == "final"
        assert "ACC-X-1" not in latest
        # the placer order number (OBR-2) travels through the topic and the sink into the latest view
        key = research_key(wh_settings)
        orders = client.query("SELECT placer_order_number, filler_order_number FROM reports_latest "
                              f"WHERE accession = '{research_accession(wh_settings, 'ACC20260302001')}'"
                              ).result_rows
        assert orders == [(keyed_identifier(key, "order", "PL5521"), keyed_identifier(key, "order",
                                                                                     "ACC20260302001"))]


def test_order_number_migration_upgrades_a_warehouse_with_reports_in_it(tmp_path: Path) -> None:
    """Migration 006 on a store at 005 that holds a report: old rows get '', the latest view shows the
    new columns (it is re-created), and new events fill them."""
    from datetime import UTC, datetime

    from processors.ingest.hl7v2 import parse_oru
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.sink import write_records
    from tests.sinks.clickhouse.factories import ddl_until

    settings = Settings(state_dir=str(tmp_path)).replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"})
    old = ddl_until(tmp_path / "ddl-005", 5)
    client = open_client(settings.clickhouse)
    try:
        migrate(client, settings.clickhouse.database, old)
        client.command("INSERT INTO rs.reports (site, accession, version, event_id, report_id, status, "
                       "patient_id, text, received_time, exam_time) VALUES ('default', 'OLD-1', 1, 'e1', "
                       "'OLD-1', 'final', 'P1', 'Old report.', now64(6), now64(6))")
        before = [r[0] for r in client.query("DESCRIBE rs.reports_latest").result_rows]
        assert "placer_order_number" not in before
        assert [m[:3] for m in migrate(client, settings.clickhouse.database)][:1] == ["006"]
        for table in ("report_versions", "reports", "reports_latest"):
            cols = [r[0] for r in client.query(f"DESCRIBE rs.{table}").result_rows]
            assert {"placer_order_number", "filler_order_number"} <= set(cols), table
        raw = (HL7 / "vendor_a_obx_per_line.hl7").read_bytes()
        [ev] = parse_oru(raw, site="default", received_time=datetime(2026, 3, 2, tzinfo=UTC)).events
        write_records(client, "report_finalized", [ev.to_avro()])
        rows = client.query("SELECT accession, placer_order_number, filler_order_number "
                            "FROM rs.reports_latest ORDER BY accession").result_rows
        assert [tuple(r) for r in rows] == [("ACC20260302001", "PL5521", "ACC20260302001"), ("OLD-1", "", "")]
    finally:
        client.close()
