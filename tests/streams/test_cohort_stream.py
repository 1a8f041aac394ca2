"""Standing cohorts on the real broker: a watch; matching reports -> requests; a correction -> cancel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processors.ingest.research import open_study_ref
from radstream.config import Settings
from radstream.text_deid import research_key
from streams import serde
from streams.cohort import DestinationNotAllowed, publish_watch, watch_record
from streams.producer import make_producer, produce_sync
from tests.streams.helpers import consume, report, research_accession

RULE = {"name": "big-nodules", "modality": "CT", "finding": {"concept": ["nodule"], "min_size_mm": 8}}


def test_watch_emits_requests_and_cancels(worker: Settings, tmp_path: Path) -> None:
    s = worker
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE))
    record = watch_record(s.research.allowed_destinations, "IRB-7", "RESEARCH", "alice", str(rule),
                          watch_id="w-irb7")
    publish_watch(s.kafka, s.topics, record)
    p = make_producer(s.kafka)
    produce_sync(p, s.topics.reports, "report_finalized", b"default|C1",
                 report("C1", "FINDINGS: 12 mm solid nodule in the right upper lobe."))
    produce_sync(p, s.topics.reports, "report_finalized", b"default|C2",
                 report("C2", "FINDINGS: No pulmonary nodule. No effusion."))
    produce_sync(p, s.topics.reports, "report_finalized", b"default|C3",
                 report("C3", "FINDINGS: 4 mm nodule in the left lower lobe."))
    # the correction of C1 measures the nodule at 5 mm: it no longer matches
    produce_sync(p, s.topics.reports, "report_finalized", b"default|C1",
                 report("C1", "FINDINGS: 5 mm solid nodule in the right upper lobe.", status="corrected",
                        version=2))
    msgs = consume(s, s.topics.retrieval_requests, 2)
    got = [serde.decode("retrieval_requested", m.value()) for m in msgs]
    seen = [(r["action"], r["accession"], r["project_id"], r["destination_ae"], r["source"]) for r in got]
    c1 = research_accession(s, "C1")  # standing cohorts see the analysts' values and pass them on
    assert seen == [("request", c1, "IRB-7", "RESEARCH", "watch"),
                    ("cancel", c1, "IRB-7", "RESEARCH", "watch")]
    assert open_study_ref(research_key(s), got[0]["study_ref"]).accession == "C1"
    assert got[0]["request_id"] == got[1]["request_id"]
    assert got[0]["requester"] == "alice"
    # nothing else was requested (C2 negated, C3 too small)
    assert len(consume(s, s.topics.retrieval_requests, 3, timeout=5)) == 2


def test_destination_must_be_on_the_allow_list(kafka_settings: Settings, tmp_path: Path) -> None:
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE))
    with pytest.raises(DestinationNotAllowed):
        watch_record(kafka_settings.research.allowed_destinations, "IRB-7", "ELSEWHERE", "alice", str(rule))


def test_registry_follows_the_compacted_topic(topic_settings: Settings, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from radstream.cli import main
    from radstream.config import settings_env
    from tests.sinks.dicom.helpers import register_projects

    register_projects(topic_settings)  # a watch needs a registered project (IRB-7: de-identified)
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE))
    env = settings_env(topic_settings)
    runner = CliRunner()
    for wid in ("w-a", "w-b"):
        res = runner.invoke(main, ["cohort", "watch", "--project", "IRB-7", "--destination", "RESEARCH",
                                   "--rule", str(rule), "--id", wid, "--requester", "bob"], env=env)
        assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["cohort", "unwatch", "w-a"], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["cohort", "watches", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert [(w["watch_id"], w["requester"], w["rule"]) for w in json.loads(res.output)] == [
        ("w-b", "bob", "big-nodules")]
    bad = runner.invoke(main, ["cohort", "watch", "--project", "IRB-7", "--destination", "NOPE",
                               "--rule", str(rule)], env=env)
    assert bad.exit_code != 0 and "allow-list" in bad.output
