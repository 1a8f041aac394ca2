"""The worker as a real process on a real broker: findings out, bad input to the dead-letter topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processors.ingest.research import keyed_event_id
from radstream.config import Settings
from radstream.text_deid import research_key
from streams import serde
from streams.producer import make_producer, produce_sync
from tests.streams.helpers import (
    consume,
    free_port,
    report,
    research_accession,
    research_key_of,
    worker_process,
)


def test_findings_published_and_bad_input_dead_lettered(worker: Settings) -> None:
    s = worker
    p = make_producer(s.kafka)
    key = b"default|X1"
    produce_sync(p, s.topics.reports, "report_finalized", key,
                 report("X1", "FINDINGS: No pneumothorax. There is a small right pleural effusion."))
    p.produce(s.topics.reports, key=b"default|BAD", value=b"this is not avro")
    p.produce(s.topics.reports, key=b"default|BAD2",
              value=serde.encode("dead_letter", {"stage": "x", "value": b"", "error_type": "E",
                                                 "error": "wrong contract", "time": datetime.now(UTC)}))
    p.flush(10)
    # the stream goes on after bad input
    produce_sync(p, s.topics.reports, "report_finalized", b"default|X2",
                 report("X2", "IMPRESSION: Stable 6 mm nodule in the left lower lobe."))

    found = {m.key(): serde.decode("report_findings", m.value()) for m in consume(s, s.topics.findings, 2)}
    k1, k2 = research_key_of(s, "default", "X1"), research_key_of(s, "default", "X2")
    assert set(found) == {k1, k2}
    x1 = found[k1]
    assert x1["accession"] == research_accession(s, "X1")
    assert x1["event_id"] == keyed_event_id(research_key(s), "ev-X1-1")  # keyed: not the clinical id
    assert x1["report_version"] == 1
    by_concept = {f["concept"]: f for f in x1["findings"]}
    assert by_concept["pneumothorax"]["negated"] is True
    assert by_concept["pleural_effusion"]["negated"] is False
    assert any(f["concept"] == "nodule" and not f["negated"] for f in found[k2]["findings"])

    dead = [serde.decode("dead_letter", m.value()) for m in consume(s, s.topics.dead_letter, 2)]
    assert {d["value"] for d in dead} >= {b"this is not avro"}
    assert all(d["stage"] == "nlp-agent" and d["original_topic"] == s.topics.reports for d in dead)
    assert all(d["offset"] is not None and d["error"] for d in dead)
    assert any("expected report_finalized" in d["error"] for d in dead)


def decoded(rec: dict[str, Any]) -> dict[str, Any]:
    return serde.decode("report_finalized", serde.encode("report_finalized", rec))


def test_retracted_version_carries_no_findings() -> None:
    from streams.handlers import analyze_report

    cancelled = report("X3", "FINDINGS: Large pneumothorax.", status="cancelled", version=2)
    rec = analyze_report(decoded(cancelled))
    assert rec["status"] == "cancelled" and rec.get("findings", []) == []
    assert serde.decode("report_findings", serde.encode("report_findings", rec))["report_version"] == 2
    live = analyze_report(decoded(report("X3", "FINDINGS: Large pneumothorax.", version=1)))
    assert [f["concept"] for f in live["findings"]] == ["pneumothorax"]


def test_an_addendum_is_analysed_with_its_report(worker: Settings) -> None:
    """An addendum sent alone (HL7 OBX-11 B lines) is analysed as the report plus the addendum, from the
    report's version history in the agent's changelogged table; a resend of the addendum gives the same."""
    s = worker
    p = make_producer(s.kafka)
    key = b"default|AD1"
    final = report("AD1", "FINDINGS: 2 cm hypodense lesion in the liver. No pleural effusion.", version=1)
    addendum = report("AD1", "ADDENDUM: small right pneumothorax, discussed with Dr Lee.", status="addendum",
                      version=2)
    for rec in (final, addendum, addendum):
        produce_sync(p, s.topics.reports, "report_finalized", key, rec)
    out = [serde.decode("report_findings", m.value()) for m in consume(s, s.topics.findings, 3)]
    assert [r["report_version"] for r in out] == [1, 2, 2]
    concepts = [{f["concept"]: f["negated"] for f in r["findings"]} for r in out]
    assert "pneumothorax" not in concepts[0]
    assert concepts[1] == concepts[2]
    assert concepts[1]["pneumothorax"] is False and concepts[1]["pleural_effusion"] is True  # from the report
    assert set(concepts[0]) < set(concepts[1])  # the report's findings stay in the addendum's version


def test_the_version_history_survives_a_worker_restart(topic_settings: Settings, tmp_path: Path) -> None:
    """The history lives in the table's changelog topic: a new worker process recovers it, and an
    addendum that arrives after the restart still gets its report."""
    s = topic_settings.replace(state_dir=str(tmp_path), kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
                               worker={"web_port": free_port()})
    p = make_producer(s.kafka)
    key = b"default|AD2"
    with worker_process(s, tmp_path / "worker1.log", "--no-sink"):
        produce_sync(p, s.topics.reports, "report_finalized", key,
                     report("AD2", "FINDINGS: Small left pleural effusion.", version=1))
        assert len(consume(s, s.topics.findings, 1)) == 1
    with worker_process(s, tmp_path / "worker2.log", "--no-sink"):
        produce_sync(p, s.topics.reports, "report_finalized", key,
                     report("AD2", "ADDENDUM: small right pneumothorax.", status="addendum", version=2))
        out = [serde.decode("report_findings", m.value()) for m in consume(s, s.topics.findings, 2)]
    assert [r["report_version"] for r in out] == [1, 2]
    assert {f["concept"] for f in out[1]["findings"]} >= {"pleural_effusion", "pneumothorax"}
