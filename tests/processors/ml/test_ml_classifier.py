"""A site classifier loaded through our config path: a tiny BERT built in the test, no downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ml_needs import NEEDS_ML
from tests.ml_tiny_model import PE, REPORT, SENTENCES, classifier_config, tiny_model

pytestmark = [
    pytest.mark.ml,
    NEEDS_ML,
]

_tiny_model = tiny_model
_config = classifier_config


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
    assert all(f.sentence == 0 for f in found)  # report_findings.sentence is unsigned


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
