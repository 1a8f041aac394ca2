"""The analysts' findings record (live feed, ``sections``/``findings`` tables) holds no string of the original
report text: section titles, snippets, communication fields all come from the de-identified text or from the
NLP's own vocabulary. Real NLP and real text de-identification on synthetic reports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from processors.textdeid import TextDeidOptions
from streams import serde
from streams.handlers import TextDeid, analyze_and_deidentify, analyze_batch
from tests.streams.helpers import report

KEY = b"deid-mapping-test-key-0123456789"
# the identifiers written in the reports below: none may reach the analysts' record
PHI = ("Jonathan", "Whitfield", "Priya", "Raman", "Okafor", "01/17/2024", "01/18/2024", "Jan 19, 2024",
       "02/03/2024", "1/17/24")
REPORTS = {
    "addenda": (
        "EXAM: CT chest\nFINDINGS: 9 mm nodule in the right upper lobe.\n"
        "IMPRESSION: Nodule.\n"
        "ADDENDUM (01/17/2024 by Dr. Jonathan Whitfield): compared with outside study, the nodule is "
        "stable.\n"
        "ADDENDUM 01/18/2024: no change.\n"
        "***ADDENDUM (Jan 19, 2024, Dr. Priya Raman)***\nSmall right pleural effusion.\n"
    ),
    "named_headers": (
        "FINDINGS:\nLarge left pneumothorax. Findings discussed with Dr. Priya Raman at 14:05 on "
        "02/03/2024.\n"
        "IMPRESSION (Dr. Jonathan Whitfield): Large left pneumothorax.\n"
        "CORRECTION (1/17/24 Dr. Okafor): 12 mm nodule, recommend CT follow-up in 3 months.\n"
    ),
    "plain": (
        "EXAM: Chest PA and lateral\nFINDINGS: The lungs are clear. No pleural effusion.\n"
        "Impression: No acute abnormality.\nADDENDUM: Reviewed by Dr. Jonathan Whitfield on 01/17/2024.\n"
    ),
}


def strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string of a decoded Avro record (map keys too), with where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield f"{path}.{k}", str(k)
            yield from strings(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")


def decoded(accession: str, text: str) -> dict[str, Any]:
    """A ReportFinalized record as the agent decodes it (schema defaults filled in)."""
    return serde.decode("report_finalized", serde.encode("report_finalized", report(accession, text)))


def leaks(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p, s) for p, s in strings(record) if any(phi.lower() in s.lower() for phi in PHI)]


@pytest.mark.parametrize("mode", ["surrogate", "tag"])
@pytest.mark.parametrize("name", sorted(REPORTS))
def test_no_string_of_the_findings_record_holds_the_originals_identifiers(name: str, mode: str) -> None:
    deid = TextDeid(KEY, TextDeidOptions(mode=mode))  # type: ignore[arg-type]
    raw = serde.encode("report_finalized", report(f"M-{name}", REPORTS[name]))
    rec, deid_report = analyze_and_deidentify(serde.decode("report_finalized", raw), deid=deid)
    # the de-identification itself caught them (else the test would be about its recall)
    assert deid_report is not None and not leaks({"text": deid_report["text"]})
    feed = serde.decode("report_findings", serde.encode("report_findings", rec))  # what the feed carries
    assert feed["sections"], "no sections found"
    assert leaks(feed) == []
    # the agent's own path (bytes in, bytes out)
    out = analyze_batch([raw], deid=deid)[0]
    assert out.value is not None and leaks(serde.decode("report_findings", out.value)) == []


def test_titles_of_bare_headers_stay_and_qualified_headers_get_the_section_name() -> None:
    deid = TextDeid(KEY, TextDeidOptions())
    titles = {}
    for name in ("addenda", "named_headers", "plain"):
        rec, _ = analyze_and_deidentify(decoded(f"T-{name}", REPORTS[name]), deid=deid)
        titles[name] = [(s["name"], s["title"]) for s in rec["sections"]]
    assert titles["plain"] == [("exam", "EXAM"), ("findings", "FINDINGS"), ("impression", "Impression"),
                               ("addendum", "ADDENDUM")]
    assert titles["addenda"] == [("exam", "EXAM"), ("findings", "FINDINGS"), ("impression", "IMPRESSION"),
                                 ("addendum", "addendum"), ("addendum", "addendum"), ("addendum", "addendum")]
    assert ("findings", "FINDINGS") in titles["named_headers"]
    assert ("addendum", "addendum") in titles["named_headers"]


def test_communication_and_snippets_come_from_the_deidentified_text() -> None:
    deid = TextDeid(KEY, TextDeidOptions())
    rec, deid_report = analyze_and_deidentify(decoded("C-1", REPORTS["named_headers"]), deid=deid)
    assert deid_report is not None
    text = deid_report["text"]
    comm = rec["communication"]
    assert comm is not None and comm["text"] in text
    assert comm["recipient"] and comm["recipient"] in comm["text"]
    assert comm["time_text"] and comm["time_text"] in comm["text"]
    for field in ("findings", "measurements", "recommendations", "critical_results"):
        for item in rec[field]:
            assert text[item["start"]:item["end"]] == item["text"], (field, item)
