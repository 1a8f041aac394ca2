"""Classes of wording for reports the engine has not seen (issue 14, NLP 0.6.5): a relative clause of
resolution ("X, which has since resolved"), a negation of seeing limited to one radiographic view ("not
identified on the lateral view": seen on the other, so there), labelled answers ("Pneumothorax: no."),
and a hedge that belongs to its own conjunct ("cardiomegaly and possible left lower lobe pneumonia").

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest
from held_out_helpers import chest_label as _label
from held_out_helpers import finding_state as _state

from processors.nlp import analyze, assert_term
from processors.nlp.context import load_rules
from processors.nlp.sentences import SentenceSplitter


# -------------------------------------------------------------- a relative clause of resolution
@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("The left pleural effusion, which has since resolved, was drained last week.", "pleural_effusion"),
        ("Right middle lobe pneumonia which has resolved.", "pneumonia"),
        ("Bibasilar atelectasis, which has now cleared.", "atelectasis"),
        ("A small apical pneumothorax that has completely resolved.", "pneumothorax"),
        ("Perihilar edema, which is no longer seen.", "pulmonary_edema"),
        ("The lingular consolidation, which has disappeared, was likely infectious.", "consolidation"),
    ],
)
def test_a_relative_clause_of_resolution_negates_its_antecedent(text: str, concept: str) -> None:
    assert _state(text, concept) == "negated", text


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Left basilar consolidation, which has partially resolved.", "consolidation"),
        ("Right pleural effusion, which has not resolved.", "pleural_effusion"),
        ("Right pleural effusion, which is unchanged.", "pleural_effusion"),
    ],
)
def test_a_relative_clause_that_leaves_the_finding_keeps_it(text: str, concept: str) -> None:
    assert _state(text, concept) == "definite", text


def test_the_relative_clause_still_ends_an_earlier_scope() -> None:
    # "which" ends every scope: the negation before it reaches no finding after the clause
    text = "No pneumothorax, which was seen on the prior study has resolved; mild cardiomegaly."
    assert _label(text, "Cardiomegaly") == "positive"


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Interval improvement and near resolution of the pulmonary edema.", "pulmonary_edema"),
        ("Near total resolution of the right pleural effusion.", "pleural_effusion"),
        ("Near-complete clearing of the left lower lobe consolidation.", "consolidation"),
    ],
)
def test_near_resolution_leaves_the_finding(text: str, concept: str) -> None:
    # like "partial / incomplete resolution": what is left is there
    assert _state(text, concept) == "definite", text


def test_relative_clause_rules_are_backward_negations_that_also_terminate() -> None:
    rules = [r for r in load_rules() if r.phrase == "which has since resolved"]
    assert {(r.category, r.direction) for r in rules} == {
        ("NEGATED_EXISTENCE", "backward"),
        ("TERMINATE", "terminate"),
    }


# ------------------------------------------------ a negation of seeing limited to one view
@pytest.mark.parametrize(
    ("text", "concept"),
    [
        (
            "A nodule at the left base is seen on the frontal view, not identified on the lateral view.",
            "nodule",
        ),
        ("The right hilar nodule is not visualized on the lateral projection.", "nodule"),
        ("Small left pleural effusion, not seen on the PA view.", "pleural_effusion"),
        ("The lingular opacity is not appreciated on the lateral radiograph.", "opacity"),
    ],
)
def test_a_finding_one_view_does_not_show_is_there(text: str, concept: str) -> None:
    assert _state(text, concept) == "definite", text


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Pleural effusion is not seen on the frontal or lateral views.", "pleural_effusion"),
        ("Pneumothorax is not seen on the PA and lateral radiographs.", "pneumothorax"),
        ("Pneumothorax is not seen on this study.", "pneumothorax"),
        ("No pneumothorax is seen on the frontal view.", "pneumothorax"),
        ("The nodule is no longer seen on the frontal view.", "nodule"),
    ],
)
def test_a_negation_over_both_views_or_the_study_still_negates(text: str, concept: str) -> None:
    assert _state(text, concept) == "negated", text


def test_the_view_limit_reaches_assert_term() -> None:
    assert not assert_term("The nodule is not identified on the lateral view.", "nodule").negated
    assert assert_term("The nodule is not identified on this examination.", "nodule").negated


# ------------------------------------------------------------------------ labelled answers
@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Pneumothorax: no.", "pneumothorax"),
        ("Pleural effusion: no. Atelectasis: mild bibasilar.", "pleural_effusion"),
        ("Pneumothorax - no; effusion - small.", "pneumothorax"),
        ("Pneumothorax: no evidence.", "pneumothorax"),
        ("Consolidation: no definite.", "consolidation"),
    ],
)
def test_a_bare_negative_answer_negates_its_label(text: str, concept: str) -> None:
    assert _state(text, concept) == "negated", text


def test_answers_on_their_own_lines() -> None:
    r = analyze("FINDINGS:\nPneumothorax: no\nEdema: no\nCardiomegaly: yes\n")
    assert r.chest_labels["Pneumothorax"] == "negative"
    assert r.chest_labels["Edema"] == "negative"
    assert r.chest_labels["Cardiomegaly"] == "positive"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Pleural effusion: no. Atelectasis: mild bibasilar.", "Atelectasis"),  # "no." ended its sentence
        ("Right effusion: no change, small.", "Effusion"),  # "no change" is no answer
        ("Right effusion: no pneumothorax.", "Effusion"),  # "no" reads forward here, not back
        ("Heart: no. Cardiomegaly is however present on the lateral view.", "Cardiomegaly"),
    ],
)
def test_an_answer_reaches_only_its_label(text: str, label: str) -> None:
    assert _label(text, label) == "positive", text


def test_no_before_a_number_is_still_an_abbreviation() -> None:
    splitter = SentenceSplitter()
    text = "Catheter tip at level No. 5 of the chart. Pneumothorax: no. Effusion: small."
    assert [text[a:b] for a, b in splitter.split(text)] == [
        "Catheter tip at level No. 5 of the chart.",
        "Pneumothorax: no.",
        "Effusion: small.",
    ]


def test_every_answer_phrase_is_also_a_trigger_elsewhere() -> None:
    # an answer-only phrase would hide the shorter triggers inside it wherever it is no answer
    rules = load_rules()
    answers = {r.phrase for r in rules if r.answer}
    others = {r.phrase for r in rules if not r.answer}
    assert answers and answers <= others


# ------------------------------------------------------------------ a hedge per conjunct
@pytest.mark.parametrize(
    ("text", "definite", "hedged"),
    [
        ("Cardiomegaly and possible left lower lobe pneumonia.", "cardiomegaly", "pneumonia"),
        ("Cardiomegaly with possible small right pleural effusion.", "cardiomegaly", "pleural_effusion"),
        ("Mild cardiomegaly, possible small left effusion.", "cardiomegaly", "pleural_effusion"),
        ("Hyperinflation and possible early right basilar infiltrate.", "hyperinflation", "infiltrate"),
        ("Mild cardiomegaly and suspected right lower lobe pneumonia.", "cardiomegaly", "pneumonia"),
        ("Hyperexpanded lungs from emphysema and possible right hilar mass.", "emphysema", "mass"),
    ],
)
def test_a_prenominal_hedge_belongs_to_its_own_conjunct(text: str, definite: str, hedged: str) -> None:
    assert _state(text, definite) == "definite", text
    assert _state(text, hedged) == "possible", text


@pytest.mark.parametrize(
    "text",
    [
        "Left lower lobe pneumonia possible.",  # postposed: reads back as before
        "Small left effusion is possible.",
    ],
)
def test_a_postposed_hedge_still_reads_back(text: str) -> None:
    concept = "pneumonia" if "pneumonia" in text else "pleural_effusion"
    assert _state(text, concept) == "possible", text
