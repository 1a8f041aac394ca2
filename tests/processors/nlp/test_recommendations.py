import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.nlp.recommendations import extract_recommendations, parse_interval


@pytest.mark.parametrize(
    ("text", "kind", "modality", "lo", "hi", "guideline"),
    [
        (
            "Recommend follow-up CT in 3-6 months per Fleischner Society guidelines.",
            "imaging_followup",
            "CT",
            90,
            180,
            "Fleischner",
        ),
        ("Follow-up chest CT in 6 weeks to document resolution.", "imaging_followup", "CT", 42, 42, None),
        ("Recommend MRI of the pelvis in one year.", "imaging_followup", "MR", 365, 365, None),
        ("Annual screening mammography is recommended.", "imaging_followup", "MG", 365, 365, None),
        ("Follow-up in 12 months is suggested.", "imaging_followup", None, 365, 365, None),
        ("Short-interval follow-up diagnostic mammogram.", "imaging_followup", "MG", 90, 180, None),
        ("Recommend renal ultrasound in 3 to 6 months.", "imaging_followup", "US", 90, 180, None),
        ("A 6 month follow up is advised.", "imaging_followup", None, 180, 180, None),
        ("Follow-up within 6 weeks.", "imaging_followup", None, 0, 42, None),
        ("Consider MRI for further characterization.", "imaging_followup", "MR", None, None, None),
        ("Recommend repeat chest radiograph after treatment.", "imaging_followup", "XR", None, None, None),
        ("Low-dose CT in 12 months per Lung-RADS.", "imaging_followup", "CT", 365, 365, "Lung-RADS"),
        (
            "PET/CT could be performed for staging if clinically indicated.",
            "imaging_followup",
            "PET",
            None,
            None,
            None,
        ),
        ("Correlate clinically.", "clinical_correlation", None, None, None, None),
        ("Clinical correlation recommended.", "clinical_correlation", None, None, None, None),
        ("Correlate with physical examination.", "clinical_correlation", None, None, None, None),
        ("Tissue sampling is recommended.", "biopsy", None, None, None, None),
        (
            "Ultrasound-guided biopsy is recommended per ACR TI-RADS.",
            "biopsy",
            "US",
            None,
            None,
            "ACR TI-RADS",
        ),
        ("Per ACR TI-RADS, FNA is recommended.", "biopsy", None, None, None, "ACR TI-RADS"),
        ("Comparison with prior outside studies would be helpful.", "comparison", None, None, None, None),
        ("Correlate with prior imaging if available.", "comparison", None, None, None, None),
        ("Surgical consultation is recommended.", "consultation", None, None, None, None),
        ("Referral to a vascular surgeon is advised.", "consultation", None, None, None, None),
        ("Recommend antibiotic therapy.", "other", None, None, None, None),
        ("No follow-up imaging is recommended.", "no_followup", None, None, None, None),
        (
            "No further follow-up is needed per Fleischner guidelines.",
            "no_followup",
            None,
            None,
            None,
            "Fleischner",
        ),
        ("This finding does not require follow-up.", "no_followup", None, None, None, None),
        ("Follow-up of the pulmonary nodule is not needed.", "no_followup", None, None, None, None),
        (
            "Per Fleischner Society guidelines, no routine follow-up is recommended.",
            "no_followup",
            None,
            None,
            None,
            "Fleischner",
        ),
        (
            "RECOMMEND FOLLOW-UP CT IN 3 MONTHS PER FLEISCHNER.",
            "imaging_followup",
            "CT",
            90,
            90,
            "Fleischner",
        ),
    ],
)
def test_single_recommendation(text, kind, modality, lo, hi, guideline):
    (r,) = extract_recommendations(text)
    assert r.kind == kind
    assert r.modality == modality
    assert (r.interval_days_min, r.interval_days_max) == (lo, hi)
    assert r.guideline == guideline
    assert text[r.start : r.end] == r.text


@pytest.mark.parametrize(
    "text",
    [
        "COMPARISON: CT chest 1/2/2023.",
        "Comparison to the prior CT shows a stable nodule.",
        "This follow-up CT shows a stable nodule.",
        "Findings suggest pneumonia.",
        "The lesion is considered benign.",
        "Status post biopsy of the left breast.",
        "CT 3 months ago showed the nodule.",
        "Biopsy-proven carcinoma of the right breast.",
        "Known malignancy, prior surgical consultation.",
        "No acute cardiopulmonary process.",
    ],
)
def test_no_recommendation(text):
    assert extract_recommendations(text) == []


def test_two_kinds_in_one_sentence():
    text = "Recommend clinical correlation and follow-up chest CT in 3 months."
    recs = extract_recommendations(text)
    assert [(r.kind, r.text) for r in recs] == [
        ("clinical_correlation", "Recommend clinical correlation"),
        ("imaging_followup", "follow-up chest CT in 3 months"),
    ]
    assert recs[1].interval_days_min == 90
    assert recs[0].interval_days_min is None


def test_sentences_and_offsets():
    text = (
        "Stable 4 mm nodule. No follow-up is needed.\nRight adrenal nodule; recommend adrenal CT in 1 year."
    )
    s1 = text.index("No")
    s2 = text.index("Right")
    recs = extract_recommendations(text, [(0, s1 - 1), (s1, s2 - 1), (s2, len(text))])
    assert [(r.kind, r.sentence) for r in recs] == [("no_followup", 1), ("imaging_followup", 2)]
    assert recs[1].interval_days_max == 365
    assert recs[1].to_record()["kind"] == "imaging_followup"
    assert set(recs[1].to_record()) == {
        "text",
        "start",
        "end",
        "kind",
        "modality",
        "interval_days_min",
        "interval_days_max",
        "guideline",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 3-6 months", (90, 180)),
        ("in three to six months", (90, 180)),
        ("in 2 weeks", (14, 14)),
        ("in a year", (365, 365)),
        ("in 18 months", (540, 540)),
        ("in 24 months", (730, 730)),
        ("biennial", (730, 730)),
        ("every 6 months", (180, 180)),
        ("3-month follow-up", (90, 90)),
        ("in 10 days", (10, 10)),
        ("6 months ago", None),
        ("2 views", None),
    ],
)
def test_parse_interval(text, expected):
    assert parse_interval(text) == expected


_TOKENS = [
    "recommend",
    "follow-up",
    "CT",
    "MRI",
    "in",
    "3-6",
    "months",
    "no",
    "further",
    "is",
    "needed",
    "biopsy",
    "status",
    "post",
    "correlate",
    "clinically",
    "annual",
    "within",
    "6",
    "weeks",
    ".",
    ",",
    "and",
    "\n",
    "İ",
    "Fleischner",
    "per",
    "prior",
    "comparison",
    "with",
    "would",
    "be",
    "helpful",
    "US-guided",
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30))
def test_offsets_always_consistent(tokens):
    text = " ".join(tokens)
    for r in extract_recommendations(text):
        assert r.text and text[r.start : r.end] == r.text
        assert r.interval_days_min is None or r.interval_days_min <= (r.interval_days_max or 0)
