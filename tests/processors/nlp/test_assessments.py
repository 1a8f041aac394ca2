import pytest

from processors.nlp.assessments import extract_assessments


@pytest.mark.parametrize(
    ("text", "system", "category", "span"),
    [
        ("IMPRESSION: Suspicious mass. BI-RADS 4A.", "BI-RADS", "4A", "BI-RADS 4A"),
        ("BIRADS: 2", "BI-RADS", "2", "BIRADS: 2"),
        ("BI-RADS category 4: suspicious.", "BI-RADS", "4", "BI-RADS category 4"),
        ("ACR BI-RADS Category 1 - Negative", "BI-RADS", "1", "ACR BI-RADS Category 1"),
        ("Overall assessment BI-RADS 0: incomplete, needs additional imaging.", "BI-RADS", "0", "BI-RADS 0"),
        ("Bi-Rads 4c, highly suspicious.", "BI-RADS", "4C", "Bi-Rads 4c"),
        ("BI-RADS® 6: known biopsy-proven malignancy.", "BI-RADS", "6", "BI-RADS® 6"),
        ("ASSESSMENT: Category 3: Probably benign.", "BI-RADS", "3", "Category 3"),
        ("Lung-RADS 4B. Suspicious.", "Lung-RADS", "4B", "Lung-RADS 4B"),
        (
            "Lung-RADS category 2S: benign, with significant incidental finding.",
            "Lung-RADS",
            "2S",
            "Lung-RADS category 2S",
        ),
        ("Lung-RADS v2022 category 4X.", "Lung-RADS", "4X", "Lung-RADS v2022 category 4X"),
        ("LUNG-RADS: 1", "Lung-RADS", "1", "LUNG-RADS: 1"),
        ("Segment 8 observation, LR-5.", "LI-RADS", "LR-5", "LR-5"),
        ("LI-RADS 4 observation in segment 6.", "LI-RADS", "LR-4", "LI-RADS 4"),
        ("Infiltrative mass, LR-TIV.", "LI-RADS", "LR-TIV", "LR-TIV"),
        ("LI-RADS category LR-M.", "LI-RADS", "LR-M", "LI-RADS category LR-M"),
        ("Peripheral zone lesion, PI-RADS 5.", "PI-RADS", "5", "PI-RADS 5"),
        ("PI-RADS v2.1 score 4 lesion.", "PI-RADS", "4", "PI-RADS v2.1 score 4"),
        ("Left lobe nodule, ACR TI-RADS TR4.", "TI-RADS", "TR4", "ACR TI-RADS TR4"),
        ("TI-RADS 3 nodule.", "TI-RADS", "TR3", "TI-RADS 3"),
        ("ACR TI-RADS: 4 points (TR4).", "TI-RADS", "TR4", "TR4"),
        ("Bosniak IIF cyst of the left kidney.", "Bosniak", "IIF", "Bosniak IIF"),
        ("Bosniak 2F cyst.", "Bosniak", "IIF", "Bosniak 2F"),
        ("Bosniak category III lesion.", "Bosniak", "III", "Bosniak category III"),
        ("Simple cyst (Bosniak I).", "Bosniak", "I", "Bosniak I"),
        ("O-RADS US 4 adnexal lesion.", "O-RADS", "4", "O-RADS US 4"),
        ("O-RADS MRI score 3.", "O-RADS", "3", "O-RADS MRI score 3"),
        ("IMPRESSION: BI-RADS 4B. SUSPICIOUS.", "BI-RADS", "4B", "BI-RADS 4B"),
        ("LUNG-RADS 2S", "Lung-RADS", "2S", "LUNG-RADS 2S"),
    ],
)
def test_categories(text, system, category, span):
    (a,) = extract_assessments(text)
    assert (a.system, a.category, a.text) == (system, category, span)
    assert text[a.start : a.end] == span


@pytest.mark.parametrize(
    "text",
    [
        "There are no BI-RADS 3 findings today.",
        "Previously BI-RADS 3.",
        "BI-RADS 3 on the prior study.",
        "Prior mammogram of 2023 (BI-RADS 2).",
        "TI-RADS 4 points.",
        "Vertebral body height loss at T12, L1 and L4.",
        "Bosniak classification was not applicable.",
        "Lung-RADS 7",
        "BI-RADS 9",
        "Total 3 points, LR at the left.",
        "The patient is 4 years post lumpectomy, category not assigned.",
        "O-RADS MRI 0",
    ],
)
def test_no_current_assessment(text):
    assert extract_assessments(text) == []


def test_prior_and_current():
    text = "Upgraded from BI-RADS 3 to BI-RADS 4B; previously Lung-RADS 3, now Lung-RADS 2."
    current = [(a.system, a.category) for a in extract_assessments(text)]
    assert current == [("BI-RADS", "4B"), ("Lung-RADS", "2")]
    every = [(a.category, a.prior) for a in extract_assessments(text, include_prior=True)]
    assert every == [("3", True), ("4B", False), ("3", True), ("2", False)]


def test_o_rads_variant_and_record():
    (a,) = extract_assessments("O-RADS US 5.")
    assert a.variant == "US"
    assert a.to_record() == {
        "system": "O-RADS",
        "category": "5",
        "text": "O-RADS US 5",
        "start": 0,
        "end": 11,
    }


def test_several_systems_in_order():
    text = "Right breast BI-RADS 2. Liver: LR-3. Kidney: Bosniak II."
    assert [(a.system, a.category) for a in extract_assessments(text)] == [
        ("BI-RADS", "2"),
        ("LI-RADS", "LR-3"),
        ("Bosniak", "II"),
    ]


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("Left renal lesion with enhancing nodular wall, Bosniak IV.", "Bosniak IV"),
        ("The upper pole cyst is Bosniak category IV and needs urology review.", "Bosniak category IV"),
        ("Complex cystic mass, Bosniak 4.", "Bosniak 4"),
        ("BOSNIAK CLASS IV", "BOSNIAK CLASS IV"),
    ],
)
def test_bosniak_iv(text, span):
    (a,) = extract_assessments(text)
    assert (a.system, a.category, text[a.start : a.end]) == ("Bosniak", "IV", span)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("No suspicious nodules; severe emphysema and coronary calcification. Lung-RADS S.", "Lung-RADS S"),
        ("Lung-RADS category S: large hiatal hernia noted.", "Lung-RADS category S"),
        ("LUNG-RADS: S", "LUNG-RADS: S"),
    ],
)
def test_lung_rads_s_alone(text, span):
    (a,) = extract_assessments(text)
    assert (a.system, a.category, text[a.start : a.end]) == ("Lung-RADS", "S", span)


def test_lung_rads_s_is_a_modifier_after_a_category_and_not_a_word_start():
    assert [a.category for a in extract_assessments("Lung-RADS 3 S, follow up the aneurysm.")] == ["3S"]
    assert extract_assessments("Lung-RADS scoring is deferred to the screening clinic.") == []
    assert extract_assessments("Lung-RADS: see the addendum.") == []
