"""Sections and sentences: offsets into the original text."""

from __future__ import annotations

from processors.nlp.sections import split_sections
from processors.nlp.sentences import split_sentences


def sents(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def test_headers_with_colon_without_colon_and_mid_line() -> None:
    text = (
        "EXAMINATION: CT CHEST WITH CONTRAST\nCLINICAL HISTORY: cough\nFINDINGS\n"
        "The lungs are clear. IMPRESSION: Normal study.\nRecommendation: none"
    )
    secs = split_sections(text)
    assert [s.name for s in secs] == ["exam", "history", "findings", "impression", "recommendation"]
    findings = secs[2]
    assert findings.title == "FINDINGS"
    assert text[findings.body_start : findings.end].strip() == "The lungs are clear."
    assert text[secs[3].body_start : secs[3].end].strip() == "Normal study."


def test_report_without_headers_is_one_section() -> None:
    text = "Heart size normal. Lungs clear."
    (sec,) = split_sections(text)
    assert sec.name == "other" and (sec.start, sec.end) == (0, len(text))


def test_header_words_inside_sentences_are_not_headers() -> None:
    secs = split_sections("The findings are stable since the prior impression of atelectasis.")
    assert [s.name for s in secs] == ["other"]


def test_numbered_lists_and_units() -> None:
    text = "1. Nodule measuring 2.5 cm. The heart is normal.\n2. No effusion.\n3. Stable 4 mm. nodule"
    assert sents(text) == [
        "1. Nodule measuring 2.5 cm.",
        "The heart is normal.",
        "2. No effusion.",
        "3. Stable 4 mm. nodule",
    ]


def test_inline_numbered_list() -> None:
    assert sents("1. Emphysema. 2. Probable scarring. 3. No pneumothorax.") == [
        "1. Emphysema.",
        "2. Probable scarring.",
        "3. No pneumothorax.",
    ]


def test_abbreviations_do_not_split() -> None:
    text = "Discussed with Dr. Smith at 3 p.m. on the ward. Approx. 3 cm mass vs. atelectasis."
    assert sents(text) == [
        "Discussed with Dr. Smith at 3 p.m. on the ward.",
        "Approx. 3 cm mass vs. atelectasis.",
    ]


def test_line_breaks() -> None:
    text = "Heart normal\nLungs clear\nNo effusion or\npneumothorax.\n\nbones intact"
    assert sents(text) == ["Heart normal", "Lungs clear", "No effusion or\npneumothorax.", "bones intact"]


def test_offsets_point_into_the_original_text() -> None:
    text = "  Mild cardiomegaly.   Small effusion.  "
    for a, b in split_sentences(text):
        assert text[a:b] in ("Mild cardiomegaly.", "Small effusion.")


def test_lower_case_sentence_start_and_question_marks() -> None:
    assert sents("No effusion. heart size is normal.") == ["No effusion.", "heart size is normal."]
    assert sents("Cough, ? pneumonia. Fever.") == ["Cough, ? pneumonia.", "Fever."]


def _bodies(text: str) -> list[tuple[str, str, str]]:
    return [(s.name, s.title, text[s.body_start : s.end].strip()) for s in split_sections(text)]


def test_technique_comparison_conclusion_and_addendum_headers() -> None:
    text = (
        "TECHNIQUE: Axial images of the abdomen were acquired after oral contrast.\n"
        "COMPARISON: Ultrasound from last spring.\n"
        "FINDINGS: The gallbladder wall is thickened.\n"
        "CONCLUSION: Findings suggest acute cholecystitis.\n"
        "ADDENDUM: Surgery was paged about these results."
    )
    assert _bodies(text) == [
        ("technique", "TECHNIQUE", "Axial images of the abdomen were acquired after oral contrast."),
        ("comparison", "COMPARISON", "Ultrasound from last spring."),
        ("findings", "FINDINGS", "The gallbladder wall is thickened."),
        ("impression", "CONCLUSION", "Findings suggest acute cholecystitis."),
        ("addendum", "ADDENDUM", "Surgery was paged about these results."),
    ]


def test_those_headers_alone_on_their_line_mid_line_and_in_variants() -> None:
    alone = (
        "Technique\nSingle frontal view.\nComparisons\nNone.\nConclusions\nNo change.\nAddendum\nSee below."
    )
    assert [(n, b) for n, _, b in _bodies(alone)] == [
        ("technique", "Single frontal view."), ("comparison", "None."),
        ("impression", "No change."), ("addendum", "See below."),
    ]
    inline = "Technique: two views. Comparison study: none. The spine is aligned. Conclusion: No fracture."
    assert [(n, t, b) for n, t, b in _bodies(inline)] == [
        ("technique", "Technique", "two views."),
        ("comparison", "Comparison study", "none. The spine is aligned."),
        ("impression", "Conclusion", "No fracture."),
    ]


def test_numbered_dated_and_starred_addenda() -> None:
    text = (
        "IMPRESSION: Mild bronchitic change.\n\n"
        "ADDENDUM #1: The thyroid nodule was overlooked initially.\n"
        "Addendum 2 - A second reader agrees.\n"
        "ADDENDUM (11/30/2026): Results relayed to the clinic.\n"
        "*** ADDENDUM ***\nFinal note."
    )
    assert _bodies(text) == [
        ("impression", "IMPRESSION", "Mild bronchitic change."),
        ("addendum", "ADDENDUM #1", "The thyroid nodule was overlooked initially."),
        ("addendum", "Addendum 2", "A second reader agrees."),
        ("addendum", "ADDENDUM (11/30/2026)", "Results relayed to the clinic."),
        ("addendum", "ADDENDUM", "Final note."),
    ]
    starred = split_sections(text)[-1]
    # the asterisks belong to the header, not to the end of the previous section
    assert text[starred.start : starred.body_start].strip() == "*** ADDENDUM ***"


def test_findings_in_comparison_and_technique_do_not_count_but_an_addendum_does() -> None:
    from processors.nlp import analyze

    text = (
        "TECHNIQUE: Portable view to assess the known effusion.\n"
        "COMPARISON: Radiograph of yesterday with a right pneumothorax.\n"
        "FINDINGS: The right lung is now expanded.\n"
        "IMPRESSION: Resolved right pneumothorax.\n"
        "ADDENDUM #1: A small left apical pneumothorax is present on second review."
    )
    r = analyze(text)
    by_section = {(f.concept, f.section) for f in r.findings}
    assert {("pleural_effusion", "technique"), ("pneumothorax", "comparison"),
            ("pneumothorax", "addendum")} <= by_section
    assert r.chest_labels["Effusion"] == "absent"
    assert r.chest_labels["Pneumothorax"] == "positive"
    assert [(c.concept, r.findings[c.finding].section) for c in r.critical_results] == [
        ("pneumothorax", "addendum")
    ]
