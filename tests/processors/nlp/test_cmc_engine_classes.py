"""ConText classes that the site classifier (processors/ml) reads in short clinical histories and
impressions: negated evidence "is seen to suggest X", hedged etiologies, "cannot be entirely ruled out",
past episodes ("three weeks ago", "as an infant").

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest

from processors.nlp import analyze, assert_term


# -------------------------------------------------- negated evidence "is seen to suggest X" negates X
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("No focal airspace opacity is seen to suggest bacterial pneumonia.", "pneumonia"),
        ("No pleural fluid is identified to indicate empyema.", "empyema"),
        ("No air-fluid level is present to support a lung abscess.", "abscess"),
        ("No patchy infiltrates are seen to represent pneumonia.", "pneumonia"),
    ],
)
def test_negated_evidence_negates_what_it_would_suggest(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert r.negated, r.triggers


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Patchy opacity is seen to suggest early pneumonia.", "pneumonia"),
        ("No effusion. Right basilar opacity is noted to suggest aspiration pneumonia.", "pneumonia"),
    ],
)
def test_positive_evidence_is_not_negated(text: str, term: str) -> None:
    assert not assert_term(text, term).negated


# ---------------------------------- "cannot be (entirely) ruled out" leaves the finding possible, not negated
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Early pneumonia cannot be entirely ruled out.", "pneumonia"),
        ("A small effusion cannot be totally ruled out on this view.", "effusion"),
        ("Aspiration could not be completely excluded.", "aspiration"),
        ("A retained foreign body is not fully excluded.", "foreign body"),
        ("We cannot definitely exclude a subtle fracture.", "fracture"),
    ],
)
def test_cannot_be_ruled_out_is_possible(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert not r.negated and r.certainty == "possible", r.triggers


# ------------------------ a hedge about the cause hedges the cause, not the finding before it
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Reactive airway disease, likely of viral etiology.", "reactive airway disease"),
        ("Bronchiolitis, most likely viral in origin.", "bronchiolitis"),
        ("Right lower lobe pneumonia, likely bacterial.", "pneumonia"),
        ("Diffuse interstitial markings, likely infectious.", "interstitial markings"),
    ],
)
def test_hedged_etiology_leaves_the_finding_definite(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert not r.negated and r.certainty == "definite", r.triggers


@pytest.mark.parametrize(
    ("text", "term", "certainty"),
    [
        ("Perihilar opacity, likely viral pneumonitis.", "pneumonitis", "probable"),
        ("Hyperinflation, possibly due to bronchiolitis.", "bronchiolitis", "possible"),
    ],
)
def test_hedged_etiology_hedges_the_cause(text: str, term: str, certainty: str) -> None:
    assert assert_term(text, term).certainty == certainty


# ------------------------------------------------- a past episode dated before or after the finding
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Bronchiolitis as an infant, now with wheezing.", "bronchiolitis"),
        ("In infancy, he had a urinary tract infection.", "urinary tract infection"),
        ("Last month pneumonia, now fever.", "pneumonia"),
        ("Four years ago, fracture of the left radius.", "fracture"),
    ],
)
def test_dated_episode_is_historical(text: str, term: str) -> None:
    assert assert_term(text, term).historical


def test_dated_episode_does_not_reach_the_current_complaint() -> None:
    assert not assert_term("Bronchiolitis as an infant, now with wheezing.", "wheezing").historical


@pytest.mark.parametrize("when", ["in 2004", "last week"])
def test_clinical_history_dates_a_past_episode(when: str) -> None:
    report = f"CLINICAL HISTORY: Pneumonia {when}, now cough.\n\nIMPRESSION: Normal chest."
    (f,) = [f for f in analyze(report).findings if f.concept == "pneumonia"]
    assert f.section == "history" and f.historical, f.triggers


# ------------------- a hedge inside a coordinated list of locations qualifies its conjunct, not the finding
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Right middle and probable right lower lobe pneumonia.", "pneumonia"),
        ("Left upper lobe and possible lingular consolidation.", "consolidation"),
        ("Right and questionable left basilar atelectasis.", "atelectasis"),
    ],
)
def test_hedged_conjunct_leaves_the_finding_definite(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert not r.negated and r.certainty == "definite", r.triggers


def test_hedge_before_a_coordinated_finding_still_hedges() -> None:
    r = assert_term("Small effusion and probable right lower lobe pneumonia.", "pneumonia")
    assert r.certainty == "probable"
