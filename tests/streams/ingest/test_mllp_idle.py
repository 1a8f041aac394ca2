"""The MLLP idle timeout is a time without bytes, not a deadline for the whole frame: a slow but live
sender is served, a silent one is still cut. Through the running listener and the real broker.

test_a_slow_but_live_sender_is_served failed on main 9ab78a1 (dead-lettered as 'idle').
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from processors.ingest.hl7v2 import parse_ack
from radstream.config import Settings
from streams.ingest.mllp import HL7Listener
from tests.streams.ingest.test_ingest_front_doors import frame, raw_exchange, read_topic, run_listener

pytestmark = pytest.mark.integration

RAW = "\r".join([
    "MSH|^~\\&|RIS|HOSP|RADSTREAM|WH|20260101120000||ORU^R01|SLOW1|P|2.5", "PID|1||MRN9^^^HOSP^MR||DOE^JO",
    "OBR|1|PL9|ACC-SLOW|CT123^CT HEAD|||20260101100000|||||||||||||||20260101110000||CT|F",
    "OBX|1|TX|IMP||" + "No acute intracranial abnormality. " * 40 + "||||||F"]).encode()


def test_a_slow_but_live_sender_is_served(topic_settings: Settings) -> None:
    data = b"\x0b" + RAW + b"\x1c\r"
    chunks = [data[i:i + 64] for i in range(0, len(data), 64)]

    async def body(port: int, listener: HL7Listener) -> tuple[bytes, dict[str, int]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for chunk in chunks:  # ~3 s in all, never more than 0.15 s without a byte; idle timeout 1 s
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(3.0 / len(chunks))
        ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30)
        writer.close()
        await writer.wait_closed()
        return ack, dict(listener.stats)

    ack, stats = run_listener(topic_settings, body, idle_timeout=1.0)
    assert parse_ack(ack)[:2] == ("AA", "SLOW1") and stats["dead_letters"] == 0
    [ev] = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=1)
    assert ev["accession"] == "ACC-SLOW"


def test_a_sender_silent_for_the_idle_timeout_is_still_cut(topic_settings: Settings) -> None:
    async def body(port: int, listener: HL7Listener) -> tuple[bytes, dict[str, int]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x0b" + RAW[:200])
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.write(RAW[200:400])  # still alive at 0.5 s, then silent
        await writer.drain()
        got = await asyncio.wait_for(reader.read(1000), 20)  # b"": the listener closed the connection
        writer.close()
        await asyncio.sleep(0.5)
        return got, dict(listener.stats)

    got, stats = run_listener(topic_settings, body, idle_timeout=1.0)
    assert got == b"" and stats["dead_letters"] == 1
    [dl] = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=1)
    assert dl["value"] == b"\x0b" + RAW[:400] and "idle timeout" in dl["error"]


def test_large_frames_are_parsed_at_most_two_at_once(topic_settings: Settings) -> None:
    """Five ~2.7 MiB frames (a PDF each) on five connections at once: each is answered AA, and no more
    than two large parses run at once (the executor alone would run ~6). Fails on main: no such bound."""
    pdf = base64.b64encode(os.urandom(2 * 1024 * 1024)).decode()

    def big(i: int) -> bytes:
        return "\r".join([
            f"MSH|^~\\&|RIS|HOSP|RADSTREAM|WH|20260101120000||ORU^R01|BIG{i}|P|2.5", "PID|1||MRN9^^^HOSP^MR",
            f"OBR|1|PL{i}|ACC-BIG{i}|CT123^CT HEAD|||20260101100000|||||||||||||||20260101110000||CT|F",
            "OBX|1|TX|IMP||Normal.||||||F", f"OBX|2|ED|PDF||^application^pdf^Base64^{pdf}||||||F"]).encode()

    async def body(port: int, listener: HL7Listener) -> tuple[list[bytes], int]:
        acks = await asyncio.gather(*(raw_exchange(port, frame(big(i))) for i in range(5)))
        return list(acks), listener.large_parses_peak

    acks, peak = run_listener(topic_settings, body)
    assert sorted(parse_ack(a)[:2] for a in acks) == [("AA", f"BIG{i}") for i in range(5)]
    assert 1 <= peak <= 2
