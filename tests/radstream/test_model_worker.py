"""A ``radstream model train`` model as a site classifier of a real ``radstream worker`` process (real
Kafka, the worker's own chDB store), configured only through the normal settings (ml.classifiers =
the classifier.json that training writes): its labels land in ``findings_latest`` next to the rules."""

from __future__ import annotations

import csv
import dataclasses
import io
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from radstream.config import Settings
from tests.ml_labelled import TRAIN_PREFIXES, rows, write_csv
from tests.ml_needs import NEEDS_SKLEARN
from tests.ml_records import report
from tests.streams.helpers import clinical_of

pytestmark = [pytest.mark.integration, NEEDS_SKLEARN]

REPORTS = [
    report("M1", "CLINICAL HISTORY:\nThree year old with cough and fever.\n\n"
                 "IMPRESSION:\nRight lower lobe pneumonia.\n", modality="XR"),
    report("M2", "CLINICAL HISTORY:\nFever since yesterday.\n\nIMPRESSION:\nNo pneumonia.\n", modality="XR"),
]


def test_trained_model_labels_reach_clickhouse_next_to_rules(kafka_settings: Settings,
                                                             tmp_path: Path) -> None:
    from radstream.cli import main
    from radstream.warehouse import ask_worker
    from streams.producer import make_producer, produce_sync
    from streams.topics import create_topics
    from tests.streams.helpers import free_port, worker_process

    train = write_csv(tmp_path / "train.csv", rows(TRAIN_PREFIXES))
    res = CliRunner().invoke(main, ["model", "train", "--labels", str(train), "--text-columns",
                                    "clinical_history,impression", "--label-column", "codes",
                                    "--out", str(tmp_path / "site-codes")])
    assert res.exit_code == 0, res.output
    config = tmp_path / "site-codes" / "classifier.json"

    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = {f.name: prefix + getattr(kafka_settings.topics, f.name)
              for f in dataclasses.fields(kafka_settings.topics)}
    settings = kafka_settings.replace(
        state_dir=str(tmp_path), topics=topics, kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port(), "nlp_processes": 1}, ml={"classifiers": (str(config),)})
    create_topics(settings.kafka, settings.topics)
    log = tmp_path / "worker.log"
    sql = ("SELECT accession, source, concept, negated FROM findings_latest "
           "ORDER BY accession, source, concept")
    got: list[list[str]] = []
    back = clinical_of(settings, ["M1", "M2"])
    with worker_process(settings, log) as proc:
        producer = make_producer(settings.kafka)
        for rec in REPORTS:
            produce_sync(producer, settings.topics.reports, "report_finalized",
                         f"{rec['site']}|{rec['accession']}", rec)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                got = list(csv.reader(io.StringIO(ask_worker(settings, sql, "csv", timeout=60))))[1:]
            except Exception:  # noqa: BLE001 - still starting (no page, no table yet)
                got = []
            got = [[back.get(r[0], r[0]), *r[1:]] for r in got]
            if {r[0] for r in got} == {"M1", "M2"}:
                break
            time.sleep(0.5)
    logtext = log.read_text(errors="replace")
    assert {r[0] for r in got} == {"M1", "M2"}, logtext[-4000:]
    model = {(acc, concept) for acc, source, concept, _ in got if source == "model:site-codes"}
    assert model == {("M1", "486"), ("M1", "780.6"), ("M1", "786.2"), ("M2", "780.6")}, got
    rules = {(acc, concept, neg) for acc, source, concept, neg in got if source == "rules"}
    assert ("M1", "pneumonia", "false") in rules and ("M2", "pneumonia", "true") in rules
    assert "site classifier site-codes (linear, 5 labels) loaded from" in logtext
