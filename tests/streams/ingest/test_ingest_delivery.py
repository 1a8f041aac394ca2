"""Ingest front doors: nothing lost on the way in (real broker, real TCP/HTTP).

- a FHIR body that arrives in several pieces is read whole before it is parsed;
- a message the parser fails on (a time without a UTC datetime; any parser bug) is answered AE / 4xx-5xx
  and dead-lettered with the reason, and the connection goes on (a FIFO sender is not stalled);
- a backfill batch that Kafka refused a record of is not checkpointed (a rerun writes it again);
- a rejection is answered only after Kafka confirmed its dead letter: AR "resend" / 503 when it did not,
  ``ingest file`` exits non-zero; a dead letter over the broker's message limit keeps the head, marked;
- a report the broker refuses for good (over its message limit) is answered AE / 413 and dead-lettered,
  not AR "resend" / 503 forever (a FIFO sender's queue would stall behind it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from processors.ingest.hl7v2 import parse_ack
from radstream.cli import main
from radstream.config import Settings
from streams import serde
from streams.ingest import mllp
from streams.ingest.fhir_server import start_server
from streams.ingest.mllp import HL7Listener, send_messages
from streams.producer import DEAD_LETTER_VALUE_MAX, TRUNCATED_HEADER
from streams.topics import admin_client
from tests.streams.helpers import ingest_gate
from tests.streams.ingest.test_ingest_front_doors import FHIR, HL7, ROOT, env_of, read_topic, run_listener

pytestmark = pytest.mark.integration


async def post_in_pieces(port: int, auth: dict[str, str], path: str, body: bytes, cuts: list[int],
                         gap: float = 0.05) -> tuple[int, dict[str, Any]]:
    """POST ``body`` over a raw socket, sent in pieces cut at ``cuts``, ``gap`` seconds apart."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
            f"Authorization: {auth['Authorization']}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    bounds = [0, *cuts, len(body)]
    writer.write(head)
    for a, b in zip(bounds, bounds[1:], strict=False):
        writer.write(body[a:b])
        await writer.drain()
        await asyncio.sleep(gap)
    resp = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    status = int(resp.split(b" ", 2)[1])
    return status, json.loads(resp.split(b"\r\n\r\n", 1)[1])


def test_fhir_body_arriving_in_pieces_is_read_whole(topic_settings: Settings, tmp_path: Path) -> None:
    gate, auth = ingest_gate(tmp_path)
    single = (FHIR / "diagnosticreport_final.json").read_bytes()
    bundle = (FHIR / "bundle_final.json").read_bytes()

    async def go() -> list[tuple[int, dict[str, Any]]]:
        s = topic_settings
        runner, port = await start_server(s.kafka, s.topics, s.ingest, "127.0.0.1", 0, gate=gate)
        try:
            return [await post_in_pieces(port, auth, "/fhir/DiagnosticReport", single, [len(single) // 2]),
                    await post_in_pieces(port, auth, "/fhir/Bundle", bundle, [100, 101, len(bundle) - 1])]
        finally:
            await runner.cleanup()

    out = asyncio.run(go())
    assert [status for status, _ in out] == [201, 200], out
    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=2)
    assert sorted(e["accession"] for e in events) == ["FH-ACC-7781", "FH-ACC-9001"]
    assert read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=0,
                      timeout=1, settle=0.5) == []


# --- a message the parser fails on --------------------------------------------------------------------

GOOD_HL7 = (HL7 / "vendor_c_2_final.hl7").read_bytes().replace(b"\n", b"\r").strip()
# OBR-22 in year 1 at +14:00: no UTC datetime
YEAR_1 = GOOD_HL7.replace(b"20260304160000||CR|F", b"00010101000000+1400||CR|F").replace(b"|C-2|",
                                                                                          b"|C-2-Y1|")


def test_mllp_time_out_of_range_is_ae_dead_lettered_and_the_connection_goes_on(
        topic_settings: Settings) -> None:
    assert YEAR_1 != GOOD_HL7

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, [YEAR_1, GOOD_HL7], timeout=30)

    acks = run_listener(topic_settings, body)
    assert [parse_ack(a)[:2] for a in acks] == [("AE", "C-2-Y1"), ("AA", "C-2")]
    assert "out of range" in parse_ack(acks[0])[2]
    [dl] = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1)
    assert dl["value"] == YEAR_1 and "out of range" in dl["error"]
    assert len(read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=1)) == 1


def test_mllp_any_parser_failure_is_ae_dead_lettered_and_the_connection_goes_on(
        topic_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    real = mllp.parse_oru

    def buggy(raw: bytes, **kw: Any) -> Any:  # a parser bug on one message (not Kafka: that stays real)
        if b"|C-2-BUG|" in raw:
            raise KeyError("no such field")
        return real(raw, **kw)

    monkeypatch.setattr(mllp, "parse_oru", buggy)
    bug = GOOD_HL7.replace(b"|C-2|", b"|C-2-BUG|")

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, [bug, GOOD_HL7], timeout=30)

    acks = run_listener(topic_settings, body)
    assert [parse_ack(a)[:2] for a in acks] == [("AE", "C-2-BUG"), ("AA", "C-2")]
    [dl] = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1)
    assert dl["value"] == bug and "KeyError" in dl["error"]


def test_fhir_time_out_of_range_is_400_and_dead_lettered(topic_settings: Settings, tmp_path: Path) -> None:
    gate, auth = ingest_gate(tmp_path)
    single = (FHIR / "diagnosticreport_final.json").read_bytes()
    year_1 = single.replace(b'"issued": "2026-03-10T09:40:12.250Z"', b'"issued": "0001-01-01T00:00:00+14:00"')
    assert year_1 != single

    async def go() -> tuple[int, dict[str, Any]]:
        s = topic_settings
        runner, port = await start_server(s.kafka, s.topics, s.ingest, "127.0.0.1", 0, gate=gate)
        try:
            return await post_in_pieces(port, auth, "/fhir/DiagnosticReport", year_1, [], gap=0)
        finally:
            await runner.cleanup()

    status, oo = asyncio.run(go())
    assert status == 400 and "out of range" in oo["issue"][0]["diagnostics"]
    [dl] = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1)
    assert dl["value"] == year_1 and "out of range" in dl["error"]


# --- backfill --via-kafka -----------------------------------------------------------------------------

def _with_big_report(tmp_path: Path) -> Path:
    """Three reports, the middle one ~1.2 MB of UTF-8 that lz4 cannot shrink: over the broker's 1 MiB
    message limit, so the broker refuses it for good (MSG_SIZE_TOO_LARGE)."""
    rows = [json.loads(line) for line in (ROOT / "samples" / "reports.jsonl").read_text().splitlines()[:2]]
    rnd = random.Random(1)
    big = "FINDINGS: " + "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(400_000))
    rows.insert(1, dict(rows[0], accession="ACC-BIG", text=big))
    src = tmp_path / "reports.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return src


def _file_states(state_dir: Path) -> list[dict[str, Any]]:
    return [state for cp in state_dir.rglob("*.json")
            for state in json.loads(cp.read_text()).get("files", {}).values()]


def test_backfill_via_kafka_record_refused_for_good_is_dead_lettered_and_the_batch_checkpointed(
        topic_settings: Settings, tmp_path: Path) -> None:
    """A report over the broker's message limit would be refused by every rerun too: it is dead-lettered
    (its head kept, marked), counted rejected, and the batch is checkpointed; a rerun has nothing left."""
    from radstream.backfill import run_backfill

    settings = topic_settings.replace(state_dir=str(tmp_path / "state"))
    src = _with_big_report(tmp_path)
    summary = run_backfill(settings, [src], via_kafka=True, workers=0)
    assert (summary.read, summary.loaded, summary.rejected) == (3, 2, 1)
    assert any("refused the report for good" in kind for kind in summary.reasons), summary.reasons
    assert [s["finished"] for s in _file_states(tmp_path / "state")] == [True]

    reports = read_topic(settings, settings.topics.reports, "report_finalized", expect=2)
    assert len(reports) == 2 and "ACC-BIG" not in {r["accession"] for r in reports}
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"p{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(settings.topics.dead_letter, p, 0)
                  for p in range(settings.kafka.partitions)])
        msgs = [m for m in c.consume(10, 10) if m.error() is None]
    finally:
        c.close()
    [msg] = msgs
    dl = serde.decode("dead_letter", msg.value())
    assert dl["stage"] == "backfill" and dl["original_topic"] == settings.topics.reports
    assert "too large" in dl["error"].lower() and f"first {DEAD_LETTER_VALUE_MAX} of" in dl["error"]
    assert len(dl["value"]) == DEAD_LETTER_VALUE_MAX
    assert int(dict(msg.headers() or [])[TRUNCATED_HEADER] or b"0") > 1_000_000

    again = run_backfill(settings, [src], via_kafka=True, workers=0)  # resumes past the batch
    assert again.loaded_this_run == 0


def test_backfill_via_kafka_refused_record_whose_dead_letter_kafka_refused_fails_before_its_checkpoint(
        topic_settings: Settings, tmp_path: Path) -> None:
    """The refused report's dead letter is not confirmed (the dead-letter topic refuses everything): the
    report would be lost, so the batch fails before its checkpoint and a rerun sends it again."""
    from radstream.backfill import run_backfill
    from streams.producer import DeliveryError

    settings = refusing_dead_letters(topic_settings).replace(state_dir=str(tmp_path / "state"))
    with pytest.raises(DeliveryError, match="1 refused by Kafka .dead letters of refused reports"):
        run_backfill(settings, [_with_big_report(tmp_path)], via_kafka=True, workers=0)
    for state in _file_states(tmp_path / "state"):  # none written, or one that has not done the records
        assert state["done"] == 0 and not state["finished"], state


# --- dead letters confirmed before the answer -----------------------------------------------------------

BAD_HL7 = (HL7 / "bad_missing_obr.hl7").read_bytes().replace(b"\n", b"\r").strip()


def refusing_dead_letters(settings: Settings) -> Settings:
    """``settings`` whose dead-letter topic refuses every dead letter (a message limit of 100 bytes): the
    broker answers each one with MSG_SIZE_TOO_LARGE, as it does a dead letter over its default limit."""
    name = f"t{uuid.uuid4().hex[:10]}.refusing-deadletter"
    topic = NewTopic(name, 1, 1, config={"max.message.bytes": "100"})
    admin = admin_client(settings.kafka)  # kept: the futures fail when their client is collected
    for fut in admin.create_topics([topic]).values():
        fut.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the broker serves it (as streams.topics.create_topics waits)
        meta = admin.list_topics(name, timeout=10).topics.get(name)
        if meta is not None and meta.error is None and all(p.leader >= 0 for p in meta.partitions.values()):
            break
        time.sleep(0.2)
    return settings.replace(topics={"dead_letter": name})


def test_mllp_big_rejected_message_keeps_its_dead_letter_head(topic_settings: Settings) -> None:
    pdf = base64.b64encode(os.urandom(900_000)).decode()  # 1.2 MB of base64 that lz4 cannot shrink
    big = "\r".join(["MSH|^~\\&|RIS|HOSP|RADSTREAM|RESEARCH|20260304160002||ORU^R01|BIG-1|P|2.5",
                     "PID|1||5560012^^^HOSP^MR||Doe^Jane",
                     f"OBX|1|ED|PDF^Report PDF||^application^pdf^Base64^{pdf}||||||F"]).encode()  # no OBR: AE

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, [big], timeout=60)

    [ack] = run_listener(topic_settings, body)
    assert parse_ack(ack)[:2] == ("AE", "BIG-1")
    c = Consumer({"bootstrap.servers": topic_settings.kafka.bootstrap, "group.id": f"p{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic_settings.topics.dead_letter, p, 0)
                  for p in range(topic_settings.kafka.partitions)])
        msgs = [m for m in c.consume(10, 10) if m.error() is None]
    finally:
        c.close()
    [msg] = msgs
    dl = serde.decode("dead_letter", msg.value())
    assert dl["value"] == big[:DEAD_LETTER_VALUE_MAX]
    assert f"first {DEAD_LETTER_VALUE_MAX} of {len(big)} bytes" in dl["error"]
    assert dict(msg.headers() or [])[TRUNCATED_HEADER] == str(len(big)).encode()


def test_mllp_rejection_whose_dead_letter_kafka_refused_is_ar_resend(topic_settings: Settings) -> None:
    settings = refusing_dead_letters(topic_settings)

    async def body(port: int, listener: HL7Listener) -> tuple[list[bytes], dict[str, int]]:
        acks = await send_messages("127.0.0.1", port, [BAD_HL7, GOOD_HL7], timeout=30)
        return acks, dict(listener.stats)

    acks, stats = run_listener(settings, body)
    code, control_id, text = parse_ack(acks[0])
    assert (code, control_id) == ("AR", "BAD-1") and "resend" in text  # the sender keeps the message
    assert parse_ack(acks[1])[0] == "AA"
    assert stats["dead_letters_failed"] == 1 and stats["dead_letters"] == 0


def test_fhir_rejection_whose_dead_letter_kafka_refused_is_503(topic_settings: Settings,
                                                               tmp_path: Path) -> None:
    settings = refusing_dead_letters(topic_settings)
    gate, auth = ingest_gate(tmp_path)
    invalid = (FHIR / "invalid_diagnosticreport.json").read_bytes()

    async def go() -> tuple[int, dict[str, Any]]:
        s = settings
        runner, port = await start_server(s.kafka, s.topics, s.ingest, "127.0.0.1", 0, gate=gate)
        try:
            return await post_in_pieces(port, auth, "/fhir/DiagnosticReport", invalid, [], gap=0)
        finally:
            await runner.cleanup()

    status, oo = asyncio.run(go())
    assert status == 503 and oo["issue"][0]["code"] == "transient"


def test_ingest_file_whose_dead_letter_kafka_refused_exits_non_zero(topic_settings: Settings,
                                                                     tmp_path: Path) -> None:
    settings = refusing_dead_letters(topic_settings)
    csv_path = tmp_path / "export.csv"
    csv_path.write_text('rid,mrn,findings\nR1,M1,"Lungs clear."\nR2,M2\n')  # R2: a row short of a cell
    res = CliRunner().invoke(main, ["ingest", "file", str(csv_path), "--map", "rid=accession",
                                    "--map", "findings=text"], env=env_of(settings), catch_exceptions=False)
    assert res.exit_code == 1, res.output
    assert "read 2, produced 1, rejected 1, failed 0, dead letters failed 1" in res.output


# --- a report Kafka refuses for good ----------------------------------------------------------------------

def big_text() -> str:
    rnd = random.Random(2)  # ~1.2 MB of UTF-8 that lz4 cannot shrink: over the broker's 1 MiB limit
    return "FINDINGS: " + "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(400_000))


def test_mllp_report_over_the_broker_limit_is_ae_and_dead_lettered(topic_settings: Settings) -> None:
    big = GOOD_HL7.replace(b"|C-2|", b"|C-2-BIG|") + ("\rOBX|9|TX|REPORT||" + big_text() + "||||||F").encode()

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, [big, GOOD_HL7], timeout=60)

    acks = run_listener(topic_settings, body, kafka_timeout=20)
    code, control_id, text = parse_ack(acks[0])
    assert (code, control_id) == ("AE", "C-2-BIG") and "too large" in text
    assert parse_ack(acks[1])[0] == "AA"
    [dl] = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1)
    assert dl["value"] == big[:DEAD_LETTER_VALUE_MAX] and "too large" in dl["error"]


def test_fhir_report_over_the_broker_limit_is_413_and_dead_lettered(topic_settings: Settings,
                                                                    tmp_path: Path) -> None:
    gate, auth = ingest_gate(tmp_path)
    dr = json.loads((FHIR / "diagnosticreport_final.json").read_bytes())
    dr.pop("presentedForm")
    dr["conclusion"] = big_text()
    body = json.dumps(dr, ensure_ascii=False).encode()

    async def go() -> tuple[int, dict[str, Any]]:
        s = topic_settings
        runner, port = await start_server(s.kafka, s.topics, s.ingest, "127.0.0.1", 0, gate=gate)
        try:
            return await post_in_pieces(port, auth, "/fhir/DiagnosticReport", body, [], gap=0)
        finally:
            await runner.cleanup()

    status, oo = asyncio.run(go())
    assert status == 413 and "too large" in oo["issue"][0]["diagnostics"]
    [dl] = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1)
    assert dl["value"] == body[:DEAD_LETTER_VALUE_MAX] and "too large" in dl["error"]
