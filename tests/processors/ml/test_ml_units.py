"""Which parts of a report get embedded (no torch needed)."""

from __future__ import annotations

from processors.ml.units import report_sentences, report_units, simple_sections, simple_sentences

REPORT = (
    "EXAM: CT chest with contrast.\n"
    "HISTORY: Shortness of breath.\n"
    "FINDINGS:\n"
    "Filling defect in the right lower lobe pulmonary artery. No pleural effusion.\n"
    "Heart size is normal.\n"
    "IMPRESSION:\n"
    "Right lower lobe pulmonary embolism.\n"
)


def test_units_are_impression_and_findings_sentences() -> None:
    units = report_units(REPORT)
    kinds = [u.unit for u in units]
    assert kinds[0] == "findings:0"
    assert "impression" in kinds
    findings = [u for u in units if u.section == "findings"]
    assert [u.text for u in findings] == [
        "Filling defect in the right lower lobe pulmonary artery.",
        "No pleural effusion.",
        "Heart size is normal.",
    ]
    imp = next(u for u in units if u.unit == "impression")
    assert imp.text == "Right lower lobe pulmonary embolism."
    for u in units:  # spans point into the report
        assert " ".join(REPORT[u.start:u.end].split()) == u.text
    assert not any("Shortness" in u.text for u in units)


def test_fallback_splitter_gives_the_same_units() -> None:
    a = report_units(REPORT, sections=simple_sections, sentences=simple_sentences)
    assert [u.text for u in a] == [u.text for u in report_units(REPORT)]


def test_report_without_headers_is_one_unit() -> None:
    units = report_units("Normal chest radiograph.")
    assert [(u.unit, u.text) for u in units] == [("report", "Normal chest radiograph.")]
    assert report_units("  \n ") == []


def test_report_sentences_cover_every_section() -> None:
    sents = report_sentences(REPORT)
    assert [s.index for s in sents] == list(range(len(sents)))
    sections = {s.section for s in sents}
    assert {"findings", "impression"} <= sections
    assert any("Shortness of breath" in REPORT[s.start:s.end] for s in sents)
