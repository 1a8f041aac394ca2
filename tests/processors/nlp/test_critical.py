from dataclasses import dataclass
from datetime import datetime

import pytest

from processors.nlp.critical import (
    critical_concepts,
    critical_level,
    critical_results,
    critical_synonyms,
    find_communication,
    match_critical,
)


@dataclass
class F:
    concept: str
    text: str
    start: int = 0
    end: int = 0
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    hypothetical: bool = False
    experiencer: str = "patient"


@pytest.mark.parametrize(
    ("concept", "text", "expected"),
    [
        ("pneumothorax", "pneumothorax", "pneumothorax"),
        ("pneumothorax", "tension pneumothorax", "tension_pneumothorax"),
        ("Pulmonary_Embolism", "PE", "pulmonary_embolism"),
        ("finding", "Subdural hematomas", "intracranial_hemorrhage"),
        ("hemorrhage", "subarachnoid hemorrhage", "intracranial_hemorrhage"),
        ("free_air", "free intraperitoneal air", "pneumoperitoneum"),
        ("obstruction", "small-bowel obstruction", "bowel_obstruction"),
        ("aortic dissection", "dissection", "aortic_dissection"),
        ("device", "esophageal intubation", "malpositioned_tube_or_line"),
        ("torsion", "left ovarian torsion", "ovarian_torsion"),
        ("nodule", "nodule", None),
        ("effusion", "pleural effusion", None),
        ("atelectasis", "atelectasis", None),
    ],
)
def test_match_critical(concept, text, expected):
    assert match_critical(concept, text) == expected


def test_positive_only():
    findings = [
        F("pneumothorax", "pneumothorax", 10, 22),
        F("pneumothorax", "pneumothorax", 30, 42, negated=True),
        F("pulmonary_embolism", "PE", 50, 52, hypothetical=True),
        F("intracranial_hemorrhage", "subdural hematoma", 60, 77, historical=True),
        F("aortic_dissection", "aortic dissection", 80, 97, experiencer="other"),
        F("pneumothorax", "pneumothorax", 100, 112, uncertain=True),
        F("nodule", "nodule", 120, 126),
        F("pneumoperitoneum", "free air", 130, 138),
    ]
    results = critical_results(findings)
    assert [(r.concept, r.start, r.finding, r.level) for r in results] == [
        ("pneumothorax", 10, 0, 1),
        ("pneumoperitoneum", 130, 7, 1),
    ]
    with_uncertain = critical_results(findings, include_uncertain=True)
    assert [(r.start, r.uncertain) for r in with_uncertain] == [(10, False), (100, True), (130, False)]
    assert results[0].to_record() == {
        "concept": "pneumothorax",
        "text": "pneumothorax",
        "start": 10,
        "end": 22,
    }


def test_resolved_change_is_not_critical():
    @dataclass
    class G(F):
        change: str | None = None

    assert critical_results([G("pneumothorax", "pneumothorax", change="resolved")]) == []
    assert len(critical_results([G("pneumothorax", "pneumothorax", change="increased")])) == 1


def test_concept_data():
    names = critical_concepts()
    assert {
        "pneumothorax",
        "pulmonary_embolism",
        "aortic_dissection",
        "intracranial_hemorrhage",
        "pneumoperitoneum",
        "ectopic_pregnancy",
        "testicular_torsion",
        "spinal_cord_compression",
        "acute_stroke",
        "malpositioned_tube_or_line",
        "midline_shift",
    } <= names
    syn = critical_synonyms()
    assert set(syn) == names
    assert syn["pneumoperitoneum"][0] == "pneumoperitoneum"
    assert "free air" in syn["pneumoperitoneum"]
    assert all(s == s.lower() for terms in syn.values() for s in terms)
    assert critical_level("bowel_obstruction") == 2
    assert critical_level("nodule") is None


@pytest.mark.parametrize(
    ("text", "recipient", "time_text", "time"),
    [
        (
            "IMPRESSION: Large right pneumothorax. Findings were discussed with Dr. Smith by telephone at "
            "14:35 on 1/2/2024.",
            "Dr. Smith",
            "14:35 on 1/2/2024",
            datetime(2024, 1, 2, 14, 35),
        ),
        ("Results communicated to the ED physician at 3:15 pm.", "the ED physician", "3:15 pm", None),
        (
            "Critical result called to and read back by Dr. Jane Doe on 03/04/2025 at 0915 hours.",
            "Dr. Jane Doe",
            "03/04/2025 at 0915 hours",
            datetime(2025, 3, 4, 9, 15),
        ),
        (
            "Dr. Patel was notified at 10:20 a.m. on January 5, 2024.",
            "Dr. Patel",
            "10:20 a.m. on January 5, 2024",
            datetime(2024, 1, 5, 10, 20),
        ),
        (
            "Findings were conveyed to the covering nurse practitioner on 2024-02-03 at 08:05.",
            "the covering nurse practitioner",
            "2024-02-03 at 08:05",
            datetime(2024, 2, 3, 8, 5),
        ),
        ("The findings were discussed with the patient.", "the patient", None, None),
        ("This was communicated to the ICU team on 5/6/2024.", "the ICU team", "5/6/2024", None),
    ],
)
def test_communication(text, recipient, time_text, time):
    c = find_communication(text)
    assert c is not None
    assert c.recipient == recipient
    assert c.time_text == time_text
    assert c.time == time
    assert text[c.start : c.end] == c.text
    assert set(c.to_record()) == {"text", "recipient", "time_text", "time"}


@pytest.mark.parametrize(
    "text",
    [
        "These findings will be discussed with the referring physician.",
        "As discussed above, no acute process.",
        "Informed consent was obtained from the patient.",
        "No acute findings.",
        "The patient reported to have fallen from a ladder.",
        "Images were sent to PACS.",
    ],
)
def test_no_communication(text):
    assert find_communication(text) is None


def test_communication_dayfirst_and_sentences():
    text = "Acute appendicitis. Discussed with Dr. Brown at 09:10 on 03/04/2024."
    c = find_communication(text, dayfirst=True)
    assert c is not None and c.time == datetime(2024, 4, 3, 9, 10)
    assert c.text.startswith("Discussed with")
    c2 = find_communication(text, [(0, 19), (20, len(text))])
    assert c2 is not None and c2.start == 20 and c2.time == datetime(2024, 3, 4, 9, 10)


@pytest.mark.parametrize(
    ("text", "recipient"),
    [
        ("The ED physician was notified at 10:20.", "The ED physician"),
        ("Findings: the covering surgical resident was paged at 10:20.", "the covering surgical resident"),
        ("Dr. Lee was contacted regarding the findings at 11:00.", "Dr. Lee"),
    ],
)
def test_passive_recipient(text, recipient):
    c = find_communication(text)
    assert c is not None and c.recipient == recipient


def test_probable_counts_possible_does_not():
    @dataclass
    class H(F):
        certainty: str = "definite"

    findings = [
        H("pneumothorax", "pneumothorax", 0, 12, uncertain=True, certainty="probable"),
        H("pneumothorax", "pneumothorax", 20, 32, uncertain=True, certainty="possible"),
    ]
    assert [(r.start, r.uncertain) for r in critical_results(findings)] == [(0, True)]


def test_communication_all_caps():
    text = "IMPRESSION: FREE AIR. FINDINGS WERE DISCUSSED WITH DR. SMITH AT 14:35 ON 1/2/2024."
    c = find_communication(text)
    assert c is not None
    assert c.recipient == "DR. SMITH"
    assert c.time == datetime(2024, 1, 2, 14, 35)
    assert c.text.startswith("FINDINGS WERE")


@pytest.mark.parametrize(
    "text",
    [
        "INDICATION: Pneumothorax after line placement.\nFINDINGS: Both lungs are expanded.",
        "HISTORY: Pulmonary embolism two years ago, on anticoagulation.\nFINDINGS: Clear lungs.",
        "EXAM: CT angiogram chest, aortic dissection protocol.\nFINDINGS: The aorta is normal in caliber.",
        "TECHNIQUE: Imaging tailored to the known subdural hematoma.\nFINDINGS: Normal ventricles.",
        "COMPARISON: Film of last week showing free air.\nFINDINGS: Normal bowel gas pattern.",
    ],
)
def test_a_mention_outside_the_reported_sections_is_not_a_critical_result(text: str) -> None:
    from processors.nlp import analyze

    r = analyze(text)
    assert any(match_critical(f.concept, f.text) for f in r.findings), "the test needs a critical finding"
    assert r.critical_results == []


def test_the_same_mention_in_findings_impression_or_an_unheaded_report_is() -> None:
    from processors.nlp import analyze

    for text in ("FINDINGS: Large right pneumothorax.", "IMPRESSION: Large right pneumothorax.",
                 "Large right pneumothorax."):
        assert [c.concept for c in analyze(text).critical_results] == ["pneumothorax"], text


def test_section_filter_on_plain_findings() -> None:
    @dataclass
    class S(F):
        section: str = "findings"

    found = [S("pneumothorax", "pneumothorax", section="history"), S("pneumothorax", "pneumothorax"),
             F("pneumothorax", "pneumothorax")]
    assert [r.finding for r in critical_results(found)] == [1, 2]  # no section attribute: counted
    assert [r.finding for r in critical_results(found, sections={"history"})] == [0, 2]
