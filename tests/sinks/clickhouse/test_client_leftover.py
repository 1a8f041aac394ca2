"""A read-write chDB client answers the call after a failed one with that call's own result.

chDB hands the output a query wrote before it failed part-way to whoever asks next on the same
handle; the sink's and the CLI's read-write clients must not read it as their own rows. A real
embedded store (chDB)."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import client_like

FAILS = "SELECT number, throwIf(number = 30000) FROM numbers(100000) SETTINGS max_block_size = 1000"


@pytest.mark.parametrize("fail_with", ["query", "raw_query", "command"])
def test_the_next_call_gets_its_own_answer(ch: Client, fail_with: str) -> None:
    with pytest.raises(Exception, match="throwIf"):
        getattr(ch, fail_with)(FAILS)
    assert ch.raw_query("SELECT 7", fmt="TabSeparated") == b"7\n"
    with pytest.raises(Exception, match="throwIf"):
        getattr(ch, fail_with)(FAILS)
    assert ch.query("SELECT 42 AS x").result_rows == [(42,)]
    with pytest.raises(Exception, match="throwIf"):
        getattr(ch, fail_with)(FAILS)
    assert ch.command("SELECT 'ok'") == "ok"


def test_a_second_client_on_the_store_is_fenced_too(ch: Client) -> None:
    other = client_like(ch)
    try:
        with pytest.raises(Exception, match="throwIf"):
            other.raw_query(FAILS, fmt="TabSeparated")
        assert other.query("SELECT count() FROM system.one").result_rows == [(1,)]
    finally:
        other.close()


def test_streams_are_refused_on_an_embedded_store(ch: Client) -> None:
    with pytest.raises(NotImplementedError):
        ch.raw_stream("SELECT 1")
    with pytest.raises(NotImplementedError):
        ch.query_row_block_stream("SELECT 1")
    assert ch.query("SELECT 1").result_rows == [(1,)]  # and the client serves the next call
