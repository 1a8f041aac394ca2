"""analyze(): findings, attributes, chest labels, Avro output, process pool."""

from __future__ import annotations

import json
import pickle
from concurrent.futures import ProcessPoolExecutor

from processors.nlp import analyze
from processors.nlp.engine import Engine, get_engine
from streams.serde import decode, encode

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


def test_to_avro_has_exactly_the_nlp_fields_and_encodes() -> None:
    r = analyze(REPORT)
    rec = r.to_avro()
    assert set(rec) == {
        "modality",
        "body_region",
        "contrast",
        "nlp_version",
        "sections",
        "findings",
        "measurements",
        "recommendations",
        "assessments",
        "critical_results",
        "communication",
        "chest_labels",
    }
    assert "absent" not in rec["chest_labels"].values()
    full = dict(
        rec,
        event_id="e1",
        accession="A1",
        report_version=1,
        status="final",
        patient_id="p",
        processed_time=0,
        site="default",
    )
    back = decode("report_findings", encode("report_findings", full))
    assert back["findings"] == rec["findings"] and back["chest_labels"] == rec["chest_labels"]
    assert {f["certainty"] for f in back["findings"]} <= {"definite", "probable", "possible"}
    json.dumps(r.to_dict())  # JSON-serialisable


def _labels(text: str) -> dict[str, str]:
    return analyze(text).chest_labels


def test_engine_pickles_and_works_in_a_process_pool() -> None:
    clone = pickle.loads(pickle.dumps(get_engine()))
    assert isinstance(clone, Engine)
    assert clone.analyze(REPORT).chest_labels == analyze(REPORT).chest_labels
    with ProcessPoolExecutor(max_workers=2) as pool:
        out = list(pool.map(_labels, [REPORT, "No pneumothorax."]))
    assert out[0]["Cardiomegaly"] == "positive" and out[1]["Pneumothorax"] == "negative"
