"""Classes of wording for reports the engine has not seen (issue 14, NLP 0.6.6): a lasting condition
written alone as a problem-list item ("Hypertension.": chronic, so historical in ConText's sense), a habit
the patient denies ("denies alcohol or drug use": negated and historical), a collection that has been
evacuated or drained (resolved, so negated), a question answered right after it ("Pneumothorax? No."),
and a hedge set off by commas between two alternatives ("atelectasis or, less likely, pneumonia").

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest

from processors.nlp import analyze, assert_term
from processors.nlp.sentences import SentenceSplitter


def _state(text: str, concept: str) -> str:
    """The state of the first finding of ``concept`` in a FINDINGS section holding ``text``."""
    for f in analyze(f"FINDINGS: {text}").findings:
        if f.concept == concept:
            if f.negated:
                return "negated"
            if f.historical:
                return "historical"
            return f.certainty  # definite | probable | possible
    raise AssertionError(f"no {concept} in {text!r}")


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


# -------------------------------------------------------------- evacuated / drained: resolved
@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("The left pneumothorax has been evacuated.", "pneumothorax"),
        ("The right pleural effusion has since been drained.", "pleural_effusion"),
        ("Right effusion was drained yesterday; mild cardiomegaly.", "pleural_effusion"),
        ("Interval evacuation of the left apical pneumothorax.", "pneumothorax"),
        ("Interval drainage of the loculated right effusion.", "pleural_effusion"),
        ("The left effusion, which has been drained, is no longer layering.", "pleural_effusion"),
    ],
)
def test_an_evacuated_or_drained_collection_is_resolved(text: str, concept: str) -> None:
    assert _state(text, concept) == "negated", text


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("The right effusion has been partially drained.", "pleural_effusion"),
        ("The right effusion has not been drained.", "pleural_effusion"),
        ("The left pneumothorax was incompletely evacuated.", "pneumothorax"),
        ("Partial drainage of the right effusion.", "pleural_effusion"),
        ("The left effusion has been drained. Mild cardiomegaly.", "cardiomegaly"),
    ],
)
def test_a_partial_or_denied_drainage_leaves_the_finding(text: str, concept: str) -> None:
    assert _state(text, concept) == "definite", text


# -------------------------------------------------------------- a question answered right after it
@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Pneumothorax? No.", "pneumothorax"),
        ("Pleural effusion?  None.", "pleural_effusion"),
        ("Pneumothorax? Negative. Mild cardiomegaly.", "pneumothorax"),
        ("Any pneumothorax? No; the lungs are clear.", "pneumothorax"),
    ],
)
def test_a_question_answered_no_is_negated(text: str, concept: str) -> None:
    assert _state(text, concept) == "negated", text


@pytest.mark.parametrize(
    ("text", "concept", "state"),
    [
        ("Pneumothorax? Yes, small, at the left apex.", "pneumothorax", "definite"),
        ("Pneumothorax? No. Cardiomegaly? Yes.", "cardiomegaly", "definite"),
        ("Pneumothorax? No. Mild cardiomegaly.", "cardiomegaly", "definite"),
        # an unanswered question stays a hedge; "No" that starts a sentence is no answer
        ("Pneumothorax? No effusion.", "pneumothorax", "possible"),
        ("Pneumothorax?", "pneumothorax", "possible"),
    ],
)
def test_an_answered_question_keeps_the_rest(text: str, concept: str, state: str) -> None:
    assert _state(text, concept) == state, text


def test_the_answer_stays_in_the_question_sentence() -> None:
    text = "Pneumothorax? No. Effusion? Small. Fever? Yes\nHeart normal."
    spans = [text[a:b] for a, b in SentenceSplitter().split(text)]
    assert spans == ["Pneumothorax? No.", "Effusion?", "Small.", "Fever? Yes", "Heart normal."]


def test_an_answered_question_in_the_history_is_not_hypothetical() -> None:
    res = assert_term("CLINICAL HISTORY: Pneumonia? No.", "pneumonia")
    assert res.negated and not res.hypothetical


# -------------------------------------------------------------- a hedge between commas, between alternatives
@pytest.mark.parametrize(
    ("text", "states"),
    [
        ("Left basilar atelectasis or, less likely, pneumonia.", ("probable", "possible")),
        ("Atelectasis or, much less likely, early pneumonia.", ("probable", "possible")),
        ("Atelectasis, or less likely, pneumonia.", ("probable", "possible")),
        ("Atelectasis or, possibly, a small pneumonia.", ("probable", "possible")),
        ("Atelectasis or, more likely, pneumonia.", ("possible", "probable")),
        ("Atelectasis and, less likely, pneumonia.", ("probable", "possible")),
        # without the commas the hedge reads forward as before
        ("Atelectasis or less likely pneumonia.", ("definite", "possible")),
        ("Atelectasis, possibly pneumonia.", ("definite", "possible")),
    ],
)
def test_a_hedge_between_commas_goes_with_the_next_alternative(text: str, states: tuple[str, str]) -> None:
    """The atelectasis, then the pneumonia."""
    assert (_state(text, "atelectasis"), _state(text, "pneumonia")) == states, text


def test_a_closing_hedge_still_reads_back() -> None:
    assert _state("Right lower lobe pneumonia, less likely.", "pneumonia") == "possible"
    assert _state("Right lower lobe pneumonia, possibly.", "pneumonia") == "possible"
