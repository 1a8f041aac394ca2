"""Unit tests: from when the sink's flush deadline counts (no ClickHouse, no Kafka)."""

from __future__ import annotations

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message

from sinks.clickhouse.sink import waited
from streams.handlers import ORIGIN_HEADER, origin_headers, origin_ms
from streams.loop import Record

NOW = 1_800_000_000.0
FLUSH = 0.5


def msg(produced_s_ago: float | None, origin_s_ago: float | None = None) -> Record:
    headers: list[tuple[str, str | bytes | None]] | None = None
    if origin_s_ago:
        headers = [(ORIGIN_HEADER, str(int((NOW - origin_s_ago) * 1000)).encode())]
    ts = (TIMESTAMP_NOT_AVAILABLE, 0) if produced_s_ago is None else (
        TIMESTAMP_CREATE_TIME, int((NOW - produced_s_ago) * 1000))
    return Record.of(Message(topic="t", partition=0, offset=1, key=b"k", value=b"v", headers=headers,
                             timestamp=ts))


def test_findings_count_from_their_report() -> None:
    # findings produced 0.1 s ago for a report produced 0.35 s ago: 0.15 s of the budget left
    assert abs(waited(msg(0.1, origin_s_ago=0.35), FLUSH, NOW) - 0.35) < 0.002


def test_a_report_older_than_the_interval_falls_back_to_the_findings_own_time() -> None:
    # slow NLP (the report is 2 s old): the findings get the full interval from their own production,
    # as a message without the header does; a batch does not shrink to one message under load
    assert abs(waited(msg(0.1, origin_s_ago=2.0), FLUSH, NOW) - 0.1) < 0.002
    assert abs(waited(msg(0.1), FLUSH, NOW) - 0.1) < 0.002


def test_backlog_and_missing_times_count_from_now() -> None:
    assert waited(msg(30.0, origin_s_ago=31.0), FLUSH, NOW) == 0.0  # replay / catch-up
    assert waited(msg(None), FLUSH, NOW) == 0.0
    assert waited(msg(-1.0), FLUSH, NOW) == 0.0  # a producer clock ahead of ours


def test_origin_header_round_trip_and_chains() -> None:
    hdrs = origin_headers(NOW - 0.25)
    assert origin_ms(hdrs) == int((NOW - 0.25) * 1000)
    # a message derived from a derived message keeps the first origin, whatever its own timestamp
    assert origin_headers(NOW, hdrs) == hdrs
    assert origin_headers(NOW, dict(hdrs)) == hdrs
    assert origin_headers(None) == [] and origin_headers(0.0) == []
    assert origin_ms([(ORIGIN_HEADER, b"not a number")]) is None
    assert origin_ms(None) is None and origin_ms([("other", b"1")]) is None
