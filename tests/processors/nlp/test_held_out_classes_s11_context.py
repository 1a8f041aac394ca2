"""Classes of wording for reports the engine has not seen (issue 14, session 11, ConText): a past episode
dated by a year ("DVT in 2003", "stroke in March 2004", "diabetes since 2001"), a past condition after
"with prior / previous" ("a man with previous MI"), a past-tense cue carried by an adverb of the past
("she previously had a stroke"), a habit given up ("he used to smoke", "quit smoking"), a time of life
long past ("as a teenager", "at age 40", "in the 1990s"), a differential the reader cannot settle
written with the first alternative as its subject ("atelectasis cannot be distinguished from pneumonia":
both possible), and a relative who reports what the patient has ("mother reports that he has a fever":
the patient's). Each class has sentences that must stay as they were: a date that names a prior study,
a narrative of the current episode ("he had a fever", "was found to have a PE"), a comparison "with prior
study", an advice to quit.

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest
from held_out_helpers import finding_state as _state

from processors.nlp import assert_term


# -------------------------------------------------------------- a past episode dated by a year
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("He had a DVT in 2003.", "DVT"),
        ("DVT of the left calf in 2003, treated with warfarin for six months.", "DVT"),
        ("Stroke in March 2004 with residual right hand weakness.", "stroke"),
        ("She had a cerebellar stroke in May of 2011.", "cerebellar stroke"),
        ("He underwent a laparoscopic appendectomy in 1987.", "laparoscopic appendectomy"),
        ("Breast cancer in Sept 2015, treated with lumpectomy and radiation.", "breast cancer"),
        ("PAST MEDICAL HISTORY: Nephrolithiasis in 1999.", "nephrolithiasis"),
    ],
)
def test_a_dated_past_episode_is_historical(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.historical and not res.negated, (text, res)


def test_a_condition_since_a_year_is_chronic() -> None:
    res = assert_term("Type 2 diabetes since 2001, on metformin.", "type 2 diabetes")
    assert res.historical and res.chronic, res


@pytest.mark.parametrize(
    ("text", "term"),
    [
        # the date names a prior study, not the condition
        ("A small nodule was seen on CT in 2005.", "nodule"),
        ("A 4 mm nodule on a chest radiograph performed in 2019.", "nodule"),
        ("FINDINGS: Right lower lobe nodule, also present in 2012, now 6 mm.", "nodule"),
        ("IMPRESSION: Left effusion in 2020 on comparison.", "effusion"),
        # a dated opening of the current story reads forward, and dated years do not
        ("She was admitted in March 2023 with pneumonia.", "pneumonia"),
        ("Fever and cough for three days.", "cough"),
    ],
)
def test_a_date_of_a_study_or_of_the_current_story_is_not_historical(text: str, term: str) -> None:
    assert not assert_term(text, term).historical, text


# -------------------------------------------------------------- "with prior / previous X"
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("A 64-year-old man with previous MI presents with chest pain.", "MI"),
        ("Woman with prior stroke, now with new left facial droop.", "stroke"),
        ("Patient with a prior pulmonary embolism.", "pulmonary embolism"),
        ("Elderly man with remote MI.", "MI"),
        ("Child with previous pyeloplasty.", "pyeloplasty"),
    ],
)
def test_a_condition_after_with_prior_is_historical(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.historical, (text, res)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Compared with previous study, there is a new left effusion.", "effusion"),
        ("Correlate with prior studies of the abdomen for the hernia.", "hernia"),
        ("Comparison with prior chest radiograph shows increasing atelectasis.", "atelectasis"),
        ("The effusion is unchanged compared with prior.", "effusion"),
        ("A 64-year-old man with previous MI presents with chest pain.", "chest pain"),
    ],
)
def test_a_comparison_with_a_prior_study_is_no_past_cue(text: str, term: str) -> None:
    assert not assert_term(text, term).historical, text


# -------------------------------------------------------------- an adverb of the past, a habit given up
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("She previously had a stroke.", "stroke"),
        ("He had previously undergone a cholecystectomy.", "cholecystectomy"),
        ("He previously underwent a Whipple procedure.", "Whipple procedure"),
        ("She previously suffered an anterior myocardial infarction.", "myocardial infarction"),
        ("He used to smoke two packs a day.", "smoke"),
        ("The patient used to drink heavily.", "drink"),
        ("He quit smoking.", "smoking"),
        ("She quit using cocaine.", "cocaine"),
    ],
)
def test_an_adverb_of_the_past_or_a_habit_given_up_is_historical(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.historical, (text, res)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        # a narrative of the current episode (ConText's annotation: recent)
        ("He had a fever of 39 in the emergency department.", "fever"),
        ("He was found to have a PE on this admission.", "PE"),
        ("She presented with chest pain.", "chest pain"),
        ("She has had progressive shortness of breath.", "shortness of breath"),
        # advice, or a habit not given up
        ("He was advised to quit smoking.", "smoking"),
        ("He has not quit smoking.", "smoking"),
        ("Contrast was used to evaluate for an abscess.", "abscess"),
        ("A previously healthy child with cough and fever.", "cough"),
    ],
)
def test_the_current_episode_and_advice_stay_recent(text: str, term: str) -> None:
    assert not assert_term(text, term).historical, text


# -------------------------------------------------------------- a time of life long past
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Pulmonary embolism as a teenager.", "pulmonary embolism"),
        ("At age 40 he had a pulmonary embolism.", "pulmonary embolism"),
        ("Rheumatic fever at the age of 12.", "rheumatic fever"),
        ("Hepatitis A in the 1990s.", "hepatitis A"),
        ("Tonsillectomy as a young adult.", "tonsillectomy"),
    ],
)
def test_a_time_of_life_long_past_is_historical(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.historical, (text, res)


def test_an_age_in_the_reading_of_the_images_is_no_past_cue() -> None:
    text = "FINDINGS: A buckle fracture of the distal radius at age 9 is typical of a fall."
    assert not assert_term(text, "buckle fracture").historical


# -------------------------------------------------------------- an unsettled differential, A as its subject
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Atelectasis cannot be distinguished from pneumonia.", "atelectasis"),
        ("Atelectasis cannot be distinguished from pneumonia.", "pneumonia"),
        ("The left basilar opacity could not be differentiated from consolidation.", "opacity"),
        ("Scarring is indistinguishable from active infection.", "scarring"),
        ("Atelectasis and pneumonia cannot be differentiated on this study.", "atelectasis"),
        ("Atelectasis and pneumonia cannot be differentiated on this study.", "pneumonia"),
        ("Pleural thickening is difficult to distinguish from a small effusion.", "pleural thickening"),
    ],
)
def test_both_alternatives_of_an_unsettled_differential_are_possible(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.uncertain and res.certainty == "possible" and not res.negated, (text, res)


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Atelectasis cannot be distinguished from pneumonia.", "atelectasis"),
        ("Atelectasis cannot be distinguished from pneumonia.", "pneumonia"),
        ("Atelectasis and pneumonia cannot be differentiated.", "atelectasis"),
        ("Right basilar atelectasis is indistinguishable from pneumonia.", "atelectasis"),
    ],
)
def test_a_finding_in_an_unsettled_differential_is_possible(text: str, concept: str) -> None:
    assert _state(text, concept) == "possible", text


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        # a separate clause or sentence keeps its own reading
        ("Mild cardiomegaly; atelectasis cannot be distinguished from pneumonia.", "cardiomegaly"),
        ("No effusion. Atelectasis and pneumonia cannot be differentiated.", "pleural_effusion"),
    ],
)
def test_a_differential_does_not_reach_another_clause(text: str, concept: str) -> None:
    assert _state(text, concept) in ("definite", "negated"), text
    assert _state(text, concept) != "possible", text


# -------------------------------------------------------------- a relative who reports is the informant
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Mother reports that he has had a fever since last night.", "fever"),
        ("Per mother, the child has had wheezing for two days.", "wheezing"),
        ("Father states the baby has been vomiting after every feed.", "vomiting"),
        ("History provided by the patient's mother: bilateral hydronephrosis on prenatal ultrasound.",
         "hydronephrosis"),
        ("Parents noticed a lump in the left neck.", "lump"),
    ],
)
def test_a_relative_who_reports_is_the_informant(text: str, term: str) -> None:
    res = assert_term(text, term)
    assert res.experiencer == "patient", (text, res)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("His mother has type 1 diabetes.", "type 1 diabetes"),
        ("Father with a history of kidney stones.", "kidney stones"),
        ("Mother reports a family history of asthma.", "asthma"),
    ],
)
def test_a_relative_with_a_condition_is_still_the_experiencer(text: str, term: str) -> None:
    assert assert_term(text, term).experiencer == "other", text
