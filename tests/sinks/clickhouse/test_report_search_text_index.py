"""report_search's text index (ddl/020): the lower-cased text's 3-grams, built for the rows a store already
holds and for the rows the sink writes, and used by the search's `lowerUTF8(text) LIKE` (the engine skips
the granules that cannot hold the word)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from sinks.clickhouse.sink import write_records

from .factories import ddl_until, report

pytestmark = pytest.mark.integration

WORD = "lowerUTF8(text) LIKE lowerUTF8(%(like)s)"


def granules(ch: Client, word: str) -> tuple[int, int]:
    """(granules read, granules in all) for a search of ``word``, from the planner's index analysis."""
    plan = ch.query(f"EXPLAIN indexes = 1 SELECT count() FROM report_search WHERE {WORD}",
                    parameters={"like": f"%{word}%"}).result_rows
    last = [m for r in plan if (m := re.search(r"Granules: (\d+)/(\d+)", r[0]))][-1]
    return int(last.group(1)), int(last.group(2))


def write_reports(ch: Client) -> None:
    for i in range(3):  # one insert each: three parts, so that the index can skip some of them
        write_records(ch, "report_finalized", [report(f"T{i}", text=f"Report {i}: small pleural Effusion.")])
    write_records(ch, "report_finalized", [report("T9", text="Right lower lobe Nodule, 7 mm.")])


def check_index(ch: Client) -> None:
    assert ch.query("SELECT expr, type FROM system.data_skipping_indices WHERE table = 'report_search' "
                    "AND name = 'ix_text'").result_rows == [("lowerUTF8(text)", "text")]
    assert granules(ch, "effusion")[0] >= 1
    read, total = granules(ch, "sarcoid")
    assert read == 0 and total >= 1
    # the answer is that of a plain case-insensitive search
    for word in ("effusion", "EFFUSION", "nodule, 7", "sarcoid"):
        n = ch.query(f"SELECT count() FROM report_search WHERE {WORD}", parameters={"like": f"%{word}%"})
        plain = ch.query("SELECT count() FROM report_search "
                         "WHERE positionCaseInsensitiveUTF8(text, %(w)s) > 0", parameters={"w": word})
        assert n.result_rows == plain.result_rows


def test_the_sink_writes_rows_the_index_covers(ch: Client) -> None:
    ch.command("SYSTEM STOP MERGES report_search")  # keep the parts apart
    write_reports(ch)
    check_index(ch)
    assert granules(ch, "effusion") == (3, 4)  # the part of T9 has no 'effusion'
    assert granules(ch, "nodule, 7") == (1, 4)


def test_a_store_from_before_020_gets_the_index_for_the_rows_it_holds(tmp_path: Path) -> None:
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", 19))
        write_reports(client)
        assert "020_report_search_text_index" in migrate(client, "rs")
        check_index(client)
    finally:
        close_readonly_clients()
        client.close()
