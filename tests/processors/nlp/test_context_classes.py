"""ConText by rule class: pseudo-triggers, terminations, lists, hedges, temporal cues, "again seen".

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest

from processors.nlp import analyze, assert_term
from processors.nlp.sentences import split_sentences


# ------------------------------------------------------------------------------ pseudo-triggers
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("No increase in the size of the left hilar mass.", "mass"),
        ("No change in the moderate right effusion.", "effusion"),
        ("Not only emphysema but also a new nodule.", "emphysema"),
        ("The line was placed without difficulty; small apical pneumothorax.", "pneumothorax"),
        ("No further change in the scarring at the lung apices.", "scarring"),
        ("CT abdomen with and without contrast for renal mass.", "renal mass"),
        ("A 54-year-old demented man with a fall.", "demented"),
        ("Patient has a two-day history of cough and fever.", "fever"),
    ],
)
def test_pseudo_triggers_do_not_negate_or_date(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert not r.negated and not r.historical, r.triggers


# ------------------------------------------------------------------- a trigger never reaches into its target
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("The patient is in no acute distress.", "acute distress"),
        ("No focal neurological deficit.", "focal neurological deficit"),
        ("No discrete liver lesion is shown.", "discrete liver lesion"),
    ],
)
def test_trigger_overlapping_the_target_still_negates(text: str, term: str) -> None:
    assert assert_term(text, term).negated


def test_a_term_that_lost_its_blank_is_still_found() -> None:
    # the marked span ran into the next word when a blank was lost: "...anastomosisto..."
    assert assert_term("No leak at the ileocolic anastomosisto the colon.", "ileocolic anastomosis").negated


def test_a_header_is_no_mention_of_the_term() -> None:
    r = assert_term("ALLERGIES: The patient reports no known allergies.", "allergies")
    assert r.negated and r.historical  # the mention in the sentence, in a past-history section


# ------------------------------------------------------------------------------ terminations
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("No consolidation, but there is a small right effusion.", "effusion"),
        ("No pneumothorax; however, a tiny left effusion is present.", "effusion"),
        ("No pneumothorax; large left effusion.", "effusion"),  # ";" glued to the word before it
        ("There is no fracture, although the cortex is thinned.", "thinned"),
        ("No acute findings aside from a few calcified granulomas.", "granulomas"),
        ("No new infiltrate, which would otherwise suggest aspiration.", "aspiration"),
        ("A small polyp was found in the sigmoid and removed.", "polyp"),
        ("Without any sign of bleeding, the patient remained tachycardic.", "tachycardic"),
    ],
)
def test_termination_ends_the_negation(text: str, term: str) -> None:
    assert assert_term(text, term).negated is False


# ------------------------------------------------------------------------------ lists
@pytest.mark.parametrize(
    "term", ["pneumothorax", "pleural effusion", "consolidation", "pulmonary edema", "rib fracture"]
)
def test_negated_list(term: str) -> None:
    text = (
        "No pneumothorax, pleural effusion, focal consolidation, pulmonary edema or displaced rib fracture."
    )
    assert assert_term(text, term).negated


@pytest.mark.parametrize("term", ["hematuria", "proteinuria"])
def test_negative_for_a_and_b(term: str) -> None:
    assert assert_term("Urinalysis is negative for hematuria and proteinuria.", term).negated


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("No findings suggesting osteomyelitis.", "osteomyelitis"),
        ("No evidence consistent with abscess.", "abscess"),
        ("Stool guaiac was negative.", "stool guaiac"),
        ("Review of systems is -ve for weight loss.", "weight loss"),
        ("No further signs of infection.", "infection"),
        ("Chest pain not associated with nausea.", "nausea"),
        ("Blood cultures negative.", "blood cultures"),
    ],
)
def test_more_negation_forms(text: str, term: str) -> None:
    assert assert_term(text, term).negated


def test_list_items_are_separate_sentences() -> None:
    text = "DIAGNOSIS: 1) Gastritis s/p biopsy 2) Small hiatal hernia 3) Normal duodenum."
    pieces = [text[a:b] for a, b in split_sentences(text)]
    assert "2) Small hiatal hernia" in pieces
    assert not assert_term(text, "hiatal hernia").historical  # "s/p" belongs to item 1


# ------------------------------------------------------------------------------ hedges
@pytest.mark.parametrize(
    ("text", "term", "certainty"),
    [
        ("Findings concerning for early pneumonia.", "pneumonia", "possible"),
        ("A small effusion cannot be excluded.", "effusion", "possible"),
        ("Subtle opacity may represent atelectasis.", "atelectasis", "possible"),
        ("Probable right lower lobe pneumonia.", "pneumonia", "probable"),
        ("Opacity, likely atelectasis.", "atelectasis", "probable"),
        ("Opacity most consistent with atelectasis.", "atelectasis", "probable"),
        ("Unable to rule out early appendicitis.", "appendicitis", "possible"),
        ("Osteomyelitis cannot be ruled out.", "osteomyelitis", "possible"),
    ],
)
def test_hedge_classes(text: str, term: str, certainty: str) -> None:
    r = assert_term(text, term)
    assert r.certainty == certainty and r.uncertain and not r.negated


def test_open_i_convention_probable_counts_possible_does_not() -> None:
    assert analyze("FINDINGS: Probable small left effusion.").chest_labels["Effusion"] == "positive"
    assert analyze("FINDINGS: Possible small left effusion.").chest_labels["Effusion"] == "uncertain"


# ------------------------------------------------------------------------------ temporal cues
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("She has a history of breast cancer.", "breast cancer"),
        ("Hx of asthma.", "asthma"),
        ("Status post appendectomy.", "appendectomy"),
        ("Prior myocardial infarction.", "myocardial infarction"),
        ("Previous stroke, no residual weakness.", "stroke"),
        ("Pulmonary embolism two years ago.", "pulmonary embolism"),
        ("He had hepatitis in the past.", "hepatitis"),
        ("Past medical history is significant for diabetes, gout, and hypertension.", "hypertension"),
        ("Medical history: asthma and eczema.", "eczema"),
        ("No history of seizures.", "seizures"),
        ("Family history of colon cancer in her father.", "colon cancer"),
    ],
)
def test_historical_cues(text: str, term: str) -> None:
    assert assert_term(text, term).historical


def test_no_history_of_is_negated_and_historical() -> None:
    r = assert_term("No history of seizures.", "seizures")
    assert r.negated and r.historical


def test_past_history_sections() -> None:
    text = (
        "PAST MEDICAL HISTORY:\nHypertension. Gout.\n"
        "SOCIAL HISTORY: Denies tobacco.\nFINDINGS: Small effusion."
    )
    assert assert_term(text, "gout").historical
    r = assert_term(text, "tobacco")
    assert r.historical and r.negated
    assert not assert_term(text, "effusion").historical
    fam = assert_term("FAMILY HISTORY: Diabetes in both parents.", "diabetes")
    assert fam.experiencer == "other" and fam.historical


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Old healed fracture of the right clavicle.", "fracture"),
        ("Chronic interstitial lung disease.", "interstitial lung disease"),
        ("Known sarcoidosis.", "sarcoidosis"),
    ],
)
def test_old_and_chronic_are_historical_but_present(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert r.historical and r.chronic and not r.negated


def test_chronic_findings_still_count_in_the_chest_labels() -> None:
    r = analyze("FINDINGS: Chronic interstitial fibrosis. Old granulomatous disease.")
    (f,) = [f for f in r.findings if f.concept == "fibrosis"]
    assert not f.historical and any(t.startswith("CHRONIC:") for t in f.triggers)
    assert r.chest_labels["Fibrosis"] == "positive"
    past = analyze("FINDINGS: History of pneumonia. Clear lungs.")
    assert past.chest_labels["Pneumonia"] == "absent"


def test_comma_with_ends_a_history() -> None:
    r = assert_term("History of gastric surgery for ulcer, with nausea since yesterday.", "nausea")
    assert not r.historical
    assert assert_term("History of diabetes with neuropathy.", "neuropathy").historical


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Two weeks of cough; today he presents with hemoptysis.", "hemoptysis"),
        ("History of heart failure, now with acute pulmonary edema.", "pulmonary edema"),
        ("Recent diagnosis of pulmonary embolism.", "pulmonary embolism"),
    ],
)
def test_recent_is_not_historical(text: str, term: str) -> None:
    assert not assert_term(text, term).historical


# ------------------------------------------------------------------------------ "again seen": present now
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("The known left hilar mass is again seen.", "mass"),
        ("Redemonstrated small right effusion.", "effusion"),
        ("Persistent left basilar atelectasis.", "atelectasis"),
        ("Stable 6 mm nodule in the right upper lobe, previously 6 mm.", "nodule"),
        ("The previously described nodule is unchanged.", "nodule"),
        ("Status post CABG with stable cardiomegaly.", "cardiomegaly"),
    ],
)
def test_again_seen_is_present_now(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert not r.historical and not r.negated, r.triggers


def test_again_seen_counts_in_the_chest_labels() -> None:
    r = analyze("FINDINGS: Status post CABG. Stable mild cardiomegaly. Persistent small left effusion.")
    assert r.chest_labels["Cardiomegaly"] == "positive"
    assert r.chest_labels["Effusion"] == "positive"
