"""Session 16 classes (invented sentences only, never dev-set text), each with look-alike guards:

- the month "May" is no hedge: "seen in May for ...", "on May 3", "May is ..." (a modal is followed
  by a verb, never by a date, a preposition, a pronoun, a finite verb or a full stop);
- a stage of the patient's life dates an episode: "when she was a child", "when he was 5", "decades
  ago"; a decade of life does not ("in his 60s" is most often the patient's age now: "pneumonia in a
  veteran in his 60s"), nor a weight or gestation ("when she was 32 weeks");
- a negated finding of the physical examination, postposed: "pulses were not palpable", "murmurs were
  not heard", "cannot be palpated"; not a judgement ("is not felt to be malignant");
- contracted negations read as the full forms: "doesn't have", "there wasn't any", "isn't seen",
  "couldn't be excluded" (a hedge, as "could not be excluded"), "hasn't resolved" (no negation, as "has
  not resolved"); a typographic apostrophe (U+2019) is the plain one;
- a denial as the answer to a label: "Chest pain - denied.", "Fever: denies."; not a denial that is no
  answer ("chest pain, which he denied, was reported by his wife").
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
        ("INDICATION: Hemoptysis and pneumonia in a veteran in his 60s.", "pneumonia"),
        ("Pneumonia in an adult in her 60s.", "Pneumonia"),
        ("Cough. Pneumonia in her 70s.", "Pneumonia"),
        ("Pneumonia in a nonsmoker in his sixties.", "Pneumonia"),
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


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("He doesn't have chest pain.", "chest pain"),
        ("She didn't report any fever.", "fever"),
        ("There wasn't any effusion.", "effusion"),
        ("There isn't a pneumothorax.", "pneumothorax"),
        ("Patient hasn't had any seizures.", "seizures"),
        ("Doesn't appear to have cellulitis.", "cellulitis"),
        ("A pneumothorax isn't seen.", "pneumothorax"),
        ("Fractures weren't identified.", "Fractures"),
        ("She doesn\u2019t have chest pain.", "chest pain"),
        ("A pneumothorax isn\u2019t seen.", "pneumothorax"),
    ],
)
def test_a_contracted_negation_negates(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).negated


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Pneumonia couldn't be excluded.", "Pneumonia"),
        ("Pneumonia couldn\u2019t be excluded.", "Pneumonia"),
        ("A small fracture can\u2019t be ruled out.", "fracture"),
    ],
)
def test_a_contracted_hedge_hedges(sentence: str, target: str) -> None:
    res = assert_term(sentence, target)
    assert res.uncertain and not res.negated


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("The effusion hasn't resolved.", "effusion"),
        ("The effusion hasn\u2019t fully resolved.", "effusion"),
    ],
)
def test_a_contraction_keeps_what_the_full_form_keeps(sentence: str, target: str) -> None:
    assert not assert_term(sentence, target).negated


@pytest.mark.parametrize(
    ("full", "short", "target"),
    [
        ("The nodule is not clearly seen.", "The nodule isn't clearly seen.", "nodule"),
        ("The effusion has not fully resolved.", "The effusion hasn't fully resolved.", "effusion"),
        ("Pneumonia can not be entirely excluded.", "Pneumonia can't be entirely excluded.", "Pneumonia"),
        ("He did not have a fever.", "He didn't have a fever.", "fever"),
        ("The mass does not appear larger.", "The mass doesn't appear larger.", "mass"),
        ("Edema was not present previously.", "Edema wasn't present previously.", "Edema"),
    ],
)
def test_a_contraction_reads_as_its_full_form(full: str, short: str, target: str) -> None:
    a, b = assert_term(full, target), assert_term(short, target)
    assert (a.negated, a.certainty, a.historical) == (b.negated, b.certainty, b.historical)


def test_a_contracted_negation_in_a_radiology_report() -> None:
    r = analyze("FINDINGS: There isn't any pleural effusion. Mild cardiomegaly.")
    assert r.chest_labels["Effusion"] == "negative"
    assert r.chest_labels["Cardiomegaly"] == "positive"


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Chest pain - denied.", "Chest pain"),
        ("Fever: denies.", "Fever"),
        ("Fever: denied; cough: yes.", "Fever"),
    ],
)
def test_a_denial_answering_a_label_negates(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).negated


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Fever: denied; cough: yes.", "cough"),
        ("Chest pain, which he denied, was reported by his wife.", "Chest pain"),
    ],
)
def test_a_denial_that_answers_no_label_reads_no_further(sentence: str, target: str) -> None:
    assert not assert_term(sentence, target).negated


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("The opacity may for example represent atelectasis.", "atelectasis"),
        ("The opacity may at least in part reflect atelectasis.", "atelectasis"),
        ("The opacity may to some degree represent pneumonia.", "pneumonia"),
        ("These changes may with time become fibrosis.", "fibrosis"),
    ],
)
def test_a_modal_may_before_an_adverbial_still_hedges(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).uncertain
