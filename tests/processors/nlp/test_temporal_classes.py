"""Session 16 classes (invented sentences only, never dev-set text), each with look-alike guards:

- the month "May" is no hedge: "seen in May for ...", "on May 3", "May is ..." (a modal is followed
  by a verb, never by a date, a preposition, a pronoun, a finite verb or a full stop);
- a decade or stage of the patient's life dates an episode: "diagnosed with lupus in her twenties",
  "in his early 50s", "when she was a child", "when he was 5", "decades ago"; not the patient's current
  age ("a woman in her forties with a breast lump"), not a weight or gestation ("when she was 32 weeks");
- a negated finding of the physical examination, postposed: "pulses were not palpable", "murmurs were
  not heard", "cannot be palpated"; not a judgement ("is not felt to be malignant").
"""

from __future__ import annotations

import pytest

from processors.nlp import analyze, assert_term


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("She was seen in May for a sinus infection.", "sinus infection"),
        ("Admitted in May with pneumonia.", "pneumonia"),
        ("Last seen on May 3 for cough.", "cough"),
        ("The nodule found in May is unchanged.", "nodule"),
        ("Cholecystitis, treated in May.", "Cholecystitis"),
        ("He had surgery in March and again in May for a recurrent hernia.", "recurrent hernia"),
    ],
)
def test_the_month_may_is_no_hedge(sentence: str, target: str) -> None:
    res = assert_term(sentence, target)
    assert not res.uncertain, res.triggers
    assert not res.negated


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("The opacity may represent atelectasis.", "atelectasis"),
        ("Findings in part may reflect pneumonia.", "pneumonia"),
        ("Atelectasis may, in part, explain the opacity.", "opacity"),
        ("There may be a small effusion.", "effusion"),
        ("This may well be early pneumonia.", "pneumonia"),
    ],
)
def test_the_modal_may_still_hedges(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).uncertain


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("FINDINGS: Compared with the radiograph of May the right pleural effusion is larger.", "Effusion"),
        ("IMPRESSION: Since May 12 new right upper lobe nodule.", "Nodule"),
    ],
)
def test_the_month_may_in_a_radiology_report_keeps_the_label(text: str, label: str) -> None:
    assert analyze(text).chest_labels[label] == "positive"


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("He was diagnosed with diabetes in his forties.", "diabetes"),
        ("She developed migraines in her teens.", "migraines"),
        ("He had a heart attack in his early 50s.", "heart attack"),
        ("Kidney stones in her late thirties.", "Kidney stones"),
        ("She had rheumatic fever when she was a child.", "rheumatic fever"),
        ("He had measles when he was 5.", "measles"),
        ("When she was a teenager she had an appendectomy.", "appendectomy"),
        ("He had polio decades ago.", "polio"),
        ("Tonsillectomy a decade ago.", "Tonsillectomy"),
    ],
)
def test_a_past_period_of_life_dates_the_episode(sentence: str, target: str) -> None:
    res = assert_term(sentence, target)
    assert res.historical, res.triggers
    assert not res.negated


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("A woman in her forties presents with a breast lump.", "breast lump"),
        ("Diabetic woman in her fifties with chest pain.", "Diabetic"),
        ("He is a man in his sixties with hypertension and new chest pain.", "chest pain"),
        ("Vaginal bleeding when she was 32 weeks pregnant.", "Vaginal bleeding"),
        ("He had a fever when he was seen today.", "fever"),
    ],
)
def test_the_current_age_or_a_gestation_is_no_past(sentence: str, target: str) -> None:
    assert not assert_term(sentence, target).historical


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Pulses were not palpable.", "Pulses"),
        ("Cervical lymph nodes are not palpable.", "lymph nodes"),
        ("Murmurs were not heard.", "Murmurs"),
        ("A thrill is not felt.", "thrill"),
        ("Bowel sounds not audible.", "Bowel sounds"),
        ("The dorsalis pedis pulse could not be palpated.", "dorsalis pedis pulse"),
        ("Rubs cannot be heard.", "Rubs"),
    ],
)
def test_a_postposed_negation_of_the_examination_negates(sentence: str, target: str) -> None:
    res = assert_term(sentence, target)
    assert res.negated, res.triggers


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("The nodule is not felt to be malignant.", "nodule"),
        ("The murmur, not heard of before, is new.", "murmur"),
        ("The liver edge is barely palpable.", "liver edge"),
        ("A palpable mass in the left breast.", "mass"),
    ],
)
def test_a_judgement_or_a_present_finding_is_not_negated(sentence: str, target: str) -> None:
    assert not assert_term(sentence, target).negated
