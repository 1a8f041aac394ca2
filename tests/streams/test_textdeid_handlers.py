"""The NLP agent's per-report logic with text de-identification (no Kafka): the findings record's offsets
and snippets point into the de-identified text, for any report-like input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.textdeid import TextDeidOptions
from streams import serde
from streams.handlers import TextDeid, analyze_and_deidentify, analyze_batch
from tests.streams.helpers import report

DEID = TextDeid(b"handler-test-key-0123456789", TextDeidOptions())
PIECES = st.sampled_from([
    "FINDINGS:", "IMPRESSION:", "7 mm nodule in the right upper lobe.", "No pleural effusion.",
    "Discussed with Dr. Lee at 13:55 on 03/14/2024.", "Called to J. Doe, RN.", "MRN 1234567.",
    "Baker cyst.", "Recommend CT follow-up in 3 months.", "BI-RADS 4.", "Large pneumothorax.",
    "Compared to 01/02/2023, the 12 mm mass is larger.", "\n", "92-year-old woman.", "Mercy Hospital",
])
FIELDS = ("findings", "measurements", "recommendations", "assessments", "critical_results")


def check(rec: dict[str, object], text: str) -> None:
    for name in FIELDS:
        for item in rec.get(name) or []:  # type: ignore[attr-defined]
            assert 0 <= item["start"] <= item["end"] <= len(text)
            assert text[item["start"]:item["end"]] == item["text"], (name, item)
    for s in rec.get("sections") or []:  # type: ignore[attr-defined]
        assert 0 <= s["start"] <= s["end"] <= len(text)


@settings(max_examples=60, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=12))
def test_offsets_and_snippets_point_into_the_deidentified_text(pieces: list[str]) -> None:
    raw = serde.encode("report_finalized", report("H1", " ".join(pieces)))
    decoded = serde.decode("report_finalized", raw)
    rec, deid_report = analyze_and_deidentify(decoded, deid=DEID)
    assert deid_report is not None
    check(rec, deid_report["text"])
    for phi in ("Lee", "Doe", "1234567", "03/14/2024", "01/02/2023", "Mercy Hospital", "92-year-old"):
        assert phi not in deid_report["text"]
        assert phi not in repr(rec)


def test_batch_emits_the_deidentified_report_and_rejects_binary() -> None:
    good = serde.encode("report_finalized", report("H2", "FINDINGS: Called to Dr. Lee. 7 mm nodule."))
    bad = serde.encode("report_finalized", report("H3", "FINDINGS: \x00\x01"))
    out = analyze_batch([good, bad], deid=DEID)
    assert out[0].deidentified is not None and out[0].value is not None
    text = serde.decode("report_finalized", out[0].deidentified)["text"]
    assert "Lee" not in text and "7 mm nodule" in text
    check(serde.decode("report_findings", out[0].value), text)
    assert out[1].value is None and out[1].error_type == "TextDeidError" and "NUL" in (out[1].error or "")
    # without de-identification nothing is emitted for the analysts' copy
    assert analyze_batch([good])[0].deidentified is None
