"""The site-trained linear classifier: features (incl. the ICD-9-CM coding-rule features of
processors/ml/icd9cm.json), scores, the training grid, the numpy model and its site-classifier wrapper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from processors.ml.features import (
    CODEBOOK,
    FeatureExtractor,
    column_header,
    compose_report,
    is_code_feature,
    load_codebook,
)
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


def _report(history: str, impression: str) -> str:
    return f"CLINICAL HISTORY:\n{history}\n\nIMPRESSION:\n{impression}\n"


def test_codebook_is_well_formed_and_every_phrase_maps_to_its_code() -> None:
    doc = json.loads(CODEBOOK.read_text())["codes"]
    book = load_codebook()
    phrases = [(p, code) for code, c in doc.items() for p in c["phrases"]]
    assert len({p for p, _ in phrases}) == len(phrases), "a phrase is listed under two codes"
    for code, c in doc.items():
        assert c["kind"] in ("symptom", "diagnosis", "congenital", "finding", "procedure"), code
        assert c["phrases"], code
    for phrase, code in phrases:
        m = book.regex.search(f"x {phrase} y")
        assert m is not None and book.code_of[" ".join(m.group().split())] == code, phrase
    # whole words only: "afebrile" is not "febrile", "coughing" is a phrase of its own
    assert book.regex.search("afebrile child") is None


def test_code_features_carry_status_and_where_the_mention_is() -> None:
    fx = FeatureExtractor()
    f = fx.features(_report("Two year old with cough.", "Right lower lobe pneumonia."))
    assert f["pos|#786.2"] == 1.0 and f["pos|#786.2|hx"] == 1.0
    assert f["pos|#486"] == 1.0 and f["pos|#486|imp"] == 1.0
    # a definite diagnosis in the impression: the complaint is explained, the diagnosis is coded
    assert f["rule|definite|#486"] == 1.0 and f["rule|symptom_explained|#786.2"] == 1.0
    assert f["rule|definite_diagnoses"] == 1.0
    g = fx.features(_report("Infant with cough.", "No pneumonia."))
    assert g["neg|#486|imp"] == 1.0 and "pos|#486" not in g
    assert g["rule|symptom_alone|#786.2"] == 1.0 and "rule|definite|#486" not in g
    h = fx.features(_report("Fever. Evaluate for pneumonia.", "Clear lungs."))
    assert h["unc|#486|hx"] == 1.0 and h["rule|symptom_alone|#780.6"] == 1.0


def test_two_diagnoses_offered_as_alternatives_are_neither_established() -> None:
    fx = FeatureExtractor()
    for impression in ("Left basilar opacity, atelectasis or pneumonia.",
                       "Left basilar atelectasis versus pneumonia.",
                       "Left basilar atelectasis and/or early pneumonia."):
        f = fx.features(_report("Cough.", impression))
        assert "pos|#486" not in f and "pos|#518.0" not in f, impression
        assert "rule|definite|#486" not in f and "rule|symptom_alone|#786.2" in f, impression
    # "vs" is a ConText cue already (probable: uncertain); a plain "or" is only caught here
    f = fx.features(_report("Cough.", "Left basilar opacity, atelectasis or pneumonia."))
    assert f["alt|#486"] == 1.0 and f["alt|#518.0"] == 1.0
    assert FeatureExtractor(alternatives=False).features(
        _report("Cough.", "Left basilar opacity, atelectasis or pneumonia."))["pos|#486"] == 1.0
    # a symptom and a diagnosis are no differential
    f = fx.features(_report("Cough or fever.", "Right lower lobe pneumonia."))
    assert f["pos|#786.2"] == 1.0 and f["pos|#780.6"] == 1.0


def test_switches_and_feature_groups() -> None:
    text = _report("Cough.", "Right lower lobe pneumonia.")
    assert not any(is_code_feature(k) for k in FeatureExtractor(codes=False).features(text))
    assert not any(k.endswith(("|hx", "|imp")) for k in FeatureExtractor(code_sections=False).features(text))
    assert not any(k.startswith("rule|") for k in FeatureExtractor(coding_rules=False).features(text))
    assert is_code_feature("pos|#486|imp") and is_code_feature("rule|definite_diagnoses")
    assert not is_code_feature("pos|pneumonia") and not is_code_feature("pos|@pneumonia")


@NEEDS_SKLEARN
def test_train_chooses_c_and_code_weight_on_the_training_reports_only() -> None:
    from processors.ml.linear import TrainOptions, train

    feats, gold = _data()
    model = train(feats, gold, TrainOptions(folds=3, c_grid=(1.0, 30.0), code_weight_grid=(1.0, 3.0)))
    info = model.meta["train"]
    assert set(info["oof_micro_f1"]) == {"C=1,code_weight=1", "C=1,code_weight=3", "C=30,code_weight=1",
                                         "C=30,code_weight=3"}
    best = max(info["oof_micro_f1"].values())
    assert info["oof_micro_f1"][f"C={info['c']:g},code_weight={info['code_weight']:g}"] == best
    # the code weight is folded into the idf of the code features only (applying needs nothing else)
    plain = train(feats, gold, TrainOptions(folds=3, c=1.0, code_weight=1.0))
    heavy = train(feats, gold, TrainOptions(folds=3, c=1.0, code_weight=3.0))
    assert list(plain.meta["train"]["oof_micro_f1"]) == ["C=1,code_weight=1"]
    for name, i in plain.vocab.items():
        ratio = heavy.idf[heavy.vocab[name]] / plain.idf[i]
        assert ratio == pytest.approx(3.0 if is_code_feature(name) else 1.0), name
    # deterministic: the same data and options give the same choice and weights
    again = train(feats, gold, TrainOptions(folds=3, c_grid=(1.0, 30.0), code_weight_grid=(1.0, 3.0)))
    assert (again.meta["train"]["c"], again.meta["train"]["code_weight"]) == (info["c"], info["code_weight"])
    assert np.array_equal(again.coef, model.coef)
