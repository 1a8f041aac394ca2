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
