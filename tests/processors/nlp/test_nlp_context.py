"""ConText on tricky sentences (written for these tests; not from any report collection)."""

from __future__ import annotations

import pytest

from processors.nlp import analyze, assert_term


def status(text: str, term: str) -> tuple[bool, bool, bool, bool, str]:
    r = assert_term(text, term)
    return r.negated, r.uncertain, r.historical, r.hypothetical, r.experiencer


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("No pneumothorax.", "pneumothorax"),
        ("There is no focal consolidation, pleural effusion or pneumothorax.", "pneumothorax"),
        ("There is no focal consolidation, pleural effusion or pneumothorax.", "pleural effusion"),
        ("The lungs are clear without effusion.", "effusion"),
        ("Negative for pneumothorax.", "pneumothorax"),
        ("A pneumothorax is not seen.", "pneumothorax"),
        ("The previously noted effusion has resolved.", "effusion"),
        ("FINDINGS: No acute infarct.", "infarct"),
        ("Pneumothorax: absent.", "pneumothorax"),
        ("No evidence of free air under the diaphragm.", "free air"),
        ("Neither effusion nor edema.", "edema"),
    ],
)
def test_negated(text: str, term: str) -> None:
    assert status(text, term)[0] is True


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("No change in the small left effusion.", "effusion"),  # pseudo "no change"
        ("No significant interval change in the right upper lobe nodule.", "nodule"),
        ("Not only atelectasis but also a small effusion.", "atelectasis"),  # pseudo "not only"
        ("No increase in the size of the nodule.", "nodule"),  # pseudo "no increase in"
        ("No pneumothorax, but a small left effusion is present.", "effusion"),  # termination "but"
        ("No pneumothorax; however, there is a small effusion.", "effusion"),  # termination "however"
        ("Heart is enlarged and there is a small effusion.", "effusion"),
        ("Cardiomegaly without pulmonary edema.", "cardiomegaly"),  # "without" looks forward only
        ("Partially resolved right lower lobe pneumonia.", "pneumonia"),
    ],
)
def test_not_negated(text: str, term: str) -> None:
    assert status(text, term)[0] is False


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Pneumonia cannot be excluded.", "pneumonia"),
        ("A small effusion cannot be excluded on this portable view.", "effusion"),
        ("Probable right basilar atelectasis.", "atelectasis"),
        ("Findings suggestive of early pneumonia.", "pneumonia"),
        ("Opacity may represent atelectasis.", "atelectasis"),
        ("Questionable small nodule in the left apex.", "nodule"),
        ("Opacity concerning for pneumonia.", "pneumonia"),
    ],
)
def test_uncertain(text: str, term: str) -> None:
    neg, unc, _, _, _ = status(text, term)
    assert unc is True and neg is False


def test_probable_is_uncertain_but_counts_positive() -> None:
    r = analyze("FINDINGS: Probable left lower lobe pneumonia.")
    (f,) = [f for f in r.findings if f.concept == "pneumonia"]
    assert f.uncertain and f.certainty == "probable"
    assert r.chest_labels["Pneumonia"] == "positive"
    r2 = analyze("FINDINGS: Opacity may represent pneumonia.")
    assert r2.chest_labels["Pneumonia"] == "uncertain"


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Patient is status post CABG.", "CABG"),
        ("History of pneumonia last year.", "pneumonia"),
        ("S/p right lobectomy.", "lobectomy"),
    ],
)
def test_historical(text: str, term: str) -> None:
    assert status(text, term)[2] is True


def test_clinical_history_header_is_not_a_history_trigger() -> None:
    r = analyze("CLINICAL HISTORY: cough and fever.\nFINDINGS: Right lower lobe pneumonia.")
    (f,) = [f for f in r.findings if f.concept == "pneumonia"]
    assert not f.historical and not f.negated and f.section == "findings"
    assert r.chest_labels["Pneumonia"] == "positive"
    assert not assert_term("CLINICAL HISTORY: cough.", "cough").historical


@pytest.mark.parametrize(
    "text",
    [
        "INDICATION: Evaluate for PE.",
        "INDICATION: Rule out pneumonia.",
        "REASON FOR EXAM: r/o pneumothorax",
        "Clinical history: ? pneumonia",
    ],
)
def test_hypothetical_in_indication(text: str) -> None:
    r = analyze(text)
    assert r.findings, text
    f = r.findings[0]
    assert f.hypothetical and not f.negated and f.section == "history"
    assert not any(v == "positive" for k, v in r.chest_labels.items() if k != "normal")


def test_rule_out_in_indication_is_neither_negative_nor_positive() -> None:
    r = analyze("INDICATION: rule out pneumonia\nFINDINGS: Clear lungs.")
    assert r.chest_labels["Pneumonia"] == "absent"


def test_experiencer() -> None:
    assert status("Family history of lung cancer.", "lung cancer")[4] == "other"
    assert status("Her mother had breast cancer.", "breast cancer")[4] == "other"
    assert status("Lung cancer in the right upper lobe.", "lung cancer")[4] == "patient"


def test_nearest_trigger_wins() -> None:
    r = assert_term("No effusion, possible small pneumothorax.", "pneumothorax")
    assert r.uncertain and not r.negated


def test_scope_is_limited_to_the_sentence() -> None:
    assert status("No pneumothorax. Large right effusion.", "effusion")[0] is False


def test_span_target_and_missing_term() -> None:
    text = "There is no pleural effusion."
    start = text.index("pleural effusion")
    assert assert_term(text, (start, start + len("pleural effusion"))).negated
    with pytest.raises(ValueError):
        assert_term(text, "pneumothorax")


@pytest.mark.parametrize(
    ("text", "term", "negated"),
    [
        ("The patient did not have fever.", "fever", True),
        ("Patient denies any shortness of breath.", "shortness of breath", True),
        ("No cause of the bleeding was found.", "bleeding", False),  # "cause of" ends the scope
        ("There is no suspicious mass or calcification.", "calcification", True),
        ("No focal consolidation to suggest pneumonia.", "pneumonia", True),
        ("There is no pneumothorax and the heart is enlarged.", "heart is enlarged", False),
        ("No cardiomegaly with small bilateral pleural effusions.", "pleural effusions", False),
        ("Gram-negative rods.", "rods", False),
    ],
)
def test_more_negation_scope(text: str, term: str, negated: bool) -> None:
    assert assert_term(text, term).negated is negated


def test_hypothetical_outside_the_indication() -> None:
    r = assert_term("Should there be worsening pain, a CT could be obtained.", "worsening pain")
    assert r.hypothetical and not r.negated
    assert assert_term(
        "Follow-up CT recommended to assess for interval growth.", "interval growth"
    ).hypothetical


def test_long_unpunctuated_report_stays_linear() -> None:
    import time

    words = " ".join(["mild atelectasis no effusion possible pneumonia nodule 4 mm"] * 300)
    t0 = time.perf_counter()
    r = analyze("FINDINGS: " + words)
    assert time.perf_counter() - t0 < 20  # quadratic versions took minutes
    assert len(r.sentences) == 1 and len(r.findings) == 1200
    assert sum(f.negated for f in r.findings) == 300
    assert {f.concept for f in r.findings if f.negated} == {"pleural_effusion"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Small effusion, resolved pneumonia.",
            {"pleural_effusion": (False, "definite"), "pneumonia": (True, "definite")},
        ),
        (
            "Nodule, possible atelectasis.",
            {"nodule": (False, "definite"), "atelectasis": (False, "possible")},
        ),
        (
            "Atelectasis or pneumonia possible.",
            {"atelectasis": (False, "possible"), "pneumonia": (False, "possible")},
        ),
    ],
)
def test_trigger_before_a_target_reads_forward(text: str, expected: dict[str, tuple[bool, str]]) -> None:
    got = {f.concept: (f.negated, f.certainty) for f in analyze(text).findings}
    assert got == expected
