"""FHIR HTML text (presentedForm text/html, narrative text.div): a struck-out element (<s>, <del>,
<strike>) that its own close tag does not end is refused with a clear reason, never read with text lost
(review s15/r8: "Compare <s>prior</p>" dropped the rest of the block without an error; before that,
the rest of the report); so is an unclosed <style>/<script>/<title>/<head>, which hid the rest of
the report. ``<ins>`` is inline. The tests marked "old" failed on main a79c22c; the
others are look-alikes that keep their behaviour. The reports are made up.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from processors.ingest.fhir import html_text, parse_fhir, parse_fhir_result
from processors.ingest.model import ParseError

ACSN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}


def report(html: str, *, narrative: bool = False, rid: str = "dr1", acc: str = "ACC1") -> dict[str, Any]:
    dr: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": rid, "status": "final", "code": {"text": "CT chest"},
        "subject": {"reference": "Patient/p1"}, "identifier": [{"type": ACSN, "value": acc}],
        "issued": "2026-01-01T12:00:00Z"}
    if narrative:
        dr["text"] = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{html}</div>'}
    else:
        dr["presentedForm"] = [{"contentType": "text/html; charset=utf-8",
                                "data": base64.b64encode(html.encode()).decode()}]
    return dr


UNCLOSED = [
    # the end of its block comes first: the rest of the block was dropped (before: the rest of the report)
    "<p>FINDINGS: <s>no</s> 8 mm nodule.</p><p>Compare <s>prior</p><p>IMPRESSION: Biopsy advised.</p>",
    "<p>Growth rate p<s>0.05 noted.</p><p>IMPRESSION: Malignancy likely.</p>",
    "<ul><li><strike>old</li><li>Baker cyst.</li></ul>",
    "<table><tr><td>L1 <del>8 mm</td><td>9 mm</td></tr></table>",
    # another struck-out element's close tag comes first
    "<p><s>old <del>x</s> IMPRESSION: visible?</del> after</p>",
    # the end of the text comes first (no block around it)
    "Growth rate p<s>0.05 noted. IMPRESSION: Malignancy likely.",
]


@pytest.mark.parametrize("html", UNCLOSED)
def test_old_an_unclosed_strike_out_is_refused_with_its_position(html: str) -> None:
    with pytest.raises(ParseError) as err:
        html_text(html)
    assert err.value.code == "value"
    assert "has no matching close tag" in err.value.reason and "struck-out <" in err.value.reason
    assert " at line 1, column " in err.value.reason


@pytest.mark.parametrize(("html", "tag"), [
    ("<p>A <style>p {color: red}</p><p>IMPRESSION: Biopsy advised.</p>", "style"),
    ("<p>A <title>Report</p><p>IMPRESSION: Biopsy advised.</p>", "title"),
])
def test_old_an_unclosed_hidden_element_is_refused_not_hiding_the_rest(html: str, tag: str) -> None:
    with pytest.raises(ParseError, match=f"hidden <{tag}> at line 1, column 6 has no matching close tag"):
        html_text(html)


def test_closed_hidden_elements_are_still_dropped() -> None:
    html = "<head><title>CT</title><style>p {}</style></head><p>IMPRESSION: Biopsy advised.</p>"
    assert html_text(html) == "IMPRESSION: Biopsy advised."


@pytest.mark.parametrize("narrative", [False, True])
def test_old_the_report_is_refused_not_read_with_text_lost(narrative: bool) -> None:
    obj = report(UNCLOSED[0], narrative=narrative)
    with pytest.raises(ParseError) as err:
        parse_fhir(json.dumps(obj).encode(), site="s")
    where = "text.div" if narrative else "presentedForm"
    assert err.value.code == "value" and err.value.field == where
    assert err.value.reason.startswith(("text.div: HTML text: struck-out <s> at line 1",
                                        "presentedForm text/html: HTML text: struck-out <s> at line 1"))


def test_old_in_a_batch_only_that_report_is_refused() -> None:
    good = report("<p>IMPRESSION: No acute finding.</p>", rid="dr2", acc="ACC2")
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"resource": report(UNCLOSED[1])}, {"resource": good}]}
    res = parse_fhir_result(json.dumps(bundle).encode(), site="s")
    assert [e.accession for e in res.events] == ["ACC2"]
    assert [r.where for r in res.refused] == ["Bundle.entry[0]"]
    assert "struck-out <s>" in res.refused[0].error.reason


@pytest.mark.parametrize(("html", "text"), [
    ("<p>FINDINGS: <s>no</s> 8 mm nodule.</p><p>IMPRESSION: Biopsy advised.</p>",
     "FINDINGS: 8 mm nodule.\nIMPRESSION: Biopsy advised."),
    ("No <del>fracture</del><ins>dislocation</ins>.", "No dislocation."),
    ("<s>a <s>b</s> c</s> d <strike>e</strike> f", "d f"),  # nested, closed
    ("<del><p>gone</p><p>too</p></del><p>End.</p>", "End."),  # a struck-out span around whole blocks
    ("<p>Knee: <del>no</del> effusion.</p>", "Knee: effusion."),
    ("<p>Lesion </s>stable</del>.</p>", "Lesion stable."),  # a stray close tag hides nothing
])
def test_a_closed_strike_out_still_removes_its_text(html: str, text: str) -> None:
    assert html_text(html) == text


def test_a_closed_strike_out_in_a_report_is_read() -> None:
    obj = report("<p>Compare <s>prior</s> 2025 CT.</p><p>IMPRESSION: Stable.</p>", narrative=True)
    assert parse_fhir(json.dumps(obj).encode(), site="s")[0].text == "Compare 2025 CT.\nIMPRESSION: Stable."


@pytest.mark.parametrize(("html", "text"), [
    ("<p>Subdural hemor<ins>r</ins>hage.</p>", "Subdural hemorrhage."),  # old: "hemor r hage"
    ("<p>Lesion <ins>not</ins> enhancing.</p>", "Lesion not enhancing."),
    ("<p>Mild <ins>pleural</ins> effusion.</p>", "Mild pleural effusion."),
])
def test_ins_is_inline(html: str, text: str) -> None:
    assert html_text(html) == text


def test_a_head_whose_close_tag_is_left_out_ends_at_the_body() -> None:
    from processors.ingest.fhir import html_text

    html = "<html><head><title>Report</title><body><p>IMPRESSION: Small effusion.</p></body></html>"
    assert html_text(html) == "IMPRESSION: Small effusion."
    assert html_text("<head><style>p{}</style><p>B</p>") == "B"
    assert html_text("<html><head><title>R</title></head><body><p>A.</p></body></html>") == "A."
