"""Site classifiers in the backfill (streams/ingest/backfill.py), like the worker: a tiny BERT."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ml_needs import NEEDS_ML
from tests.ml_tiny_model import PE, REPORT, SENTENCES, classifier_config, tiny_model
from tests.streams.helpers import research_accession

pytestmark = [
    pytest.mark.ml,
    NEEDS_ML,
]


@pytest.mark.integration
def test_backfill_runs_the_site_classifier_like_the_worker(tmp_path: Path) -> None:
    """``radstream backfill`` (no Kafka, embedded ClickHouse) gives the same model findings as the stream."""
    import json

    from radstream.backfill import run_backfill
    from radstream.config import Settings
    from sinks.clickhouse.client import open_client

    model = tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    cfg = classifier_config(tmp_path, model, labels={"OTHER": None, "PE": PE})
    src = tmp_path / "reports.jsonl"
    src.write_text("\n".join(json.dumps({"accession": f"BF{i}", "patient_id": f"P{i}", "text": REPORT})
                             for i in range(2)) + "\n")
    settings = Settings(state_dir=str(tmp_path)).replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"},
        ml={"classifiers": (str(cfg),), "torch_threads": 1})
    summary = run_backfill(settings, [src], workers=0)
    assert (summary.read, summary.loaded) == (2, 2)
    client = open_client(settings.clickhouse)
    try:
        rows = client.query("SELECT accession, source, count() FROM findings FINAL "
                            "GROUP BY accession, source ORDER BY accession, source").result_rows
    finally:
        client.close()
    by = {(a, s): n for a, s, n in rows}
    for acc in (research_accession(settings, "BF0"), research_accession(settings, "BF1")):
        assert by[(acc, "model:tiny")] == len(SENTENCES)  # one forced finding per sentence
        assert by[(acc, "rules")] >= 2  # the rule findings are still there beside them
