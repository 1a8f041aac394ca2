"""The FHIR endpoint against the real broker with reports as real senders write them: a report with
nothing to store yet, Bundles holding one, a batch with a bad entry, a PDF-only report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from radstream.config import Settings
from streams.ingest.fhir_server import start_server
from tests.processors.ingest.test_fhir_real_world import bundle, report
from tests.streams.helpers import ingest_gate
from tests.streams.ingest.test_ingest_front_doors import read_topic

pytestmark = pytest.mark.integration


def test_fhir_endpoint_skips_reports_with_nothing_yet_and_answers_a_batch_per_entry(
        topic_settings: Settings, tmp_path: Path) -> None:
    gate, auth = ingest_gate(tmp_path)
    bodies = {
        "registered": ("/DiagnosticReport", report(status="registered", presentedForm=None, conclusion=None)),
        "transaction": ("", bundle("transaction", {}, {"status": "registered", "presentedForm": None})),
        "batch": ("/Bundle", bundle("batch", {"identifier": [{"type": {"coding": [{"code": "ACSN"}]},
                                                             "value": "ACC-B1"}]},
                                    {"presentedForm": None}, {"status": "partial", "presentedForm": None})),
        "pdf": ("/DiagnosticReport", report(conclusion=None, presentedForm=[
            {"contentType": "application/pdf", "data": "JVBERi0xLjQK"}])),
    }

    async def go() -> dict[str, tuple[int, Any]]:
        runner, port = await start_server(topic_settings.kafka, topic_settings.topics, topic_settings.ingest,
                                          "127.0.0.1", 0, gate=gate)
        out: dict[str, tuple[int, Any]] = {}
        try:
            async with aiohttp.ClientSession() as s:
                for name, (path, obj) in bodies.items():
                    async with s.post(f"http://127.0.0.1:{port}/fhir{path}", data=json.dumps(obj).encode(),
                                      headers={"Content-Type": "application/fhir+json", **auth}) as r:
                        out[name] = r.status, await r.json(content_type=None)
        finally:
            await runner.cleanup()
        return out

    out = asyncio.run(go())
    status, oo = out["registered"]  # nothing to store: 200 with a note, no event, no dead letter
    assert status == 200 and [i["severity"] for i in oo["issue"]] == ["information", "information"]
    assert "accepted 0 report event(s)" in oo["issue"][0]["diagnostics"]
    skipped = oo["issue"][1]["diagnostics"]
    assert "skipped, no report yet" in skipped and "registered" in skipped

    status, oo = out["transaction"]  # the final report of the transaction goes on
    assert status == 200 and "ACC1 final" in oo["issue"][0]["diagnostics"]
    assert "dr2 (ACC2)" in oo["issue"][1]["diagnostics"]

    status, oo = out["batch"]  # per entry: one accepted, one refused (Bundle.entry[5]), one skipped
    assert status == 200, oo
    assert [(i["severity"], i.get("expression")) for i in oo["issue"]] == [
        ("information", None), ("error", ["Bundle.entry[5]"]), ("information", None)]
    assert "ACC-B1 final" in oo["issue"][0]["diagnostics"]
    assert "empty report text" in oo["issue"][1]["diagnostics"] and oo["issue"][1]["code"] == "required"

    status, oo = out["pdf"]
    assert status == 400 and oo["issue"][0]["code"] == "not-supported"
    assert oo["issue"][0]["diagnostics"].startswith("report text only as application/pdf: not supported")

    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=2)
    assert sorted((e["accession"], e["status"]) for e in events) == [("ACC-B1", "final"), ("ACC1", "final")]
    dls = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=2)
    reasons = sorted(d["error"] for d in dls)
    assert len(dls) == 2 and reasons[0].startswith("Bundle.entry[5]: DiagnosticReport dr2: empty report text")
    assert "application/pdf: not supported" in reasons[1]
