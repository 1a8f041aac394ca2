"""Ingest front doors against the real broker: MLLP listener, FHIR endpoint, ``radstream ingest file``.

Real MLLP traffic over TCP to the running listener, real HTTP to the running FHIR endpoint; the
ACKs / OperationOutcomes are checked and the events and dead letters are read back from Kafka.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from processors.ingest.hl7v2 import parse_ack
from radstream.cli import main
from radstream.config import Settings
from streams import serde
from streams.ingest.fhir_server import start_server
from streams.ingest.mllp import HL7Listener, send_messages
from streams.ingest.publish import Publisher
from streams.producer import make_producer
from tests.streams.helpers import ingest_gate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
HL7 = ROOT / "samples" / "hl7"
FHIR = ROOT / "samples" / "fhir"
T = TypeVar("T")


def read_topic(settings: Settings, topic: str, contract: str, expect: int, timeout: float = 30.0,
               settle: float = 1.0) -> list[dict[str, Any]]:
    """All records of ``topic`` (waits for ``expect``, then ``settle`` s more to catch extra ones)."""
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        extra_until: float | None = None
        while time.monotonic() < (extra_until or deadline):
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                rec = serde.decode(contract, msg.value())
                rec["_key"] = msg.key()
                out.append(rec)
            if len(out) >= expect and extra_until is None:
                extra_until = time.monotonic() + settle
        return out
    finally:
        c.close()


def run_listener(settings: Settings, body: Callable[[int, HL7Listener], Awaitable[T]], **kw: Any) -> T:
    async def go() -> T:
        listener = HL7Listener(settings.kafka, settings.topics, settings.ingest, **kw)
        port = await listener.start("127.0.0.1", 0)
        try:
            return await body(port, listener)
        finally:
            await listener.stop()
    return asyncio.run(go())


async def raw_exchange(port: int, data: bytes, read_ack: bool = True, close: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.close()
        await writer.wait_closed()
        return b""
    ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30) if read_ack else b""
    writer.close()
    await writer.wait_closed()
    return ack


def frame(raw: bytes) -> bytes:
    return b"\x0b" + raw + b"\x1c\r"


# --- MLLP ------------------------------------------------------------------------------------------

def test_mllp_samples_ack_after_delivery_and_events_on_kafka(topic_settings: Settings) -> None:
    names = ["vendor_a_obx_per_line.hl7", "vendor_b_ft_blob_latin1.hl7", "vendor_c_1_preliminary.hl7",
             "vendor_c_2_final.hl7", "vendor_c_3_corrected.hl7", "vendor_d_addendum_b.hl7",
             "multi_obr_two_reports.hl7", "cancelled.hl7", "vendor_c_2_final.hl7"]  # last: a resend
    msgs = [(HL7 / n).read_bytes() for n in names]

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, msgs)

    acks = run_listener(topic_settings, body)
    parsed = [parse_ack(a) for a in acks]
    assert [p[0] for p in parsed] == ["AA"] * len(names)
    assert [p[1] for p in parsed] == ["A000123", "B-77812", "C-1", "C-2", "C-3", "D-4401", "M-9001", "X-1",
                                      "C-2"]
    assert "2 report(s)" in parsed[6][2]

    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=10)
    assert len(events) == 10
    by_acc: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_acc.setdefault(e["accession"], []).append(e)
        assert e["_key"] == f"{e['site']}|{e['accession']}".encode()
    lifecycle = sorted(by_acc["ACC-C-5001"], key=lambda e: e["version"])
    assert [e["status"] for e in lifecycle] == ["preliminary", "final", "final", "corrected"]
    assert lifecycle[1]["event_id"] == lifecycle[2]["event_id"]  # the resend: same idempotency key
    assert by_acc["F-4401"][0]["status"] == "addendum"
    assert by_acc["ACC-X-1"][0]["status"] == "cancelled"
    assert {"ACC-M-1", "ACC-M-2"} <= set(by_acc)
    assert "Schäfer" in by_acc["F9981"][0]["author"]
    assert read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=0,
                      timeout=1, settle=0.5) == []


def test_mllp_bad_messages_ae_ar_dead_letters_and_listener_keeps_serving(topic_settings: Settings) -> None:
    good = (HL7 / "vendor_a_obx_per_line.hl7").read_bytes()
    bad = {n: (HL7 / n).read_bytes() for n in ("bad_missing_obr.hl7", "bad_unknown_status.hl7",
                                              "bad_empty_text.hl7", "bad_wrong_encoding.hl7")}

    async def body(port: int, listener: HL7Listener) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["bad"] = await send_messages("127.0.0.1", port, [*bad.values(), good])
        out["junk"] = await raw_exchange(port, b"this is not a frame\x1c\r")
        out["truncated"] = await raw_exchange(port, b"\x0b" + good[:120], read_ack=False, close=True)
        # a frame cut short, then a complete one on the same connection: the good one is still served
        out["restart"] = await raw_exchange(port, b"\x0b" + good[:80] + frame(good))
        out["oversize"] = await raw_exchange(port, frame(good + b"OBX|9|TX|X||" + b"y" * 5000 + b"\r"))
        out["after"] = await send_messages("127.0.0.1", port, [good])
        await asyncio.sleep(0.5)
        out["stats"] = dict(listener.stats)
        return out

    res = run_listener(topic_settings, body, max_bytes=4096)
    codes = [parse_ack(a) for a in res["bad"]]
    assert [c[0] for c in codes] == ["AE", "AE", "AE", "AR", "AA"]
    assert "no OBR segment" in codes[0][2] and "unknown report status" in codes[1][2]
    assert "empty report text" in codes[2][2] and "not valid utf-8" in codes[3][2]
    assert b"\rERR|" in res["bad"][0]
    assert parse_ack(res["junk"])[0] == "AR" and "start block" in parse_ack(res["junk"])[2]
    assert parse_ack(res["restart"])[:2] == ("AA", "A000123")
    over = parse_ack(res["oversize"])
    assert over[0] == "AR" and "exceeds the limit of 4096" in over[2] and over[1] == "A000123"
    assert parse_ack(res["after"][0])[0] == "AA"

    dls = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=8)
    reasons = [d["error"] for d in dls]
    assert len(dls) == 8, reasons
    assert all(d["stage"] == "hl7-listener" for d in dls)
    for needle in ("no OBR segment", "unknown report status", "empty report text", "not valid utf-8",
                   "start block", "truncated MLLP frame", "outside an MLLP frame", "exceeds the limit"):
        assert any(needle in r for r in reasons), needle
    wrong_enc = next(d for d in dls if "not valid utf-8" in d["error"])
    assert wrong_enc["value"] == bad["bad_wrong_encoding.hl7"]  # the original bytes, unchanged
    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=3)
    assert len(events) == 3 and {e["accession"] for e in events} == {"ACC20260302001"}


def test_mllp_answers_ar_resend_when_kafka_does_not_confirm(topic_settings: Settings) -> None:
    dead = topic_settings.replace(kafka={"bootstrap": "127.0.0.1:1"})
    # librdkafka gives up after message.timeout.ms: a delivery *error* (not our wait timing out)
    pub = Publisher(dead.kafka, dead.topics, dead.ingest, stage="hl7-listener",
                    producer=make_producer(dead.kafka, **{"message.timeout.ms": 1500}))

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, [(HL7 / "vendor_a_obx_per_line.hl7").read_bytes()])

    t0 = time.monotonic()
    [ack] = run_listener(dead, body, publisher=pub, kafka_timeout=20.0)
    code, ctl, text = parse_ack(ack)
    assert (code, ctl) == ("AR", "A000123") and "resend" in text
    assert time.monotonic() - t0 < 15


def test_pseudonymised_events_never_carry_the_patient_id(topic_settings: Settings) -> None:
    settings = topic_settings.replace(ingest={"pseudonym_key": "k" * 32})

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, [(HL7 / "vendor_a_obx_per_line.hl7").read_bytes()])

    [ack] = run_listener(settings, body)
    assert parse_ack(ack)[0] == "AA"
    [ev] = read_topic(settings, settings.topics.reports, "report_finalized", expect=1)
    assert ev["patient_id_is_pseudonym"] and ev["patient_id"].startswith("psn-")
    assert "7301445" not in json.dumps(ev, default=str)


# --- FHIR endpoint ----------------------------------------------------------------------------------

def test_fhir_endpoint_accepts_reports_and_bundles_and_rejects_with_operation_outcome(
        topic_settings: Settings, tmp_path: Path) -> None:
    gate, auth = ingest_gate(tmp_path)

    async def go() -> dict[str, Any]:
        runner, port = await start_server(topic_settings.kafka, topic_settings.topics, topic_settings.ingest,
                                          "127.0.0.1", 0, gate=gate)
        base = f"http://127.0.0.1:{port}/fhir"
        hdr = {"Content-Type": "application/fhir+json", **auth}
        out: dict[str, Any] = {}
        try:
            async with aiohttp.ClientSession() as s:
                async def post(path: str, data: bytes, headers: dict[str, str] = hdr) -> tuple[int, Any]:
                    async with s.post(base + path, data=data, headers=headers) as r:
                        return r.status, await r.json(content_type=None)

                single = (FHIR / "diagnosticreport_final.json").read_bytes()
                out["single"] = await post("/DiagnosticReport", single)
                out["bundle"] = await post("/Bundle", (FHIR / "bundle_final.json").read_bytes())
                out["appended"] = await post("", (FHIR / "bundle_appended.json").read_bytes())
                out["invalid"] = await post("/DiagnosticReport",
                                            (FHIR / "invalid_diagnosticreport.json").read_bytes())
                out["notjson"] = await post("/DiagnosticReport", b"{oops")
                out["wrongtype"] = await post("/DiagnosticReport", (FHIR / "bundle_final.json").read_bytes())
                out["media"] = await post("/DiagnosticReport", b"<xml/>",
                                          {"Content-Type": "application/xml", **auth})
                async with s.get(base + "/metadata", headers=auth) as r:
                    out["meta"] = r.status, await r.json(content_type=None)
        finally:
            await runner.cleanup()
        return out

    out = asyncio.run(go())
    status, oo = out["single"]
    assert status == 201 and oo["resourceType"] == "OperationOutcome"
    assert oo["issue"][0]["severity"] == "information"
    assert "FH-ACC-7781 final" in oo["issue"][0]["diagnostics"]
    assert out["bundle"][0] == 200 and out["appended"][0] == 200
    for name, code, issue in (("invalid", 400, "structure"), ("notjson", 400, "structure"),
                              ("wrongtype", 400, "not-supported"), ("media", 415, "not-supported")):
        status, oo = out[name]
        assert status == code and oo["resourceType"] == "OperationOutcome", name
        assert oo["issue"][0]["severity"] == "error" and oo["issue"][0]["code"] == issue, name
    assert out["meta"][0] == 200 and out["meta"][1]["fhirVersion"] == "4.0.1"

    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=3)
    assert sorted((e["accession"], e["status"]) for e in events) == [
        ("FH-ACC-7781", "final"), ("FH-ACC-9001", "addendum"), ("FH-ACC-9001", "final")]
    assert all(e["source_format"] == "fhir" for e in events)
    dls = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=3)
    assert len(dls) == 3 and all(d["stage"] == "fhir-endpoint" for d in dls)


# --- files ------------------------------------------------------------------------------------------

def env_of(settings: Settings) -> dict[str, str]:
    env = {"RADSTREAM_KAFKA_BOOTSTRAP": settings.kafka.bootstrap, "RADSTREAM_STATE_DIR": settings.state_dir}
    for name in ("reports", "dead_letter"):
        env[f"RADSTREAM_TOPICS_{name.upper()}"] = getattr(settings.topics, name)
    return env


def test_ingest_file_jsonl_and_csv_with_rejects(topic_settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["ingest", "file", str(ROOT / "samples" / "reports.jsonl")],
                        env=env_of(topic_settings), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "read 10, produced 10, rejected 0, failed 0" in res.output

    csv_path = tmp_path / "export.csv"
    csv_path.write_text('rid,mrn,findings,impression\nR1,M1,"Lungs clear.\nNo effusion.",Normal.\n'
                        'R2,M2,only three\nR3,M3,,\n')
    rejects = tmp_path / "rejects.tsv"
    res = runner.invoke(main, ["ingest", "file", str(csv_path), "--map", "rid=accession", "--map",
                               "findings=text", "--map", "impression=text", "--rejects", str(rejects)],
                        env=env_of(topic_settings), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "read 3, produced 1, rejected 2" in res.output
    lines = rejects.read_text().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["export.csv:2", "export.csv:3"]

    events = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=11)
    assert len(events) == 11
    r1 = next(e for e in events if e["accession"] == "R1")
    assert r1["source_format"] == "csv"
    assert r1["text"] == "FINDINGS: Lungs clear.\nNo effusion.\n\nIMPRESSION: Normal."
    dls = read_topic(topic_settings, topic_settings.topics.dead_letter, "dead_letter", expect=2)
    assert len(dls) == 2 and {d["stage"] for d in dls} == {"ingest-file"}


def test_mllp_large_message_within_limit_is_accepted_whole(topic_settings: Settings) -> None:
    line = "FINDINGS: " + "Stable postoperative appearance of the lumbar spine. " * 20
    n = 600  # ~0.6 MB of report text in one message, parsed off the event loop
    raw = (HL7 / "vendor_a_obx_per_line.hl7").read_bytes().rstrip(b"\r") + b"\r" + b"".join(
        f"OBX|{i}|TX|GDT||{line}{i}||||||F\r".encode() for i in range(6, 6 + n))

    async def body(port: int, listener: HL7Listener) -> list[bytes]:
        return await send_messages("127.0.0.1", port, [raw])

    [ack] = run_listener(topic_settings, body)
    assert parse_ack(ack)[0] == "AA"
    [ev] = read_topic(topic_settings, topic_settings.topics.reports, "report_finalized", expect=1)
    lines = ev["text"].split("\n")
    assert len(lines) == 5 + n and lines[-1].endswith(f"{5 + n}")


def test_backfill_via_kafka_replays_through_the_reports_topic(topic_settings: Settings,
                                                              tmp_path: Path) -> None:
    from radstream.backfill import run_backfill

    settings = topic_settings.replace(state_dir=str(tmp_path))
    s = run_backfill(settings, [ROOT / "samples" / "reports.jsonl", FHIR / "reports.fhir.ndjson"],
                     via_kafka=True, workers=0, chunk_size=4)
    assert (s.read, s.loaded, s.rejected) == (14, 13, 1)
    events = read_topic(settings, settings.topics.reports, "report_finalized", expect=13)
    assert len(events) == 13 and {e["source_format"] for e in events} == {"json", "fhir"}
    [dl] = read_topic(settings, settings.topics.dead_letter, "dead_letter", expect=1)
    assert dl["stage"] == "backfill" and "invalid FHIR" in dl["error"]
