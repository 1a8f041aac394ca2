"""The audit table keeps what was recorded (ddl/023): a replay of an event collapses into one row, an event
sent again under the same id and time with other content stays beside it instead of replacing it (real
chDB, the sink's own row builder)."""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.sink import write_records
from streams.audit import event


def test_a_replay_collapses_and_a_forged_copy_cannot_replace_the_event(ch: Client) -> None:
    real = {**event("mallory", "sql.query", query="SELECT text FROM report_text_original", rows=3),
            "time": datetime(2026, 12, 1, 9, 0, tzinfo=UTC)}
    forged = {**real, "actor": "someone-else", "query": "SELECT 1", "rows": 1}
    write_records(ch, "audit_event", [real])
    write_records(ch, "audit_event", [real])  # the sink again after a restart (a replay)
    write_records(ch, "audit_event", [forged])
    ch.command("OPTIMIZE TABLE audit_log FINAL")
    got = ch.query("SELECT actor, query, rows FROM audit_log FINAL WHERE event_id = {e:String} "
                   "ORDER BY actor", parameters={"e": real["event_id"]}).result_rows
    assert [tuple(r) for r in got] == [("mallory", "SELECT text FROM report_text_original", 3),
                                       ("someone-else", "SELECT 1", 1)]
