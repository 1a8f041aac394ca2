"""analyze(): findings, attributes, chest labels, process pool."""

from __future__ import annotations

import json
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from processors.nlp import analyze, engine
from processors.nlp.engine import Engine, ExtractorError, _load_extractors, get_engine

REPORT = """EXAM: XR CHEST 2 VIEWS
INDICATION: Shortness of breath, evaluate for pneumonia.
COMPARISON: None.
FINDINGS: Moderate cardiomegaly. Small bilateral pleural effusions. Right lower lobe atelectasis.
No pneumothorax. Calcified granuloma in the left upper lobe. Mild peribronchial thickening.
IMPRESSION:
1. Cardiomegaly with small bilateral effusions, new since prior.
2. No focal consolidation.
"""


def test_findings_carry_offsets_sentence_section_and_attributes() -> None:
    r = analyze(REPORT)
    for f in r.findings:
        assert REPORT[f.start : f.end] == f.text
        s = r.sentences[f.sentence]
        assert s.start <= f.start < s.end and s.section == f.section
    eff = [f for f in r.findings if f.concept == "pleural_effusion"]
    assert eff[0].laterality == "bilateral" and eff[0].severity == "mild"
    atel = next(f for f in r.findings if f.concept == "atelectasis")
    assert atel.anatomy == ["right_lower_lobe"] and atel.laterality == "right"
    assert any(f.change == "new" for f in eff)
    card = next(f for f in r.findings if f.concept == "cardiomegaly")
    assert card.severity == "moderate"


def test_chest_labels() -> None:
    labels = analyze(REPORT).chest_labels
    assert labels["Cardiomegaly"] == "positive"
    assert labels["Effusion"] == "positive"
    assert labels["Atelectasis"] == "positive"
    assert labels["Pleural_Thickening"] == "positive"  # any thickening, by the Open-i convention
    assert labels["Pneumothorax"] == "negative"
    assert labels["Consolidation"] == "negative"
    assert labels["Pneumonia"] == "absent"  # only in the indication, hypothetical
    assert labels["Nodule"] == "absent"  # a granuloma is not coded as a nodule
    assert labels["normal"] == "negative"


def test_normal_report_and_empty_report() -> None:
    r = analyze("FINDINGS: Heart size normal. Lungs clear. No effusion.\nIMPRESSION: Normal chest.")
    assert r.chest_labels["normal"] == "positive"
    assert all(v in ("negative", "absent") for k, v in r.chest_labels.items() if k != "normal")
    assert analyze("").chest_labels["normal"] == "positive"


def test_to_dict_is_json_serialisable() -> None:
    json.dumps(analyze(REPORT).to_dict())


def _labels(text: str) -> dict[str, str]:
    return analyze(text).chest_labels


def test_engine_pickles_and_works_in_a_process_pool() -> None:
    clone = pickle.loads(pickle.dumps(get_engine()))
    assert isinstance(clone, Engine)
    assert clone.analyze(REPORT).chest_labels == analyze(REPORT).chest_labels
    with ProcessPoolExecutor(max_workers=2) as pool:
        out = list(pool.map(_labels, [REPORT, "No pneumothorax."]))
    assert out[0]["Cardiomegaly"] == "positive" and out[1]["Pneumothorax"] == "negative"


def test_chest_mapping_is_an_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    # the clinical mapping codes hiatal hernia as Hernia, the default one does not; the environment
    # plays no part
    clinical = str(Path(engine.__file__).parent / "chest" / "mapping_clinical.json")
    monkeypatch.setenv("RADSTREAM_CHEST_MAPPING", clinical)
    text = "FINDINGS: Large hiatal hernia. Lungs are clear."
    assert analyze(text).chest_labels["Hernia"] == "absent"
    assert analyze(text, chest_mapping=clinical).chest_labels["Hernia"] == "positive"
    assert get_engine(clinical) is get_engine(clinical) and get_engine(clinical) is not get_engine()


def test_other_extractors_are_wired_in() -> None:
    assert set(get_engine().extractors) == set(engine._EXTRACTORS)
    text = (
        "EXAM: CT CHEST WITH CONTRAST\nFINDINGS: Right upper lobe nodule measuring 1.2 x 0.8 cm, previously "
        "6 mm. Small right pneumothorax.\nIMPRESSION: Lung-RADS 4B. Recommend PET/CT in 3 months.\n"
        "Findings discussed with Dr. Jones by telephone at 10:15 on 3/4/2025."
    )
    r = analyze(text)
    nodule = next(f for f in r.findings if f.concept == "nodule")
    assert r.measurements and nodule.size_mm == 12.0
    assert (r.modality, r.body_region, r.contrast) == ("CT", "chest", True)
    assert [(a.system, a.category) for a in r.assessments] == [("Lung-RADS", "4B")]
    assert r.recommendations and r.recommendations[0].modality == "PET"
    assert [c.concept for c in r.critical_results] == ["pneumothorax"]
    assert r.communication is not None and r.communication.recipient == "Dr. Jones"


def test_an_extractor_that_fails_to_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "processors.nlp.assessments", None)  # import raises ImportError
    with pytest.raises(ExtractorError, match="processors.nlp.assessments"):
        _load_extractors()
    with pytest.raises(ExtractorError):
        Engine()


def test_an_extractor_with_a_broken_data_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_extractor.py").write_text(
        "import json\nRULES = json.loads('{not json')\n\ndef extract_assessments(text):\n    return []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(engine._EXTRACTORS, "extract_assessments", "broken_extractor")
    with pytest.raises(ExtractorError, match="JSONDecodeError"):
        _load_extractors()


def test_an_extractor_without_its_function_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import processors.nlp.recommendations as recommendations

    monkeypatch.delattr(recommendations, "extract_recommendations")
    with pytest.raises(ExtractorError, match="extract_recommendations"):
        _load_extractors()


def test_analyze_uses_the_exam_description_given() -> None:
    body = "FINDINGS: No acute intracranial abnormality. No restricted diffusion."
    r = analyze(body, exam="MRI BRAIN W/WO CONTRAST")
    assert (r.modality, r.body_region, r.contrast) == ("MR", "head", True)
    assert analyze(body).modality is None  # nothing in the text names the exam


def test_the_exam_given_wins_over_the_exam_section_and_is_completed_by_it() -> None:
    text = "EXAM: CT ABDOMEN PELVIS WITH IV CONTRAST\nFINDINGS: Normal appendix."
    assert (analyze(text).modality, analyze(text).body_region) == ("CT", "abdomen_pelvis")
    given = analyze(text, exam="US RENAL")
    assert (given.modality, given.body_region) == ("US", "abdomen")
    # a bare modality (an event without a procedure description): region and contrast from the text
    bare = analyze(text, exam="MR")
    assert (bare.modality, bare.body_region, bare.contrast) == ("MR", "abdomen_pelvis", True)
    # an empty description is no description
    assert (analyze(text, exam="  ").modality, analyze(text, exam="").contrast) == ("CT", True)
