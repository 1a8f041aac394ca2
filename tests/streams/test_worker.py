"""The Faust worker as a real process on a real broker: findings out, bad input to the dead-letter topic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from radstream.config import Settings
from streams import serde
from streams.producer import make_producer, produce_sync
from tests.streams.helpers import consume, report


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
    assert set(found) == {b"default|X1", b"default|X2"}
    x1 = found[b"default|X1"]
    assert x1["accession"] == "X1" and x1["event_id"] == "ev-X1-1" and x1["report_version"] == 1
    by_concept = {f["concept"]: f for f in x1["findings"]}
    assert by_concept["pneumothorax"]["negated"] is True
    assert by_concept["pleural_effusion"]["negated"] is False
    assert any(f["concept"] == "nodule" and not f["negated"] for f in found[b"default|X2"]["findings"])

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
