"""The MLLP listener's resource limits against a slow or greedy peer (``ingest.mllp_max_connections``,
``mllp_frame_deadline_s``, ``mllp_max_buffered_bytes``): real sockets, the running listener, the real
broker. Each test failed on main a79c22c (no such limit: the refused connection or frame was held).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import REGISTRY

from processors.ingest.hl7v2 import parse_ack
from radstream.config import Settings
from streams.ingest.mllp import HL7Listener
from tests.streams.ingest.test_ingest_front_doors import frame, raw_exchange, read_topic, run_listener

pytestmark = pytest.mark.integration


def oru(control_id: str, text_bytes: int = 200) -> bytes:
    line = "No acute intracranial abnormality. "
    return "\r".join([
        f"MSH|^~\\&|RIS|HOSP|RADSTREAM|WH|20260101120000||ORU^R01|{control_id}|P|2.5",
        "PID|1||MRN9^^^HOSP^MR||DOE^JO",
        f"OBR|1|PL9|ACC-{control_id}|CT123^CT HEAD|||20260101100000|||||||||||||||20260101110000||CT|F",
        "OBX|1|TX|IMP||" + line * (text_bytes // len(line) + 1) + "||||||F"]).encode()


def refusals(why: str) -> float:
    return REGISTRY.get_sample_value("radstream_mllp_refusals_total", {"reason": why}) or 0.0


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the listener closes the connection (EOF or reset) within ``timeout`` seconds."""
    try:
        return await asyncio.wait_for(reader.read(1 << 16), timeout) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_a_connection_over_the_cap_is_closed_and_the_others_are_served(topic_settings: Settings) -> None:
    settings = topic_settings.replace(ingest={"mllp_max_connections": 3})
    before = refusals("connections")

    async def body(port: int, listener: HL7Listener) -> tuple[list[bool], list[bytes], dict[str, int]]:
        held = []
        for _ in range(2):  # two idle connections that send nothing
            held.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(0.1)
        # a legit sender on the third and last slot
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.1)
        over = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]  # 4th and 5th
        closed = [await closed_by_peer(r, 5.0) for r, _ in over]
        writer.write(frame(oru("CAP1")))
        await writer.drain()
        acks = [await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30)]
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)
        acks.append(await raw_exchange(port, frame(oru("CAP2"))))  # its slot is free again
        for _, w in held + over:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
        return closed, acks, dict(listener.stats)

    closed, acks, stats = run_listener(settings, body)
    assert closed == [True, True]
    assert [parse_ack(a)[:2] for a in acks] == [("AA", "CAP1"), ("AA", "CAP2")]
    assert stats["refused_connections"] == 2 and stats["dead_letters"] == 0
    assert refusals("connections") - before == 2


def test_a_trickling_sender_is_cut_at_the_frame_deadline(topic_settings: Settings) -> None:
    """A byte every 0.1 s never trips the 1 s idle timeout; the 1.5 s frame deadline cuts it, and the
    bytes it sent are dead-lettered with the deadline as reason. A fast frame meanwhile is served."""
    settings = topic_settings.replace(ingest={"mllp_frame_deadline_s": 1.5})
    data = frame(oru("SLOW", 300))
    before = refusals("deadline")

    async def body(port: int, listener: HL7Listener) -> tuple[bool, int, bytes, dict[str, int]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0

        async def trickle() -> None:
            nonlocal sent
            with contextlib.suppress(ConnectionError):
                for i in range(0, len(data), 4):  # ~9 s for the whole frame
                    writer.write(data[i:i + 4])
                    await writer.drain()
                    sent = i + 4
                    await asyncio.sleep(0.1)

        task = asyncio.create_task(trickle())
        await asyncio.sleep(0.5)
        fast = await raw_exchange(port, frame(oru("FAST")))
        closed = await closed_by_peer(reader, 5.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.close()
        await asyncio.sleep(0.3)
        return closed, sent, fast, dict(listener.stats)

    closed, sent, fast, stats = run_listener(settings, body, idle_timeout=1.0)
    assert closed and sent < len(data)
    assert parse_ack(fast)[:2] == ("AA", "FAST")
    assert stats["refused_deadline"] == 1 and stats["dead_letters"] == 1
    assert refusals("deadline") - before == 1
    [dl] = read_topic(settings, settings.topics.dead_letter, "dead_letter", expect=1)
    assert "frame deadline of 1.5 s" in dl["error"]
    assert data.startswith(dl["value"]) and len(dl["value"]) >= 40  # what came before the cut


def test_bytes_held_across_connections_are_capped(topic_settings: Settings) -> None:
    """Budget 64 KiB: two senders hold ~30 KiB each of unfinished frames; a third's ~30 KiB goes over,
    so it gets AR (resend) and is closed, nothing dead-lettered. The two finish and get AA; after them a
    new sender is served again (the budget was given back)."""
    settings = topic_settings.replace(ingest={"mllp_max_bytes": 48 * 1024,
                                              "mllp_max_buffered_bytes": 64 * 1024})
    msgs = {c: frame(oru(c, 30 * 1024)) for c in ("BUF1", "BUF2", "BUF3", "BUF4")}
    before = refusals("buffered")

    async def body(port: int, listener: HL7Listener) -> tuple[list[bytes], bool, dict[str, int], int]:
        conns = {}
        for c in ("BUF1", "BUF2", "BUF3"):
            conns[c] = await asyncio.open_connection("127.0.0.1", port)
            conns[c][1].write(msgs[c][:-2])  # all but the end block
            await conns[c][1].drain()
            await asyncio.sleep(0.3)
        r3, w3 = conns["BUF3"]
        refused = await asyncio.wait_for(r3.readuntil(b"\x1c\r"), 10)
        closed = await closed_by_peer(r3, 5.0)
        acks = [refused]
        for c in ("BUF1", "BUF2"):
            r, w = conns[c]
            w.write(b"\x1c\r")
            await w.drain()
            acks.append(await asyncio.wait_for(r.readuntil(b"\x1c\r"), 30))
        for _, w in conns.values():
            w.close()
        await asyncio.sleep(0.3)
        acks.append(await raw_exchange(port, msgs["BUF4"]))
        await asyncio.sleep(0.2)
        return acks, closed, dict(listener.stats), listener.budget.held

    acks, closed, stats, held = run_listener(settings, body)
    ar = parse_ack(acks[0])
    assert ar[:2] == ("AR", "BUF3") and closed
    assert [parse_ack(a)[:2] for a in acks[1:]] == [("AA", "BUF1"), ("AA", "BUF2"), ("AA", "BUF4")]
    assert stats["refused_buffered"] == 1 and stats["dead_letters"] == 0
    assert refusals("buffered") - before == 1
    assert held == 0  # every connection gave its bytes back


def test_limits_are_checked_at_start_up() -> None:
    from radstream.config import problems

    bad = Settings().replace(ingest={"mllp_max_connections": 0, "mllp_frame_deadline_s": 0.0,
                                     "mllp_max_bytes": 1024, "mllp_max_buffered_bytes": 512})
    found = "\n".join(problems(bad))
    for name in ("ingest.mllp_max_connections", "ingest.mllp_frame_deadline_s",
                 "ingest.mllp_max_buffered_bytes"):
        assert name in found


def test_a_frame_over_the_size_limit_is_dead_lettered_not_refused_as_busy(topic_settings: Settings) -> None:
    """The budget at its least (the frame limit): a frame past the size limit gets the size limit's AR
    and its head dead-lettered; "busy, resend" would have the sender send it again for ever."""
    limit = 256 * 1024
    settings = topic_settings.replace(ingest={"mllp_max_bytes": limit, "mllp_max_buffered_bytes": limit})
    assert settings.ingest.problems() == []

    async def body(port: int, listener: HL7Listener) -> tuple[list[bytes], dict[str, int]]:
        acks = []
        for cid, size in (("NEAR", limit - 4096), ("OVER", limit + 5000), ("OVER3", 3 * limit)):
            acks.append(await raw_exchange(port, frame(oru(cid, size))))
        return acks, dict(listener.stats)

    acks, stats = run_listener(settings, body)
    codes = [parse_ack(a)[:2] for a in acks]
    assert codes == [("AA", "NEAR"), ("AR", "OVER"), ("AR", "OVER3")], codes
    assert all("exceeds the limit" in parse_ack(a)[2] for a in acks[1:])
    assert stats.get("refused_buffered", 0) == 0, stats
    assert len(read_topic(settings, settings.topics.dead_letter, "dead_letter", expect=2)) == 2
