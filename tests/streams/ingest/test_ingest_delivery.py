"""Ingest front doors: nothing lost on the way in (real broker, real TCP/HTTP).

- a FHIR body that arrives in several pieces is read whole before it is parsed;
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from radstream.config import Settings
from streams.ingest.fhir_server import start_server
from tests.streams.helpers import ingest_gate
from tests.streams.ingest.test_ingest_front_doors import FHIR, read_topic

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
