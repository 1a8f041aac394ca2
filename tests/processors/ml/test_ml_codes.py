"""The ICD-9-CM coding-rule features (processors/ml/icd9cm.json) and the training grid of the linear model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from processors.ml.features import CODEBOOK, FeatureExtractor, is_code_feature, load_codebook
from tests.ml_labelled import TRAIN_PREFIXES, rows
from tests.ml_needs import NEEDS_SKLEARN

COLS = ["clinical_history", "impression"]


def _report(history: str, impression: str) -> str:
    return f"CLINICAL HISTORY:\n{history}\n\nIMPRESSION:\n{impression}\n"


def test_codebook_is_well_formed_and_every_phrase_maps_to_its_code() -> None:
    doc = json.loads(CODEBOOK.read_text())["codes"]
    book = load_codebook()
    phrases = [(p, code) for code, c in doc.items() for p in c["phrases"]]
    assert len({p for p, _ in phrases}) == len(phrases), "a phrase is listed under two codes"
    for code, c in doc.items():
        assert c["kind"] in ("symptom", "diagnosis", "congenital") and c["phrases"], code
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


def _data() -> tuple[list[dict[str, float]], list[list[str]]]:
    from processors.ml.features import compose_report

    fx = FeatureExtractor()
    data = rows(TRAIN_PREFIXES)
    return ([fx.features(compose_report(r, COLS)) for r in data],
            [r["codes"].split(";") if r["codes"] else [] for r in data])


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
