"""Classes of wording for reports the engine has not seen (issue 14, NLP 0.6.6): a lasting condition
written alone as a problem-list item ("Hypertension.": chronic, so historical in ConText's sense), a habit
the patient denies ("denies alcohol or drug use": negated and historical), a collection that has been
evacuated or drained (resolved, so negated), a question answered right after it ("Pneumothorax? No."),
a hedge set off by commas between two alternatives ("atelectasis or, less likely, pneumonia"), a duration
in months or years ("cough for three months", "asthma since childhood": began long ago, still present),
a target that holds its own time word ("former smoker", "psychiatric history"), a hypothesis called
unlikely ("unlikely to represent pneumonia"), postposed possibility nouns ("pneumonia remains a
possibility"), a differential the reader cannot settle ("cannot distinguish atelectasis from pneumonia"),
and the state after a procedure ("status post CABG with mild cardiomegaly": the cardiomegaly is now).

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest
from held_out_helpers import finding_state as _state

from processors.nlp import assert_term
from processors.nlp.sentences import SentenceSplitter


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
        ("Hypertension, well controlled.", "hypertension"),
        ("Asthma, mild intermittent.", "asthma"),
        ("#2 Hypothyroidism.", "hypothyroidism"),
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
        ("Hypertension, new diagnosis.", "hypertension"),
        ("Hypertension, severe, with headache.", "hypertension"),
        # the report's own reading
        ("IMPRESSION: Osteoarthritis.", "osteoarthritis"),
        ("FINDINGS: Hypertension.", "hypertension"),
    ],
)
def test_other_conditions_or_sentences_stay_present(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert not res.historical, (text, res)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Coronary artery disease status post bypass grafting.", "coronary artery disease"),
        ("Ulcerative colitis, s/p colectomy.", "ulcerative colitis"),
    ],
)
def test_a_lasting_condition_with_its_treatment_is_a_past_history_item(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.historical and res.chronic, (text, res)


def test_a_finding_with_its_treatment_stays_present() -> None:
    assert not assert_term("Pneumothorax status post chest tube placement.", "pneumothorax").historical


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


# -------------------------------------------------------------- durations: began long ago, still present
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Productive cough for three months.", "cough"),
        ("She has had diabetes for 12 years.", "diabetes"),
        ("Intermittent wheezing over the past several months.", "wheezing"),
        ("Asthma since early childhood.", "asthma"),
        ("Lifelong seizure disorder.", "seizure disorder"),
        ("Shortness of breath for years, worse today.", "shortness of breath"),
    ],
)
def test_a_condition_of_months_or_years_is_chronic(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.historical and res.chronic and not res.negated, (text, res)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Cough for 3 days.", "cough"),
        ("Fever for the past week.", "fever"),
        ("Right pleural effusion, unchanged for 2 years.", "pleural effusion"),  # present now
    ],
)
def test_a_short_or_unchanged_condition_is_not_historical(text: str, term: str) -> None:
    assert not assert_term(text, term).historical, text


def test_a_duration_reaches_only_its_own_condition() -> None:
    text = "Cough for 2 months and fever for 3 days."
    assert assert_term(text, "cough").historical
    assert not assert_term(text, "fever").historical


# -------------------------------------------------------------- a target's own time word
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("The patient is an ex-smoker.", "ex-smoker"),
        ("He is a former smoker.", "former smoker"),
        ("Prior stroke with residual left weakness.", "prior stroke"),
        ("He has a significant cardiac history.", "cardiac history"),
        ("Ex-smoker.", "smoker"),
    ],
)
def test_a_target_with_its_own_past_word_is_historical(text: str, term: str) -> None:
    assert assert_term(text, term).historical, text


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Chronic lymphocytic leukemia.", "chronic lymphocytic leukemia"),  # a disease name
        ("Old granulomatous disease.", "granulomatous disease"),  # CHRONIC, but by a cue outside
        ("History.", "history"),
    ],
)
def test_disease_names_and_bare_words_are_not_own_past_words(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert not res.triggers or "HISTORICAL:own word" not in res.triggers, (text, res)


# -------------------------------------------------------------- "unlikely to represent"
@pytest.mark.parametrize(
    ("text", "states"),
    [
        (
            "The left basilar opacity is unlikely to represent pneumonia.",
            {"opacity": "definite", "pneumonia": "negated"},
        ),
        ("Unlikely to represent a mass.", {"mass": "negated"}),
        ("The nodular density is thought unlikely to be a nodule.", {"nodule": "negated"}),
        ("Right pleural effusion is unlikely.", {"pleural_effusion": "negated"}),
    ],
)
def test_a_hypothesis_called_unlikely_is_negated_not_its_subject(text: str, states: dict[str, str]) -> None:
    assert {c: _state(text, c) for c in states} == states, text


# -------------------------------------------------------------- postposed possibility nouns
@pytest.mark.parametrize(
    "text",
    [
        "Superimposed pneumonia remains a possibility.",
        "Early pneumonia is another possibility.",
        "Pneumonia is a differential consideration.",
        "Aspiration pneumonia is a diagnostic consideration.",
    ],
)
def test_a_finding_called_a_possibility_is_possible(text: str) -> None:
    assert _state(text, "pneumonia") == "possible", text


# -------------------------------------------------------------- a differential that cannot be settled
@pytest.mark.parametrize(
    "text",
    [
        "Cannot differentiate atelectasis from pneumonia.",
        "We cannot distinguish between atelectasis and pneumonia on this study.",
        "It is difficult to distinguish atelectasis from pneumonia.",
        "Unable to differentiate atelectasis from early pneumonia.",
    ],
)
def test_an_unsettled_differential_hedges_both(text: str) -> None:
    assert (_state(text, "atelectasis"), _state(text, "pneumonia")) == ("possible", "possible"), text


# -------------------------------------------------------------- the state after a procedure
@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Status post CABG with mild cardiomegaly.", "cardiomegaly"),
        ("Status post chest tube removal with a small left apical pneumothorax.", "pneumothorax"),
        ("S/p right lobectomy with small right effusion.", "pleural_effusion"),
    ],
)
def test_the_state_after_a_procedure_is_present(text: str, concept: str) -> None:
    assert _state(text, concept) == "definite", text


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Remote history of tuberculosis with apical scarring.", "scarring"),
        ("History of heart failure with mild cardiomegaly.", "cardiomegaly"),
    ],
)
def test_what_a_history_comes_with_in_the_reading_is_present(text: str, concept: str) -> None:
    assert _state(text, concept) == "definite", text


def test_a_history_of_a_procedure_with_its_complication_stays_past_outside_the_reading() -> None:
    # a narrative past history (no report section): what the procedure came with is past too
    res = assert_term("Status post bypass grafting with postoperative mediastinitis.", "mediastinitis")
    assert res.historical


# -------------------------------------------------------------- a denied family history
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("No family history of colon cancer.", "colon cancer"),
        ("She denies any family history of breast or ovarian cancer.", "ovarian cancer"),
        ("Negative family history for lung cancer.", "lung cancer"),
    ],
)
def test_a_denied_family_history_is_negated(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.negated and res.experiencer == "other", (text, res)


def test_a_personal_history_after_a_denied_family_history_is_the_patients() -> None:
    res = assert_term("No family history of breast cancer, but a personal history of melanoma.", "melanoma")
    assert not res.negated and res.experiencer == "patient" and res.historical


# -------------------------------------------------------------- "worsening" as an adjective, other denials
@pytest.mark.parametrize(
    "text",
    [
        "No new or worsening effusion.",
        "No worsening effusion.",
        "The right pleural effusion has not developed.",
        "Findings are not compatible with a pleural effusion.",
    ],
)
def test_a_denied_worsening_finding_and_other_denials_negate(text: str) -> None:
    assert _state(text, "pleural_effusion") == "negated", text


@pytest.mark.parametrize(
    "text",
    [
        "No worsening of the right effusion.",  # the change is denied, the effusion is there
        "No significant worsening in the left effusion.",
        "Worsening left effusion.",
    ],
)
def test_a_denied_worsening_of_a_finding_keeps_it(text: str) -> None:
    assert _state(text, "pleural_effusion") == "definite", text
