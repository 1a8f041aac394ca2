"""Times at the edge of the calendar (year 1 ahead of UTC, year 9999 behind it) and offsets of a day or
more have no UTC datetime: they are bad input (ParseError, a reject with its reason), not a crash that
stops a file, a backfill chunk or a front door."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.ingest.hl7v2 import iter_hl7_batch, parse_oru
from processors.ingest.model import ParseError, parse_time
from processors.ingest.records import ColumnMapping, Rejected, iter_jsonl
from streams.ingest.backfill import Job, process_chunk

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(("value", "tz"), [
    ("00010101000000+1400", UTC), ("0001-01-01T00:00:00+14:00", UTC), ("9999-12-31T23:59:59-12:00", UTC),
    ("99991231235959", NEW_YORK), ("9999-12-31T23:59:59", NEW_YORK), ("00010101", TOKYO),
    ("20260301120000+2400", UTC), ("20260301120000-9999", UTC),
])
def test_times_without_a_utc_datetime_are_parse_errors(value: str, tz: zoneinfo.ZoneInfo) -> None:
    with pytest.raises(ParseError) as ei:
        parse_time(value, tz)
    assert ei.value.field == "time"


def test_edge_times_that_exist_in_utc_still_parse() -> None:
    assert parse_time("00010101000000-0100") == datetime(1, 1, 1, 1, tzinfo=UTC)
    assert parse_time("99991231225959+0100") == datetime(9999, 12, 31, 21, 59, 59, tzinfo=UTC)
    assert parse_time("20260301120000+2359") == datetime(2026, 2, 28, 12, 1, tzinfo=UTC)


def _hl7(t22: str | None = None, control: str = "C-2") -> bytes:
    """The sample final report, with another OBR-22 (status-change time) and control id."""
    good = (SAMPLES / "hl7" / "vendor_c_2_final.hl7").read_bytes().replace(b"\n", b"\r").strip()
    if t22 is None:
        return good
    out = good.replace(b"20260304160000||CR|F", t22.encode() + b"||CR|F")
    out = out.replace(b"|C-2|", f"|{control}|".encode())
    assert out != good
    return out


def test_hl7_obr22_out_of_range_is_ae_and_a_batch_goes_on() -> None:
    with pytest.raises(ParseError) as ei:
        parse_oru(_hl7("00010101000000+1400", "C-2-BAD"), site="s")
    assert ei.value.code == "AE" and "out of range" in ei.value.reason
    batch = _hl7("00010101000000+1400", "C-2-BAD") + b"\r" + _hl7()
    out = list(iter_hl7_batch(batch, site="s", name="b.hl7"))
    assert [(no, type(x).__name__) for no, x in out] == [(1, "Rejected"), (2, "ReportEvent")]


def _jsonl(tmp: Path) -> list[bytes]:
    rows = [json.loads(line) for line in (SAMPLES / "reports.jsonl").read_text().splitlines()[:3]]
    rows[1]["status_time"] = "9999-12-31T23:59:59-12:00"
    return [json.dumps(r).encode() + b"\n" for r in rows]


def test_jsonl_file_and_backfill_chunk_reject_the_record_and_go_on(tmp_path: Path) -> None:
    lines = _jsonl(tmp_path)
    out = list(iter_jsonl(lines, ColumnMapping(), site="s", name="r.jsonl"))
    kinds = [(no, type(x).__name__) for no, x in out]
    assert kinds == [(1, "ReportEvent"), (2, "Rejected"), (3, "ReportEvent")]
    rej = out[1][1]
    assert isinstance(rej, Rejected) and "out of range" in rej.reason

    job = Job("jsonl", "r.jsonl", [], ColumnMapping(), "s", "OBR-3", datetime.now(UTC), False, None,
              list(enumerate(lines, 1)))
    res = process_chunk(job)
    assert res.loaded == 2
    assert [(no, "out of range" in reason) for no, reason, _ in res.rejects] == [(2, True)]
