"""The cohort agent on a real broker: a findings record delivered again (a worker that died before its
offset was committed, its cohort state not yet written) gives byte-identical retrieval requests, so the
warehouse's (request_id, action, requested_time) key collapses them into one row."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from radstream.config import Settings
from streams import serde
from streams.agents import create_changelogs
from streams.agents.cohort import CohortHandler
from streams.agents.table import ChangelogTable
from streams.cohort import WatchRegistry, publish_watch, watch_record
from streams.handlers import analyze_batch
from streams.loop import Acks, Record, _Offsets
from streams.producer import make_producer, produce_sync
from tests.streams.helpers import consume, report

RULE = {"name": "big-nodules", "modality": "CT", "finding": {"concept": ["nodule"], "min_size_mm": 8}}


def test_a_redelivered_findings_record_gives_byte_identical_requests(topic_settings: Settings,
                                                                     tmp_path: Path) -> None:
    s = topic_settings.replace(kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"})
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE))
    publish_watch(s.kafka, s.topics, watch_record(s.research.allowed_destinations, "IRB-7", "RESEARCH",
                                                  "alice", str(rule), watch_id="w-irb7"))
    # a findings record on its topic, as the NLP agent writes it, read back with its broker timestamp
    text = "FINDINGS: 12 mm solid nodule in the right upper lobe."
    value = serde.encode("report_finalized", report("C1", text))
    [out] = analyze_batch([value])
    assert out.value is not None
    producer = make_producer(s.kafka)
    produce_sync(producer, s.topics.findings, "report_findings", b"default|C1",
                 serde.decode("report_findings", out.value))
    [msg] = consume(s, s.topics.findings, 1)
    rec = Record.of(msg)
    assert rec.timestamp_ms

    registry = WatchRegistry(s.kafka, s.topics)
    registry.start()
    try:
        assert registry.loaded.wait(30)
        changelog = f"t{uuid.uuid4().hex[:8]}-cohort-state-changelog"
        create_changelogs(s.kafka, {changelog: s.kafka.partitions})  # one per findings partition
        for _delivery in range(2):  # the second handler has no state of the first: the record again
            state = ChangelogTable(s.kafka, changelog, producer)
            handler = CohortHandler(s.topics, registry, producer, state, s.research.allowed_destinations)
            handler.add([rec], Acks(_Offsets()))
            handler.drain([], 30)
    finally:
        registry.stop()

    msgs = consume(s, s.topics.retrieval_requests, 2)
    assert len(msgs) == 2
    assert msgs[0].value() == msgs[1].value()
    sent = serde.decode("retrieval_requested", msgs[0].value())
    assert sent["action"] == "request" and sent["requested_time"].timestamp() * 1000 == rec.timestamp_ms
