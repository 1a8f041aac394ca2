"""The backfill's warehouse output: the stream sink's own row mapping (run in the backfill's worker
processes) and its own writer, so a backfilled report lands exactly as a streamed one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.rows import Rows, merge_rows, rows_by_contract, rows_for_many
from sinks.clickhouse.sink import write_rows
from streams.ingest.backfill import ChunkResult, Output


class WarehouseOutput(Output):
    """The backfill's output: the stream sink's row mapping (in the backfill's workers) and writer."""

    name = "clickhouse"
    prepare = staticmethod(rows_by_contract)

    def __init__(self, ch: ClickHouseConfig) -> None:
        self.client = open_client(ch)
        migrate(self.client, ch.database)

    def write(self, results: Sequence[ChunkResult], dead_letters: list[dict[str, Any]]) -> int:
        rows: Rows = {}
        for res in results:
            merge_rows(rows, res.prepared or {})
        merge_rows(rows, rows_for_many("dead_letter", dead_letters))
        return write_rows(self.client, rows)

    def close(self) -> None:
        self.client.close()
