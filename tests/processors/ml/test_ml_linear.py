"""The site-trained linear classifier: features, scores, the numpy model and its site-classifier wrapper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processors.ml.features import FeatureExtractor, column_header, compose_report
from processors.ml.metrics import evaluate
from tests.ml_labelled import TRAIN_PREFIXES, rows
from tests.ml_needs import NEEDS_SKLEARN

COLS = ["clinical_history", "impression"]


def test_features_tell_negated_uncertain_and_asserted_apart() -> None:
    fx = FeatureExtractor()
    pos = fx.features("IMPRESSION:\nRight lower lobe pneumonia.\n")
    neg = fx.features("IMPRESSION:\nNo pneumonia.\n")
    unc = fx.features("IMPRESSION:\nPossible early pneumonia.\n")
    assert "pos|pneumonia" in pos and "pos|@pneumonia" in pos
    assert "neg|pneumonia" in neg and "pos|pneumonia" not in neg
    assert "unc|pneumonia" in unc and "pos|pneumonia" not in unc
    # a historical mention also counts as asserted (a history's "history of fever" is today's complaint)
    hist = fx.features("CLINICAL HISTORY:\nHistory of fever.\n")
    assert hist.get("hist|fever") == 1.0 and hist.get("pos|fever") == 1.0


def test_compose_report_puts_each_column_under_its_header() -> None:
    assert column_header("clinical_history") == "CLINICAL HISTORY"
    text = compose_report({"clinical_history": " Cough. ", "impression": "Clear lungs.", "x": "no"}, COLS)
    assert text == "CLINICAL HISTORY:\nCough.\n\nIMPRESSION:\nClear lungs.\n"
    assert compose_report({"clinical_history": "", "impression": "Clear."}, COLS) == "IMPRESSION:\nClear.\n"
    sections = [s.name for s in FeatureExtractor().engine.analyze(text).sections]
    assert sections == ["history", "impression"]


def test_evaluate_micro_macro() -> None:
    gold = [["a"], ["a", "b"], ["c"], []]
    pred = [["a"], ["b"], ["a"], ["d"]]
    s = evaluate(gold, pred)
    assert s["labels"]["a"] == {"tp": 1, "fp": 1, "fn": 1, "support": 2, "precision": 0.5, "recall": 0.5,
                                "f1": 0.5}
    assert s["labels"]["d"]["support"] == 0 and s["labels"]["d"]["fp"] == 1
    assert (s["micro"]["tp"], s["micro"]["fp"], s["micro"]["fn"]) == (2, 2, 2)
    assert s["micro"]["f1"] == 0.5
    # macro over the gold labels a, b, c (d was only predicted): F1 0.5, 1.0, 0.0
    assert s["macro"]["f1"] == 0.5
    with pytest.raises(ValueError):
        evaluate([["a"]], [])


def _data() -> tuple[list[dict[str, float]], list[list[str]]]:
    fx = FeatureExtractor()
    data = rows(TRAIN_PREFIXES)
    return ([fx.features(compose_report(r, COLS)) for r in data],
            [r["codes"].split(";") if r["codes"] else [] for r in data])


@NEEDS_SKLEARN
def test_numpy_model_scores_as_sklearn_does_and_survives_save_load(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from processors.ml.linear import LinearModel, TrainOptions, _matrix, train

    feats, gold = _data()
    opts = TrainOptions(c=5.0, folds=3)
    model = train(feats, gold, opts, {"text_columns": COLS})
    x = _matrix(feats, model.vocab, model.idf)
    j = model.labels.index("486")
    y = np.asarray(["486" in g for g in gold], dtype=np.int64)
    ref = LogisticRegression(C=5.0, solver="liblinear", random_state=0, max_iter=1000).fit(x, y)
    ours = np.asarray([model.probabilities(f)[j] for f in feats])
    assert np.allclose(ours, ref.predict_proba(x)[:, 1], atol=1e-9)

    model.save(tmp_path)
    back = LinearModel.load(tmp_path)
    assert back.labels == model.labels and back.meta["text_columns"] == COLS
    assert np.allclose([back.probabilities(f)[j] for f in feats], ours, atol=1e-5)  # float32 weights
    assert [back.predict(f) and [lab for lab, _ in back.predict(f)] for f in feats] == \
        [[lab for lab, _ in model.predict(f)] for f in feats]


@NEEDS_SKLEARN
def test_every_training_report_had_a_label_so_every_prediction_has_one() -> None:
    from processors.ml.linear import train

    feats, gold = _data()
    model = train(feats, gold)
    assert model.min_labels == 1
    empty = FeatureExtractor().features("IMPRESSION:\nUnremarkable.\n")
    assert len(model.predict(empty)) == 1
    # with unlabelled training reports, "no label" is an answer
    model = train(feats, [g if i % 5 else [] for i, g in enumerate(gold)])
    assert model.min_labels == 0


@NEEDS_SKLEARN
def test_linear_site_classifier_needs_no_torch_and_maps_labels(tmp_path: Path) -> None:
    from processors.ml.classifier import ClassifierConfigError, LinearSiteClassifier, load_site_classifiers
    from processors.ml.linear import train

    feats, gold = _data()
    train(feats, gold, meta={"text_columns": COLS}).save(tmp_path / "m")
    labels = {lab: None for lab in ["599.0", "780.6", "786.07", "786.2"]}
    config = tmp_path / "site.json"
    pneumonia = {"concept": "pneumonia", "category": "finding"}
    config.write_text(json.dumps({"name": "codes", "model_dir": "m", "task": "linear",
                                  "labels": {**labels, "486": pneumonia}}))
    [clf] = load_site_classifiers([str(config)])
    assert isinstance(clf, LinearSiteClassifier)
    text = "CLINICAL HISTORY:\nInfant with cough.\n\nIMPRESSION:\nRight lower lobe pneumonia.\n"
    [finding] = clf.classify(text)
    assert (finding.concept, finding.source, finding.sentence) == ("pneumonia", "model:codes", 0)
    assert finding.text == text.strip() and 0.5 <= finding.score <= 1.0
    assert finding.to_record()["source"] == "model:codes"
    assert clf.classify("IMPRESSION:\nNo pneumonia.\n") == []  # the only mapped label is not predicted
    assert clf.classify("  \n") == []
    config.write_text(json.dumps({"name": "codes", "model_dir": "m", "task": "linear", "labels": labels}))
    with pytest.raises(ClassifierConfigError, match="missing from the label map"):
        load_site_classifiers([str(config)])
    # applying the model imports neither torch nor transformers nor scikit-learn
    config.write_text(json.dumps({"name": "codes", "model_dir": "m", "task": "linear",
                                  "labels": {**labels, "486": None}}))
    code = ("import sys; from processors.ml.classifier import load_site_classifiers as l; "
            f"[c] = l([{str(config)!r}]); c.classify('IMPRESSION: Pneumonia.'); "
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3], env={**os.environ, "PYTHONPATH": "."})
    assert out.stdout.strip() == "[]", out.stderr
