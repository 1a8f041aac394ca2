"""MLLP framing as real senders do it, through the running listener and the real broker: an end block
without its CR, a frame that never ends, a report with an embedded PDF, the configured frame limit."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import time
from typing import Any

import pytest

from processors.ingest.hl7v2 import parse_ack
from radstream.config import Settings
from streams.config import IngestConfig
from streams.ingest.mllp import HL7Listener
from tests.streams.ingest.test_ingest_front_doors import frame, raw_exchange, read_topic, run_listener

pytestmark = pytest.mark.integration

MSH = "MSH|^~\\&|RIS|HOSP|RADSTREAM|WH|20260101120000||ORU^R01|{cid}|P|2.5"
PID = "PID|1||MRN123^^^HOSP^MR||DOE^JOHN"
OBR = "OBR|1|PL1|{acc}|CT123^CT HEAD|||20260101100000|||||||||||||||20260101110000||CT|F"


def oru(cid: str, acc: str, *obx: str) -> bytes:
    return "\r".join([MSH.format(cid=cid), PID, OBR.format(acc=acc), *obx]).encode()


def test_default_frame_limit_admits_attachments() -> None:
    assert IngestConfig().mllp_max_bytes == 32 * 1024 * 1024


def test_end_block_without_cr_is_answered_at_once(topic_settings: Settings) -> None:
    """Senders that end a frame with FS alone get their ACK at once (not silence until the idle timeout);
    back-to-back frames of such a sender, and a conformant frame after them, are each answered."""
    one = oru("FS1", "ACC-FS1", "OBX|1|TX|IMP||First report.||||||F")
    two = oru("FS2", "ACC-FS2", "OBX|1|TX|IMP||Second report.||||||F")
    three = oru("FS3", "ACC-FS3", "OBX|1|TX|IMP||Third report.||||||F")

    async def body(port: int, listener: HL7Listener) -> tuple[list[bytes], float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        acks: list[bytes] = []
        t0 = time.monotonic()
        writer.write(b"\x0b" + one + b"\x1c")  # no CR, and the sender waits for the ACK
        await writer.drain()
        acks.append(await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 20))
        elapsed = time.monotonic() - t0
        # one write: an FS-only frame, a stray end block, a conformant frame
        writer.write(b"\x0b" + two + b"\x1c" + b"\x1c\r" + frame(three))
        await writer.drain()
        acks.append(await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 20))
        acks.append(await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 20))
        writer.close()
        await writer.wait_closed()
        return acks, elapsed

    acks, elapsed = run_listener(topic_settings, body, idle_timeout=60)
    assert [parse_ack(a)[:2] for a in acks] == [("AA", "FS1"), ("AA", "FS2"), ("AA", "FS3")]
    assert elapsed < 20  # answered at once, not after the 60 s idle timeout
    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=3)
    assert sorted((e["accession"], e["text"]) for e in events) == [
        ("ACC-FS1", "First report."), ("ACC-FS2", "Second report."), ("ACC-FS3", "Third report.")]
    dls = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1, timeout=3)
    assert dls == []  # the CR after the FS of a conformant frame, a stray end block: not junk


def test_frame_without_end_block_is_dead_lettered_at_the_idle_timeout(topic_settings: Settings) -> None:
    raw = oru("NOEND", "ACC-NOEND", "OBX|1|TX|IMP||Never ended.||||||F")

    async def body(port: int, listener: HL7Listener) -> tuple[bytes, dict[str, int]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x0b" + raw)  # no end block at all
        await writer.drain()
        got = await asyncio.wait_for(reader.read(1000), 20)  # b"": the listener closed the connection
        writer.close()
        await asyncio.sleep(0.5)
        return got, dict(listener.stats)

    got, stats = run_listener(topic_settings, body, idle_timeout=2)
    assert got == b"" and stats["dead_letters"] == 1
    [dl] = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1)
    assert "no end block <FS>" in dl["error"] and "idle timeout" in dl["error"]
    assert dl["value"] == b"\x0b" + raw  # the bytes the sender sent, for a replay
    assert read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=1,
                      timeout=2) == []


def test_frame_over_the_configured_limit_is_ar_with_its_head_dead_lettered(topic_settings: Settings) -> None:
    ingest = dataclasses.replace(topic_settings.ingest, mllp_max_bytes=64 * 1024)
    settings = dataclasses.replace(topic_settings, ingest=ingest)
    big = oru("BIG", "ACC-BIG", "OBX|1|TX|IMP||Short.||||||F", "OBX|2|ED|PDF^Report||^application^pdf^Base64^"
              + "A" * 100_000 + "||||||F")

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return [await raw_exchange(port, frame(big))]

    [ack] = run_listener(settings, body)
    code, control_id, text = parse_ack(ack)
    assert (code, control_id) == ("AR", "BIG") and f"exceeds the limit of {64 * 1024} bytes" in text
    [dl] = read_topic(settings, settings.topics.dead_letter, "dead_letter", expect=1)
    assert "exceeds the limit" in dl["error"] and dl["value"].startswith(b"MSH|")


def test_report_with_an_embedded_pdf_is_accepted_with_its_text(topic_settings: Settings) -> None:
    """A short text report with a ~3 MiB PDF in an ED OBX (4.2 MB message): AA, one event holding the
    text only. Needs both the frame limit (mllp.py/config) and a parser size check that leaves out
    ED/RP values (processors/ingest/hl7v2.py)."""
    pdf = base64.b64encode(b"%PDF-1.4\n" + os.urandom(3 * 1024 * 1024)).decode()
    raw = oru("PDF1", "ACC-PDF1", "OBX|1|TX|IMP||Short text report.\\.br\\No acute disease.||||||F",
              f"OBX|2|ED|PDF^Report||^application^pdf^Base64^{pdf}||||||F")
    assert len(raw) > 4 * 1024 * 1024

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return [await raw_exchange(port, frame(raw))]

    [ack] = run_listener(topic_settings, body)
    code, control_id, note = parse_ack(ack)
    assert (code, control_id) == ("AA", "PDF1") and "attachment not kept" in note, parse_ack(ack)
    events: list[dict[str, Any]] = read_topic(topic_settings, topic_settings.topics.reports,
                                              "report_finalized", expect=1)
    assert [(e["accession"], e["text"]) for e in events] == [
        ("ACC-PDF1", "Short text report.\nNo acute disease.")]
