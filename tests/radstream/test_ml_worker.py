"""The [ml] features inside a real ``radstream worker`` process (real Kafka, the worker's own chDB store).

One worker for the module, configured only through the normal settings (environment variables
``RADSTREAM_ML_EMBED``, ``RADSTREAM_ML_CLASSIFIERS``, ``RADSTREAM_ML_TORCH_THREADS``): it embeds each
report (ml.embed) and runs a tiny randomly initialised site classifier next to the rules.

- ``similar`` while the worker owns the store: the query is embedded in the test process and the
  nearest-neighbour SQL runs through the worker's read-only /sql page (opening the store directly
  fails while the worker holds it, which is why).
- the site classifier's findings reach ClickHouse with ``source = 'model:tiny'`` next to the rule
  findings, and the model ran with the configured torch threads (the load line in the worker's log,
  written by the NLP process that runs the model).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radstream.config import Settings
from tests.ml_needs import NEEDS_MINILM, NEEDS_ML
from tests.ml_records import report
from tests.ml_tiny_model import classifier_config, tiny_model
from tests.streams.helpers import clinical_of

pytestmark = [
    pytest.mark.ml,
    pytest.mark.integration,
    NEEDS_ML,
    NEEDS_MINILM,
]

REPORTS = [
    report("W1", "FINDINGS:\nFilling defects in the right lower lobe pulmonary arteries.\n"
                 "IMPRESSION:\nAcute right lower lobe pulmonary embolism."),
    report("W2", "FINDINGS:\nThe pulmonary arteries are well opacified.\n"
                 "IMPRESSION:\nNo pulmonary embolism."),
    report("W3", "IMPRESSION:\nNondisplaced fracture of the left distal radius.", modality="XR",
           body_part="WRIST"),
    report("W4", "FINDINGS:\nThe lungs are clear.\nIMPRESSION:\nNo acute cardiopulmonary process."),
]
ACCESSIONS = [r["accession"] for r in REPORTS]
CRITICAL = {"concept": "critical finding", "category": "finding"}


@dataclasses.dataclass
class RunningWorker:
    settings: Settings
    proc: Any
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rows(self, sql: str) -> list[list[str]]:
        from radstream.warehouse import ask_worker

        return list(csv.reader(io.StringIO(ask_worker(self.settings, sql, "csv", timeout=60))))[1:]

    def wait_rows(self, sql: str, n: int, timeout: float = 240) -> list[list[str]]:
        """Rows through the worker's /sql page once there are ``n``; [] if the worker died or timed out."""
        rows: list[list[str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                rows = self.rows(sql)
            except Exception:  # noqa: BLE001 - still starting (no page, no table yet)
                rows = []
            if len(rows) >= n:
                break
            time.sleep(0.5)
        return rows


@pytest.fixture(scope="module")
def worker(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorker]:
    import torch

    from streams.producer import make_producer, produce_sync
    from streams.topics import create_topics
    from tests.streams.helpers import free_port, worker_process

    tmp = tmp_path_factory.mktemp("mlworker")
    model = tiny_model(tmp, "sequence", ["OTHER", "CRITICAL"], force="CRITICAL")
    config = classifier_config(tmp, model, labels={"OTHER": None, "CRITICAL": CRITICAL})
    prefix = f"t{uuid.uuid4().hex[:10]}."
    topics = {f.name: prefix + getattr(kafka_settings.topics, f.name)
              for f in dataclasses.fields(kafka_settings.topics)}
    # threads: neither our default (1) nor torch's own default, so only the setting can explain it
    threads = max(torch.get_num_threads(), 1) + 1
    settings = kafka_settings.replace(
        state_dir=str(tmp), topics=topics, kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port(), "nlp_processes": 1},
        ml={"embed": True, "classifiers": (str(config),), "torch_threads": threads})
    create_topics(settings.kafka, settings.topics)
    log = tmp / "worker.log"
    with worker_process(settings, log) as proc:
        producer = make_producer(settings.kafka)
        for rec in REPORTS:
            produce_sync(producer, settings.topics.reports, "report_finalized",
                         f"{rec['site']}|{rec['accession']}", rec)
        running = RunningWorker(settings, proc, log)
        emb = running.wait_rows("SELECT DISTINCT accession FROM report_embeddings", len(REPORTS))
        nlp = running.wait_rows("SELECT DISTINCT accession FROM findings_latest", len(REPORTS))
        if len(emb) < len(REPORTS) or len(nlp) < len(REPORTS):
            pytest.fail(f"worker did not embed/analyse the reports (embeddings {emb}, findings {nlp}):\n"
                        + running.log_text()[-4000:])
        yield running


def test_site_classifier_findings_reach_clickhouse_next_to_rules(worker: RunningWorker) -> None:
    from processors.ml.units import report_sentences

    rows = worker.rows("SELECT accession, source, concept, text, negated FROM findings_latest "
                       "ORDER BY accession, source, finding_idx")
    by: dict[tuple[str, str], list[list[str]]] = {}
    back = clinical_of(worker.settings, ACCESSIONS)
    for acc, source, *rest in rows:
        by.setdefault((back[acc], source), []).append(rest)
    assert {s for _, s in by} == {"rules", "model:tiny"}, rows
    for rec in REPORTS:
        text = rec["text"]
        sentences = [text[s.start:s.end] for s in report_sentences(text)]
        model = by[(rec["accession"], "model:tiny")]
        # the forced label fires on every sentence; the label map names the concept
        assert [r[1] for r in model] == sentences
        assert {(r[0], r[2]) for r in model} == {("critical finding", "false")}
    rules = {acc: {(r[0], r[2]) for r in v} for (acc, s), v in by.items() if s == "rules"}
    assert ("pulmonary_embolism", "false") in rules["W1"]
    assert ("pulmonary_embolism", "true") in rules["W2"]


def test_site_classifier_runs_with_the_configured_torch_threads(worker: RunningWorker) -> None:
    threads = worker.settings.ml.torch_threads
    lines = re.findall(r"site classifier tiny \(sequence, 2 labels\) loaded from (\S+) in pid (\d+), "
                       r"torch threads (\d+)", worker.log_text())
    assert lines, worker.log_text()[-3000:]
    for model_dir, pid, got in lines:
        assert int(got) == threads
        assert model_dir.endswith("model")
        assert int(pid) != worker.proc.pid  # loaded by the worker's NLP process, where the model runs


def test_similar_goes_through_the_worker_that_owns_the_store(worker: RunningWorker) -> None:
    from radstream.cli.similar import similar_reports
    from radstream.warehouse import WarehouseError

    here = worker.settings.replace(ml={"torch_threads": 1})  # the query is embedded in this process
    hits = similar_reports(here, "pulmonary embolism", k=10)
    back = clinical_of(worker.settings, ACCESSIONS)
    ranked = [back[h.accession] for h in hits]
    assert sorted(ranked) == sorted(ACCESSIONS)
    assert ranked.index("W2") < ranked.index("W3")          # "No PE" is near by similarity alone
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    w1 = hits[ranked.index("W1")]
    assert w1.report_version == 1 and w1.modality == "CT" and w1.unit in ("impression", "findings:0")
    # the remedy, on the worker's real NLP findings (rule concept ids match words)
    assert [back[h.accession] for h in similar_reports(here, "pulmonary embolism",
                                                       require_findings=["pulmonary embolism"])] == ["W1"]
    assert [back[h.accession] for h in similar_reports(here, "pulmonary embolism",
                                                       where="modality = 'XR'")] == ["W3"]
    # read-only on the worker's side: the condition holds only under readonly=1
    assert len(similar_reports(here, "pulmonary embolism", where="getSetting('readonly') = 1")) == 4
    # the reason for the detour: the worker holds the store, so a direct search cannot open it
    with pytest.raises(WarehouseError, match="cannot open"):
        similar_reports(here, "pulmonary embolism", direct=True)


def test_similar_cli_while_the_worker_runs(worker: RunningWorker) -> None:
    from click.testing import CliRunner

    from radstream.cli import main
    from radstream.config import settings_env

    env = {**settings_env(worker.settings), "RADSTREAM_ML_TORCH_THREADS": "1"}
    res = CliRunner().invoke(main, ["similar", "clot in the pulmonary arteries", "--k", "3",
                                    "--require-finding", "pulmonary_embolism", "--json"], env=env)
    assert res.exit_code == 0, res.output
    back = clinical_of(worker.settings, ACCESSIONS)
    assert [back[json.loads(line)["accession"]] for line in res.stdout.splitlines()] == ["W1"]
    bad = CliRunner().invoke(main, ["similar", "x", "--where", "no_such_column = 1"], env=env)
    # refused by the check; the local user is the admin, who also gets the engine's message (an analyst
    # gets the check's one text only: tests/radstream/test_cli_sql_errors.py)
    assert bad.exit_code != 0 and "refused: the query could not be checked" in bad.output
    assert "no_such_column" in bad.output
    assert len(bad.output.strip().splitlines()) == 1   # one line, from the worker's answer
