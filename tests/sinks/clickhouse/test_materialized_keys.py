"""Keys stored with the row (ddl/025): a store migrated up to 024 shows the same rows in every view that
025 recreates, before and after it, and the keys of rows written before and after 025 are the
expressions the views computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from sinks.clickhouse.sink import write_records

from .factories import ddl_until, finding, findings, report
from .test_note_nlp_017 import TEXT, records, snapshot

pytestmark = pytest.mark.integration

VIEWS = ("nlp_latest", "findings_latest", "measurements_latest", "recommendations_latest",
         "assessments_latest", "critical_results_latest", "chest_labels_latest", "sections_latest",
         "findings_current", "note", "note_nlp")
KEYS = {
    "report_current": "run_key != sipHash128(site, accession, report_version, nlp_version, processed_time)",
    "reports": "report_key != sipHash128(site, accession) OR "
               "omop_note_id != toInt64(bitAnd(cityHash64(site, accession, version), 0x7FFFFFFFFFFFFFFF))",
}


def views(client: Client) -> dict[str, list[tuple[Any, ...]]]:
    return {v: [tuple(r) for r in client.query(f"SELECT * FROM {v} ORDER BY ALL").result_rows] for v in VIEWS}


def wrong_keys(client: Client) -> dict[str, int]:
    return {t: int(client.query(f"SELECT countIf({cond}) FROM {t}").result_rows[0][0])
            for t, cond in KEYS.items()}


def test_a_store_from_before_025_shows_the_same_rows(tmp_path: Path) -> None:
    reps, nlp = records()
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 24))
        for _ in range(2):  # at-least-once: replays add no rows to the views
            write_records(client, "report_findings", nlp)
            write_records(client, "report_finalized", reps)
        before, note_nlp_before = views(client), snapshot(client)
        # up to 025 only: 026 takes inserted_at out of the SELECT * views on purpose
        assert migrate(client, "rs", ddl_until(tmp_path / "ddl25", 25)) == ["025_materialized_keys"]
        after, note_nlp_after = views(client), snapshot(client)
        assert wrong_keys(client) == {"report_current": 0, "reports": 0}  # rows written before 025

        # a report and its NLP result written after 025: the keys come with the insert
        late = report("G1", text=TEXT)
        write_records(client, "report_finalized", [late])
        write_records(client, "report_findings", [findings(late, [finding("nodule", start=12)])])
        assert wrong_keys(client) == {"report_current": 0, "reports": 0}
        g1 = client.query("SELECT lexical_variant, snippet, rs_study_instance_uid FROM note_nlp "
                          "INNER JOIN note AS n ON n.note_id = note_nlp.note_id "
                          "WHERE rs_accession = 'G1'").result_rows
    finally:
        close_readonly_clients()
        client.close()
    assert after == before
    assert note_nlp_after[0] == note_nlp_before[0] and note_nlp_after[1] == note_nlp_before[1]
    assert note_nlp_after[2].rows == note_nlp_before[2].rows and len(note_nlp_after[2].rows) == 5
    # the comparison is not between empty views: every view has the current rows to show
    assert all(before[v] for v in VIEWS if v not in ("measurements_latest", "recommendations_latest",
                                                      "assessments_latest", "critical_results_latest",
                                                      "chest_labels_latest"))
    assert {r[1] for r in before["findings_current"]} >= {"B1", "C1"}
    assert g1 == [("nodule", TEXT[:12 + len("nodule") + 60], late["study_instance_uid"])]
