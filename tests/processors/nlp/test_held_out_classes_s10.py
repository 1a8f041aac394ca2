"""Classes of wording for reports the engine has not seen (issue 14, NLP 0.6.6): a lasting condition
written alone as a problem-list item ("Hypertension.": chronic, so historical in ConText's sense), a habit
the patient denies ("denies alcohol or drug use": negated and historical), ...

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest

from processors.nlp import assert_term


# -------------------------------------------------------------- a lasting condition as a problem-list item
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("HYPERLIPIDEMIA.", "hyperlipidemia"),
        ("Osteoarthritis.", "osteoarthritis"),
        ("2. Type 2 diabetes mellitus.", "type 2 diabetes mellitus"),
        ("3) Essential hypertension.", "essential hypertension"),
        ("- Chronic kidney disease", "chronic kidney disease"),
        ("Parkinson's disease.", "parkinson's disease"),
        ("Benign prostatic hyperplasia;", "benign prostatic hyperplasia"),
        ("CLINICAL HISTORY: Atrial fibrillation.", "atrial fibrillation"),
        ("Diabetes mellitus type II.", "diabetes mellitus type II"),
    ],
)
def test_a_lasting_condition_alone_is_a_past_history_item(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.historical and res.chronic and not res.negated, (text, res)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        # read off the image, or an event: present in a report's reading
        ("COPD.", "COPD"),
        ("Myocardial infarction.", "myocardial infarction"),
        ("Pneumonia.", "pneumonia"),
        ("Reflux.", "reflux"),  # vesicoureteral reflux in a child's history
        ("Pulmonary hypertension.", "pulmonary hypertension"),
        # not alone: a statement about now
        ("The patient has hypertension and is short of breath.", "hypertension"),
        ("Osteoarthritis of the right knee is seen.", "osteoarthritis"),
        # the report's own reading
        ("IMPRESSION: Osteoarthritis.", "osteoarthritis"),
        ("FINDINGS: Hypertension.", "hypertension"),
    ],
)
def test_other_conditions_or_sentences_stay_present(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert not res.historical, (text, res)


def test_a_problem_list_item_keeps_its_own_cues() -> None:
    assert assert_term("No diabetes.", "diabetes").negated
    assert not assert_term("No diabetes.", "diabetes").historical


# -------------------------------------------------------------- a denied habit
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("He denies tobacco use.", "tobacco"),
        ("She denies alcohol or drug use.", "alcohol"),
        ("She denies alcohol or drug use.", "drug use"),
        ("Patient denied any illicit drug use.", "illicit drug use"),
        ("Denies smoking, drinking or recreational drugs.", "smoking"),
        ("Denies cigarette smoking.", "cigarette smoking"),
    ],
)
def test_a_denied_habit_is_negated_and_historical(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.negated and res.historical, (text, res)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("She denies chest pain.", "chest pain"),  # a symptom, not a habit
        ("No alcohol on his breath.", "alcohol"),  # an examination, not a denial
        ("He drinks alcohol daily.", "alcohol"),
    ],
)
def test_other_denials_and_habits_are_not_historical(text: str, term: str) -> None:
    assert not assert_term(text, term).historical, text
