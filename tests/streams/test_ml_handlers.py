"""Site classifiers in the stream's NLP step (streams/handlers.py): a tiny BERT built in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ml_needs import NEEDS_ML
from tests.ml_tiny_model import PE, REPORT, SENTENCES, classifier_config, tiny_model

pytestmark = [
    pytest.mark.ml,
    NEEDS_ML,
]


def test_model_findings_join_the_rule_findings_of_the_stream(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from processors.ml.classifier import load_site_classifiers
    from streams.handlers import analyze_report
    from streams.serde import decode, encode

    model = tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    config = classifier_config(tmp_path, model, labels={"OTHER": None, "PE": PE})
    clfs = load_site_classifiers([str(config)], threads=1)
    report = decode("report_finalized", encode("report_finalized", {
        "event_id": "e1", "accession": "A1", "report_id": "r1", "version": 1, "status": "final",
        "patient_id": "P1", "received_time": datetime.now(UTC), "source_format": "json", "text": REPORT}))
    record = analyze_report(report, classifiers=clfs)
    by_source: dict[str, list[str]] = {}
    for f in decode("report_findings", encode("report_findings", record))["findings"]:
        by_source.setdefault(f["source"], []).append(f["concept"])
    assert by_source["model:tiny"] == ["pulmonary embolism"] * len(SENTENCES)
    assert "pulmonary_embolism" in by_source["rules"] and "pleural_effusion" in by_source["rules"]
