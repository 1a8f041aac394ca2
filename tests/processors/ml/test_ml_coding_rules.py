"""Classes of coding error of the site classifier's ICD-9-CM features (processors/ml/features.py and
icd9cm.json), each with its own invented sentences: a condition a clinical history follows up, radiological
findings in a differential, a follow-up after surgery, and index terms a pediatric radiologist writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from processors.ml.features import FEATURES_VERSION, FeatureExtractor, load_codebook
from processors.ml.linear import MODEL_FILE, LinearModel, LinearModelError


def _report(history: str, impression: str) -> str:
    return f"CLINICAL HISTORY:\n{history}\n\nIMPRESSION:\n{impression}\n"


def test_a_condition_the_history_follows_up_is_present_not_hypothetical() -> None:
    fx = FeatureExtractor()
    for history in ("Follow-up of bilateral vesicoureteral reflux.", "Followup grade 3 reflux.",
                    "Follow up on left vesicoureteral reflux in a 4 year old."):
        f = fx.features(_report(history, "Both kidneys are normal in size."))
        assert f["fu|#593.70"] == 1.0 and f["pos|#593.70|hx"] == 1.0, history
        assert "unc|#593.70" not in f, history
    # the words and the engine's concepts too: "followup reflux" is the reflux itself
    assert "pos|reflux" in fx.features(_report("Followup reflux.", "Normal kidneys."))
    f = fx.features(_report("Follow-up of a left pleural effusion.", "Clear lungs."))
    assert f["fu|@pleural_effusion"] == 1.0 and f["pos|@pleural_effusion"] == 1.0
    # a question the study answers stays uncertain
    for history in ("Rule out pneumonia.", "Evaluate for pneumonia.", "Fever, question pneumonia."):
        f = fx.features(_report(history, "Clear lungs."))
        assert "unc|#486" in f and "pos|#486" not in f and "fu|#486" not in f, history
    # switched off, the engine's reading (hypothetical) is kept
    f = FeatureExtractor(follow_up=False).features(_report("Followup grade 3 reflux.", "Normal kidneys."))
    assert "unc|#593.70" in f and "pos|#593.70" not in f


def test_a_radiological_finding_in_a_differential_leaves_the_diagnosis_unestablished() -> None:
    fx = FeatureExtractor()
    for impression in ("Patchy right base infiltrate and/or atelectasis.",
                       "Streaky lingular opacity or atelectasis.",
                       "Left lower lobe atelectasis or consolidation."):
        f = fx.features(_report("Cough for a week.", impression))
        assert f["alt|#518.0"] == 1.0 and "pos|#518.0" not in f, impression
        assert "rule|definite|#518.0" not in f and f["rule|symptom_alone|#786.2"] == 1.0, impression
    # a finding is no diagnosis: it explains no symptom and is never "definite"
    f = fx.features(_report("Fever and cough.", "Right upper lobe consolidation."))
    assert f["pos|#793.1|imp"] == 1.0 and "rule|definite_diagnoses" not in f
    assert f["rule|symptom_alone|#780.6"] == 1.0 and f["rule|symptom_alone|#786.2"] == 1.0
    # ... and "no infiltrate" is a coding feature of its own
    assert fx.features(_report("Cough.", "No focal infiltrate."))["neg|#793.1|imp"] == 1.0
    # without the finding phrases the differential is missed (the features of version 2)
    f = FeatureExtractor(findings=False).features(_report("Cough.", "Patchy right base infiltrate and/or "
                                                                     "atelectasis."))
    assert f["pos|#518.0"] == 1.0 and "rule|definite|#518.0" in f


def test_a_follow_up_after_surgery_is_coded_only_when_no_condition_is_named() -> None:
    fx = FeatureExtractor()
    f = fx.features(_report("Status post right ureteral reimplantation.", "Normal kidneys, interval growth."))
    assert f["pos|#V67.09|hx"] == 1.0 and f["rule|procedure_alone|#V67.09"] == 1.0
    f = fx.features(_report("Known neurogenic bladder, status post augmentation cystoplasty and Mitrofanoff.",
                            "Stable kidneys."))
    assert f["pos|#V67.09"] >= 1.0 and f["pos|#596.54"] == 1.0
    assert "rule|procedure_alone|#V67.09" not in f
    assert load_codebook().kinds["V67.09"] == "procedure"


def test_index_terms_a_pediatric_radiologist_writes() -> None:
    fx = FeatureExtractor()
    cases = {
        "593.89": ("Prenatal finding.", "Mild left pyelocaliectasis."),
        "599.0": ("Recurrent U T I.", "Normal kidneys."),
        "591": ("Prenatal finding.", "Moderate hydronephrotic left kidney."),
        "786.09": ("Cough.", "Low lung volumes with mild hypoventilation."),
        "788.30": ("Daytime and night-time bed wetting.", "Normal bladder."),
        "753.0": ("Single kidney on a prenatal scan.", "Normal right kidney."),
        "593.5": ("Left megaureter.", "Stable left hydroureter."),
    }
    for code, (history, impression) in cases.items():
        f = fx.features(_report(history, impression))
        assert f.get(f"pos|#{code}", 0.0) >= 1.0, (code, sorted(k for k in f if "|#" in k))


def test_a_model_of_older_features_is_refused(tmp_path: Path) -> None:
    """Version 3 adds features (``fu|``, ``#793.1``, ``#V67.09``): a version-2 model would miss them."""
    model = LinearModel(["486"], {"pos|#486": 0}, np.ones(1), np.ones((1, 1)), np.zeros(1), np.full(1, 0.5))
    model.save(tmp_path)
    assert LinearModel.load(tmp_path).labels == ["486"]
    doc = json.loads((tmp_path / MODEL_FILE).read_text())
    doc["features_version"] = FEATURES_VERSION - 1
    (tmp_path / MODEL_FILE).write_text(json.dumps(doc))
    with pytest.raises(LinearModelError, match="train the model again"):
        LinearModel.load(tmp_path)
