"""Session 18 time classes (invented sentences only, never dev-set text), each with look-alike guards:

- a past-history label of one field inside a sentence ("Psychiatric history: depression", "Cardiac
  history: atrial fibrillation") and a history that "includes" a list are past history, as "medical
  history" is; not a history of the present illness;
- earlier stays in hospital: "previously admitted for", "hospitalized multiple times for", "prior
  hospitalizations for" are past; "admitted for" alone is the current stay;
- a past season or an earlier pregnancy dates an episode ("last winter", "during her last pregnancy");
- a disease "in remission" is past;
- "past" before a condition is a past cue as "prior" and "former" are ("past alcohol abuse"); not a
  span of time ("for the past 3 days", "over the past few weeks") nor a place ("past the carina");
- a diagnosis made before: "previously diagnosed X", "carries a diagnosis of X";
- "chronic" qualifies the finding it precedes; "with" starts another ("chronic pain with arthritis of
  the knee": the arthritis is not chronic by that word).
"""

from __future__ import annotations

import pytest

from processors.nlp import analyze, assert_term


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Psychiatric history: major depression and anxiety.", "anxiety"),
        ("Cardiac history: atrial fibrillation, on warfarin.", "atrial fibrillation"),
        ("Obstetric history: preeclampsia with both deliveries.", "preeclampsia"),
        ("Gynecologic history: uterine fibroids.", "uterine fibroids"),
        ("Transfusion history: a reaction to platelets.", "reaction"),
        ("His history includes gout and kidney stones.", "kidney stones"),
        ("The history is also significant for a seizure disorder.", "seizure disorder"),
    ],
)
def test_a_field_s_past_history_label_is_past(sentence: str, target: str) -> None:
    res = assert_term(sentence, target)
    assert res.historical, res.triggers
    assert not res.negated


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("She was previously admitted for diabetic ketoacidosis.", "diabetic ketoacidosis"),
        ("He has been hospitalized multiple times for sickle cell crisis.", "sickle cell crisis"),
        ("Prior hospitalizations for asthma exacerbation.", "asthma exacerbation"),
        ("Multiple admissions for alcohol withdrawal seizures.", "alcohol withdrawal seizures"),
        ("He was admitted repeatedly with decompensated heart failure.", "decompensated heart failure"),
    ],
)
def test_earlier_stays_in_hospital_are_past(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).historical


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("She had influenza last winter.", "influenza"),
        ("Last summer he fractured his wrist.", "fractured his wrist"),
        ("She developed gestational diabetes during her last pregnancy.", "gestational diabetes"),
        ("Preeclampsia in a previous pregnancy.", "Preeclampsia"),
        ("Hodgkin lymphoma, in remission.", "Hodgkin lymphoma"),
        ("Acute leukemia, now in complete remission.", "Acute leukemia"),
        ("Past alcohol abuse.", "alcohol abuse"),
        ("He has past intravenous drug use.", "intravenous drug use"),
        ("Previously diagnosed sarcoidosis.", "sarcoidosis"),
        ("She carries a diagnosis of multiple sclerosis.", "multiple sclerosis"),
    ],
)
def test_a_past_season_pregnancy_remission_or_diagnosis_is_past(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).historical, assert_term(sentence, target).triggers


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        # the current stay, a span of time up to now, a place
        ("He was admitted for pneumonia.", "pneumonia"),
        ("Admitted with chest pain this morning.", "chest pain"),
        ("Cough for the past 3 days.", "Cough"),
        ("Over the past few weeks she has had worsening dyspnea.", "dyspnea"),
        ("In the past 24 hours fever developed.", "fever"),
        ("The tube extends past the carina into the right bronchus.", "right bronchus"),
        ("He is past due for a colonoscopy for polyps.", "polyps"),
        ("She is in her first pregnancy with nausea.", "nausea"),
        ("Currently pregnant with vaginal bleeding.", "vaginal bleeding"),
        # the history of the present illness is the current story
        ("History of present illness: fever and cough.", "cough"),
        # "chronic" is the pain's, not the arthritis's; it still qualifies what it precedes
        ("Chronic pain with severe arthritis of the knee.", "arthritis"),
        ("COPD with an acute exacerbation.", "acute exacerbation"),
    ],
)
def test_look_alikes_stay_recent(sentence: str, target: str) -> None:
    res = assert_term(sentence, target)
    assert not res.historical, res.triggers


def test_chronic_still_qualifies_what_it_precedes() -> None:
    assert assert_term("Chronic back pain with radiculopathy.", "back pain").historical
    assert assert_term("Chronic obstructive lung disease.", "obstructive lung disease").historical


def test_findings_of_a_radiograph_keep_their_labels() -> None:
    # none of the new cues touches an imaging report's findings
    text = (
        "FINDINGS: The tip of the catheter is past the cavoatrial junction. Chronic interstitial changes "
        "with small right pleural effusion. Mild cardiomegaly.\nIMPRESSION: Small right effusion."
    )
    labels = analyze(text).chest_labels
    assert labels.get("Effusion") == "positive"
    assert labels.get("Cardiomegaly") == "positive"


# negation classes of the same session: "was ruled out for X" (the backward "was ruled out" hid the
# forward reading); a postposed "free" right after its finding ("pain free", "symptom-free")
@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("She was ruled out for acute coronary syndrome.", "acute coronary syndrome"),
        ("He had been ruled out for pulmonary embolism by CT.", "pulmonary embolism"),
        ("Now pain free after the injection.", "pain"),
        ("She has been seizure free since starting levetiracetam.", "seizure"),
        ("Remains symptom-free.", "symptom"),
    ],
)
def test_ruled_out_for_and_postposed_free_negate(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).negated, assert_term(sentence, target).triggers


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("There is free air under the right hemidiaphragm.", "free air"),
        ("Pneumoperitoneum with free air.", "Pneumoperitoneum"),
        ("Effusion free-flowing on the decubitus view.", "Effusion"),
        ("Ascites with free fluid in the pelvis.", "Ascites"),
        ("Myocardial infarction could not be ruled out for certain.", "Myocardial infarction"),
    ],
)
def test_free_and_ruled_out_look_alikes_do_not_negate(sentence: str, target: str) -> None:
    assert not assert_term(sentence, target).negated, assert_term(sentence, target).triggers


# more ways to date an episode: "long ago", "years back", "two years prior" (not after a study noun nor
# in the imaging sections, where the time is the study's); a postposed "previously"; an earlier stay in
# hospital ("during his last admission", "on a prior hospitalization": longer than the pseudo "on a
# prior" of "seen on a prior CT"); "post" before a procedure, as "status post"
@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Tonsillectomy long ago.", "Tonsillectomy"),
        ("She had shingles some time ago.", "shingles"),
        ("Gallstones a few years back.", "Gallstones"),
        ("Pancreatitis, several years prior.", "Pancreatitis"),
        ("She had a miscarriage previously.", "miscarriage"),
        ("During her last admission she developed C. difficile colitis.", "C. difficile colitis"),
        ("He had alcohol withdrawal on a prior hospitalization.", "alcohol withdrawal"),
        ("She is post thyroidectomy.", "thyroidectomy"),
        ("He is two years post kidney transplant.", "kidney transplant"),
    ],
)
def test_more_dated_episodes_are_past(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).historical, assert_term(sentence, target).triggers


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Post contrast images show rim enhancement.", "rim enhancement"),
        ("Pain post injection at the left deltoid.", "Pain"),
        ("FINDINGS: The nodule, seen on CT 2 years prior, is unchanged.", "nodule"),
        ("FINDINGS: Mild cardiomegaly, as on the radiograph obtained 3 months before.", "cardiomegaly"),
        ("The effusion was seen on a prior radiograph and is again seen.", "effusion"),
        ("FINDINGS: Heart size was normal previously. Small effusion.", "effusion"),
        # "previously" before the word it qualifies is no postposed cue; a span of hours is now
        ("Cough, previously productive, now dry.", "Cough"),
        ("Pain in the past few hours.", "Pain"),
    ],
)
def test_study_dates_and_other_posts_are_not_past(sentence: str, target: str) -> None:
    assert not assert_term(sentence, target).historical, assert_term(sentence, target).triggers


# a present-tense predicate joined by "and" to a past one is the same subject's, however long the past
# one ("was seen on the prior radiograph and is again seen"); not a bare adverb that starts another
# clause ("and currently has", "and remains on")
@pytest.mark.parametrize(
    "sentence",
    [
        "The effusion was seen on a prior radiograph and is again seen.",
        "The right effusion was seen on the prior outside radiograph and has decreased in size.",
        "The effusion was seen on the previous study and is unchanged.",
    ],
)
def test_a_joined_present_predicate_keeps_the_finding_current(sentence: str) -> None:
    res = assert_term(sentence, "effusion")
    assert not res.historical, res.triggers


def test_a_joined_present_predicate_keeps_the_label() -> None:
    text = "FINDINGS: A small left pleural effusion was seen on the prior radiograph and is again seen."
    assert analyze(text).chest_labels.get("Effusion") == "positive"


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("History of lymphoma in 2004 and currently has pneumonia.", "lymphoma"),
        ("She had breast cancer in 2001 and remains on tamoxifen.", "breast cancer"),
    ],
)
def test_another_clause_after_and_leaves_the_past(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).historical


# experiencer: relatives named as a group or by degree, before or after the condition; a relative who
# tells is the informant ("per his wife"); "relative" as an adjective is no relative
@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Ovarian cancer in a first-degree relative.", "Ovarian cancer"),
        ("Several family members with type 1 diabetes.", "type 1 diabetes"),
        ("Glaucoma in his brother.", "Glaucoma"),
        ("Relatives with sickle cell disease.", "sickle cell disease"),
    ],
)
def test_relatives_are_the_experiencer(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).experiencer == "other"


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("Per his daughter, he has been wheezing at night.", "wheezing"),
        ("According to her son she fainted twice.", "fainted"),
        ("Relative lucency of the right hemithorax.", "lucency"),
        ("Relative sparing of the lung bases with centrilobular emphysema.", "emphysema"),
    ],
)
def test_informants_and_the_adjective_relative_leave_the_patient(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).experiencer == "patient", assert_term(sentence, target).triggers


# a diagnosis never made and a search that found nothing: "has never been diagnosed with X" ("with"
# ends a plain negation, so the phrase carries its own), "was unable to find any evidence of X"
@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("She has never been diagnosed with asthma.", "asthma"),
        ("He was never diagnosed with hepatitis.", "hepatitis"),
        ("The examiner was unable to find any evidence of a hernia.", "hernia"),
        ("We failed to identify a bleeding source.", "bleeding source"),
    ],
)
def test_a_diagnosis_never_made_and_an_empty_search_negate(sentence: str, target: str) -> None:
    assert assert_term(sentence, target).negated, assert_term(sentence, target).triggers


def test_a_diagnosis_made_later_is_not_denied_beyond_its_clause() -> None:
    res = assert_term("He was not diagnosed with lupus until 2010; he has arthritis.", "arthritis")
    assert not res.negated
