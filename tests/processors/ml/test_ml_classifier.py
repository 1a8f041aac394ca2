"""A site classifier loaded through our config path: a tiny BERT built in the test, no downloads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from needs import NEEDS_ML  # noqa: E402
from tiny_model import classifier_config, tiny_model  # noqa: E402

pytestmark = [
    pytest.mark.ml,
    NEEDS_ML,
]

REPORT = (
    "FINDINGS:\n"
    "Filling defect in the right pulmonary artery. No pleural effusion.\n"
    "IMPRESSION:\n"
    "Acute pulmonary embolism.\n"
)
SENTENCES = ["Filling defect in the right pulmonary artery.", "No pleural effusion.",
             "Acute pulmonary embolism."]

_tiny_model = tiny_model
_config = classifier_config


PE = {"concept": "pulmonary embolism", "category": "finding"}


def test_sequence_classifier_emits_model_findings_per_sentence(tmp_path: Path) -> None:
    from processors.ml.classifier import SiteClassifier

    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    path = _config(tmp_path, model, task="sequence", labels={"OTHER": None, "PE": PE})
    clf = SiteClassifier.from_config_file(path, threads=1)
    found = clf.classify(REPORT)
    assert found, "a forced label must fire on every sentence"
    assert {f.source for f in found} == {"model:tiny"}
    assert {f.concept for f in found} == {"pulmonary embolism"}
    assert [f.text for f in found] == SENTENCES
    assert [f.section for f in found] == ["findings", "findings", "impression"]
    for f in found:
        assert REPORT[f.start:f.end] == f.text and 0.99 < f.score <= 1.0
        rec = f.to_record()
        assert rec["source"] == "model:tiny" and "score" not in rec


def test_null_label_and_threshold_suppress_output(tmp_path: Path) -> None:
    from processors.ml.classifier import SiteClassifier

    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="OTHER")
    clf = SiteClassifier.from_config_file(_config(tmp_path, model, labels={"OTHER": None, "PE": PE}), 1)
    assert clf.classify(REPORT) == []
    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    clf = SiteClassifier.from_config_file(
        _config(tmp_path, model, threshold=1.01, labels={"OTHER": None, "PE": PE}), 1)
    assert clf.classify(REPORT) == []


def test_multi_label_report_level_findings_carry_label_map_flags(tmp_path: Path) -> None:
    from processors.ml.classifier import SiteClassifier

    model = _tiny_model(tmp_path, "sequence", ["PE", "NO_EFFUSION"], multi_label=True)
    no_effusion = {"concept": "pleural effusion", "category": "finding", "negated": True}
    labels = {"PE": PE, "NO_EFFUSION": no_effusion}
    clf = SiteClassifier.from_config_file(_config(tmp_path, model, unit="report", threshold=0.0,
                                                  labels=labels), 1)
    assert clf.multi_label
    found = clf.classify(REPORT)
    assert sorted((f.concept, f.negated) for f in found) == [("pleural effusion", True),
                                                              ("pulmonary embolism", False)]
    assert all(f.text == REPORT.strip() for f in found)


def test_token_classifier_spans_come_from_offsets(tmp_path: Path) -> None:
    from processors.ml.classifier import SiteClassifier

    model = _tiny_model(tmp_path, "token", ["O", "B-PE", "I-PE"], force="I-PE")
    clf = SiteClassifier.from_config_file(_config(tmp_path, model, task="token", labels={"PE": PE}), 1)
    found = clf.classify(REPORT)
    # every token is I-PE: one span per sentence, from its first to its last token
    assert [f.text for f in found] == SENTENCES
    assert all(REPORT[f.start:f.end] == f.text for f in found)


def test_token_spans_split_on_b_and_o(tmp_path: Path) -> None:
    from processors.ml.classifier import SiteClassifier

    model = _tiny_model(tmp_path, "token", ["O", "B-PE", "I-PE"], force="B-PE")
    clf = SiteClassifier.from_config_file(_config(tmp_path, model, task="token", labels={"PE": PE}), 1)
    found = clf.classify("Acute pulmonary embolism.")
    assert [f.text for f in found] == ["Acute", "pulmonary", "embolism", "."]


def test_label_map_must_cover_the_model(tmp_path: Path) -> None:
    from processors.ml.classifier import ClassifierConfigError, SiteClassifier, load_config

    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"])
    with pytest.raises(ClassifierConfigError, match="OTHER"):
        SiteClassifier.from_config_file(_config(tmp_path, model, labels={"PE": PE}), 1)
    with pytest.raises(ClassifierConfigError, match="task"):
        load_config(_config(tmp_path, model, task="regression", labels={}))
    with pytest.raises(ClassifierConfigError, match="no Hugging Face model"):
        SiteClassifier.from_config_file(_config(tmp_path, tmp_path / "nowhere", labels={}), 1)


def test_classifiers_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from processors.ml.classifier import load_site_classifiers, model_findings
    from radstream.config import load_settings
    from streams.serde import decode, encode

    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    path = _config(tmp_path, model, labels={"OTHER": None, "PE": PE})
    env = {"RADSTREAM_ML_CLASSIFIERS": str(path), "RADSTREAM_STATE_DIR": str(tmp_path)}
    settings = load_settings(env=env)
    (clf,) = load_site_classifiers(settings.ml.classifiers, threads=settings.ml.torch_threads)
    assert clf.config.model_dir == model.resolve()
    records = model_findings(REPORT, [clf])
    assert [r["text"] for r in records] == SENTENCES
    # the records fit the report_findings contract next to rule findings
    nlp = {"event_id": "e", "accession": "A", "report_version": 1, "status": "final", "patient_id": "P",
           "nlp_version": "t", "processed_time": 0, "findings": records}
    back = decode("report_findings", encode("report_findings", nlp))
    assert {f["source"] for f in back["findings"]} == {"model:tiny"}
    none = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)})
    assert load_site_classifiers(none.ml.classifiers) == []


def test_model_findings_join_the_rule_findings_of_the_stream(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from processors.ml.classifier import load_site_classifiers
    from streams.handlers import analyze_report
    from streams.serde import decode, encode

    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    clfs = load_site_classifiers([str(_config(tmp_path, model, labels={"OTHER": None, "PE": PE}))], threads=1)
    report = decode("report_finalized", encode("report_finalized", {
        "event_id": "e1", "accession": "A1", "report_id": "r1", "version": 1, "status": "final",
        "patient_id": "P1", "received_time": datetime.now(UTC), "source_format": "json", "text": REPORT}))
    record = analyze_report(report, classifiers=clfs)
    by_source: dict[str, list[str]] = {}
    for f in decode("report_findings", encode("report_findings", record))["findings"]:
        by_source.setdefault(f["source"], []).append(f["concept"])
    assert by_source["model:tiny"] == ["pulmonary embolism"] * len(SENTENCES)
    assert "pulmonary_embolism" in by_source["rules"] and "pleural_effusion" in by_source["rules"]


def test_toml_ml_section_sets_classifiers_and_torch_threads(tmp_path: Path) -> None:
    """``[ml]`` in the TOML file (RADSTREAM_CONFIG / --config): the classifier loads with the threads
    asked for, read back from torch (neither our default 1 nor torch's own default)."""
    import torch

    from processors.ml.classifier import load_site_classifiers
    from radstream.config import load_settings

    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    path = _config(tmp_path, model, labels={"OTHER": None, "PE": PE})
    toml = tmp_path / "radstream.toml"
    wanted = torch.get_num_threads() + 1
    toml.write_text(f'[ml]\nclassifiers = ["{path}"]\ntorch_threads = {wanted}\n')
    before = torch.get_num_threads()
    try:
        settings = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)}, config_file=toml)
        assert settings.ml.classifiers == (str(path),) and settings.ml.torch_threads == wanted
        (clf,) = load_site_classifiers(settings.ml.classifiers, threads=settings.ml.torch_threads)
        assert clf.torch_threads == wanted
        assert [f.text for f in clf.classify(REPORT)] == SENTENCES
    finally:
        torch.set_num_threads(before)


@pytest.mark.integration
def test_backfill_runs_the_site_classifier_like_the_worker(tmp_path: Path) -> None:
    """``radstream backfill`` (no Kafka, embedded ClickHouse) gives the same model findings as the stream."""
    import json

    from radstream.backfill import run_backfill
    from radstream.config import Settings
    from sinks.clickhouse.client import open_client

    model = _tiny_model(tmp_path, "sequence", ["OTHER", "PE"], force="PE")
    cfg = _config(tmp_path, model, labels={"OTHER": None, "PE": PE})
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
    for acc in ("BF0", "BF1"):
        assert by[(acc, "model:tiny")] == len(SENTENCES)  # one forced finding per sentence
        assert by[(acc, "rules")] >= 2  # the rule findings are still there beside them
