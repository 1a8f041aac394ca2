"""Warehouse maintenance (sinks/clickhouse/maintenance.py): every partition the views read with FINAL
merged into one part, the same rows in every view, replays dropped; the sink's schedule; the CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from clickhouse_connect.driver.client import Client

from radstream.cli import main as cli_main
from radstream.config import Settings, settings_env
from sinks.clickhouse.client import open_client
from sinks.clickhouse.maintenance import FINAL_TABLES, Maintenance, optimize, partitions_to_merge
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from sinks.clickhouse.sink import write_records
from streams import serde
from streams.loop import Acks, Record, _Offsets

from .test_materialized_keys import VIEWS, views
from .test_note_nlp_017 import records

pytestmark = pytest.mark.integration

DDL = Path(__file__).resolve().parents[3] / "sinks" / "clickhouse" / "ddl"


def test_the_list_names_every_table_the_ddl_reads_with_final() -> None:
    read_final = set()
    for f in DDL.glob("*.sql"):
        read_final |= set(re.findall(r"\{db\}\.(\w+)(?:\s+AS\s+\w+)?\s+FINAL", f.read_text()))
    assert read_final and read_final <= set(FINAL_TABLES)


def parts(client: Client) -> dict[str, int]:
    rows = client.query("SELECT table, max(n) FROM (SELECT table, partition_id, count() AS n "
                        "FROM system.parts WHERE database = 'rs' AND active GROUP BY table, partition_id) "
                        "GROUP BY table")
    return {str(t): int(n) for t, n in rows.result_rows}


def physical(client: Client, table: str) -> int:
    return int(client.query(f"SELECT count() FROM {table}", settings={"final": 0}).result_rows[0][0])


def written_three_times(client: Client) -> dict[str, list[tuple[Any, ...]]]:
    reps, nlp = records()
    for _ in range(3):  # at-least-once: each replay is another part of the same rows
        write_records(client, "report_findings", nlp)
        write_records(client, "report_finalized", reps)
    return views(client)


def test_optimize_leaves_one_part_per_partition_and_the_same_rows(ch: Client) -> None:
    before = written_three_times(ch)
    assert parts(ch)["findings"] == 3 and parts(ch)["reports"] >= 3
    findings_rows = physical(ch, "findings")

    done = optimize(ch, "rs")

    assert {p.table for p in done} >= {"findings", "reports", "report_versions"}
    assert all(n == 1 for t, n in parts(ch).items() if t in FINAL_TABLES)
    assert partitions_to_merge(ch, "rs") == []
    assert views(ch) == before and all(before[v] for v in ("findings_current", "note", "note_nlp"))
    assert physical(ch, "findings") * 3 == findings_rows  # the replays are gone from the disk too
    assert optimize(ch, "rs") == []  # nothing left: a second round merges nothing


def test_the_sink_schedule_merges_one_partition_per_step(ch: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    written_three_times(ch)
    off = Maintenance("rs", 0)
    assert off.step(ch) is None and partitions_to_merge(ch, "rs")
    later = Maintenance("rs", 3600)
    assert later.step(ch) is None  # the first round waits an interval after the start

    m = Maintenance("rs", 3600)
    monkeypatch.setattr(m, "next_round", 0.0)  # due now
    first = m.step(ch)
    assert first is not None and m.todo and m.merged == 1
    left = len(m.todo)
    while m.step(ch) is not None:
        pass
    assert m.merged == left + 1 and not m.todo
    assert partitions_to_merge(ch, "rs") == []
    assert m.step(ch) is None  # the next round is an interval away
    assert set(VIEWS) <= set(views(ch))


def test_the_sink_runs_the_schedule_after_its_flush(tmp_path: Path) -> None:
    from sinks.clickhouse.config import ClickHouseConfig
    from sinks.clickhouse.sink import ClickHouseSink
    from streams.config import TopicsConfig

    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs")
        written_three_times(client)
        sink = ClickHouseSink(ClickHouseConfig(url="chdb://unused", database="rs", optimize_interval_s=3600),
                              TopicsConfig(), client=client)
        assert sink.maintenance.interval_s == 3600 and sink.maintenance.step(client) is None
        sink.maintenance.next_round = 0.0  # due now
        sink.flush()  # nothing to write: no flush, so no step
        assert sink.maintenance.merged == 0
        reps, _ = records()
        value = serde.encode("report_finalized", reps[0])
        rec = Record(TopicsConfig().reports_deidentified, 0, 7, None, value)
        sink.add([rec], Acks(_Offsets()))
        sink.flush()
        assert sink.maintenance.merged == 1 and sink.maintenance.todo
    finally:
        close_readonly_clients()
        client.close()


def test_db_optimize_command(ch_settings: Settings) -> None:
    client = open_client(ch_settings.clickhouse)
    try:
        migrate(client, "rs")
        written_three_times(client)
    finally:
        client.close()
    env = settings_env(ch_settings)
    runner = CliRunner()
    out = runner.invoke(cli_main, ["db", "optimize", "--table", "findings"], env=env)
    assert out.exit_code == 0, out.output
    assert "findings partition" in out.output and "3 parts -> 1" in out.output
    again = runner.invoke(cli_main, ["db", "optimize"], env=env)
    assert again.exit_code == 0 and "merged" in again.output and "findings" not in again.output
    bad = runner.invoke(cli_main, ["db", "optimize", "--table", "audit_log"], env=env)
    assert bad.exit_code == 2 and "audit_log" in bad.output
