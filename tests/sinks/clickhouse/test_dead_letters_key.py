"""dead_letters keeps one row per rejection (ddl/032): rejections of the same bytes with different reasons
or keys (a front door's, a backfill's line) stay apart, while the same dead letter delivered again, and
the same input dead-lettered again for the same reason (a retried flush, a resumed backfill), stay one
row."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from sinks.clickhouse.rows import Origin, rows_for
from sinks.clickhouse.sink import write_rows
from streams import serde
from streams.producer import dead_letter_record

from .factories import ddl_until

pytestmark = pytest.mark.integration

BODY = b'{"resourceType":"Bundle","type":"batch","entry":[]}'


def front_door_letters() -> list[dict[str, Any]]:
    """A FHIR batch with two refused entries (the body dead-lettered once per entry, each with its
    reason), two 413s (an empty body each), and two identical lines a backfill rejected."""
    fhir = "fhir-endpoint"
    return [dead_letter_record(fhir, BODY, "Bundle.entry[0]: no accession", key=b"fhir:/fhir"),
            dead_letter_record(fhir, BODY, "Bundle.entry[3]: unknown status 'x'", key=b"fhir:/fhir"),
            dead_letter_record(fhir, b"", "request body of 9000000 bytes exceeds the limit", key=b"fhir"),
            dead_letter_record(fhir, b"", "request body of 12000000 bytes exceeds the limit", key=b"fhir"),
            dead_letter_record("backfill", b"A1|bad", "no accession", key=b"reports.csv:3"),
            dead_letter_record("backfill", b"A1|bad", "no accession", key=b"reports.csv:9")]


def write(client: Client, letters: list[dict[str, Any]], first_offset: int = 0) -> None:
    """As the sink gets them from the dead-letter topic: an Avro round trip, each at its own offset."""
    for i, dl in enumerate(letters):
        rec = serde.decode("dead_letter", serde.encode("dead_letter", dl))
        write_rows(client, rows_for("dead_letter", rec, Origin("radstream.deadletter", 0, first_offset + i)))


def stored(client: Client) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(
        "SELECT original_offset, key, error, value FROM dead_letters FINAL ORDER BY error, key").result_rows]


def test_distinct_rejections_of_the_same_bytes_by_a_front_door_keep_a_row_each(ch: Client) -> None:
    letters = front_door_letters()
    write(ch, letters)
    assert sorted(stored(ch)) == sorted((-1, dl["key"].decode(), dl["error"], dl["value"].decode())
                                  for dl in letters)
    ch.command("OPTIMIZE TABLE dead_letters FINAL")  # what merges and Maintenance do
    assert ch.query("SELECT count() FROM dead_letters").result_rows == [(6,)]


def test_the_same_dead_letter_delivered_again_is_one_row(ch: Client) -> None:
    letters = front_door_letters()
    write(ch, letters)
    write(ch, letters)  # the dead-letter topic redelivered (the sink crashed before its commit)
    write(ch, letters, first_offset=100)  # replayed from a copy of the topic: other positions
    assert len(stored(ch)) == 6
    ch.command("OPTIMIZE TABLE dead_letters FINAL")
    assert ch.query("SELECT count() FROM dead_letters").result_rows == [(6,)]


def test_the_same_input_dead_lettered_again_for_the_same_reason_is_one_row(ch: Client) -> None:
    """A stage's retried flush or a redelivery after a crash (a Kafka record), or a backfill resumed before
    its checkpoint (a file's line), makes the same dead letter again with a new time: one row."""
    def twice(**rec: Any) -> list[dict[str, Any]]:
        made = [dead_letter_record(value=b"\x00garbage", error="ValueError: not Avro", **rec)
                for _ in range(2)]
        made[1]["time"] = made[0]["time"] + timedelta(seconds=30)
        return made

    write(ch, [*twice(stage="clickhouse-sink", topic="radstream.x", partition=2, offset=41, key=b"k"),
               *twice(stage="clickhouse-sink", topic="radstream.x", partition=2, offset=42, key=b"k"),
               *twice(stage="backfill", key=b"reports.csv:3")])
    assert sorted((r[0], r[1]) for r in stored(ch)) == [(-1, "reports.csv:3"), (41, "k"), (42, "k")]


def test_dead_letters_of_a_store_from_before_032_are_kept_by_the_rekey(tmp_path: Path) -> None:
    old_ddl = ddl_until(tmp_path / "ddl", 31)
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", old_ddl)
        letters = front_door_letters()
        kafka = dead_letter_record("nlp", b"report", "boom", topic="radstream.reports", partition=0, offset=7)
        write(client, [letters[0], letters[2], kafka])  # three the old key tells apart
        every = "SELECT * FROM dead_letters FINAL ORDER BY original_offset, error"
        before = [tuple(r) for r in client.query(every).result_rows]
        assert len(before) == 3
        assert migrate(client, "rs")[:2] == ["032_dead_letters_key", "033_fsync_parts"]
        assert [tuple(r) for r in client.query(every).result_rows] == before  # inserted_at too
        write(client, [letters[1], letters[3]], first_offset=10)  # the old key dropped these
        assert len(stored(client)) == 5
        assert "cityHash64(error)" in client.query(
            "SELECT sorting_key FROM system.tables WHERE database = 'rs' AND name = 'dead_letters'"
        ).result_rows[0][0]
        assert not client.query("SELECT name FROM system.tables WHERE database = 'rs' "
                                "AND name LIKE 'dead_letters_%'").result_rows
        assert migrate(client, "rs") == []
    finally:
        close_readonly_clients()
        client.close()
