"""Property-based robustness of the FHIR and flat-record parsers: only ParseError ever escapes."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.ingest.fhir import parse_fhir
from processors.ingest.model import ParseError, ReportEvent
from processors.ingest.records import ColumnMapping, Rejected, iter_csv, iter_jsonl

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)

FIELDS = ["status", "subject", "code", "presentedForm", "conclusion", "identifier", "basedOn", "issued",
          "effectiveDateTime", "contained", "imagingStudy", "encounter", "entry", "meta"]


@st.composite
def fhir_like(draw: Any) -> dict[str, Any]:
    rtype = draw(st.sampled_from(["DiagnosticReport", "Bundle", "Patient", 7]))
    obj: dict[str, Any] = {"resourceType": rtype}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        obj[name] = draw(json_values)
    return obj


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fhir_like())
def test_random_fhir_raises_only_parse_error(obj: dict[str, Any]) -> None:
    with contextlib.suppress(ParseError):
        for validate in (True, False):
            with contextlib.suppress(ParseError):
                parse_fhir(json.dumps(obj).encode(), site="s", validate=validate)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_fhir_bytes_raise_only_parse_error(raw: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_fhir(raw, site="s")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120) | json_values.map(lambda v: json.dumps(v).encode()), max_size=8))
def test_random_jsonl_every_line_is_an_event_or_a_reject(lines: list[bytes]) -> None:
    lines = [ln.replace(b"\n", b" ") + b"\n" for ln in lines]
    out = list(iter_jsonl(lines, ColumnMapping(), site="s"))
    assert [no for no, _ in out] == [i for i, ln in enumerate(lines, 1) if ln.strip()]
    assert all(isinstance(x, (ReportEvent, Rejected)) for _, x in out)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_random_csv_rows_become_events_or_rejects(body: str) -> None:
    out = list(iter_csv(io.StringIO("accession,text,status\n" + body), ColumnMapping(), site="s"))
    for _, x in out:
        assert isinstance(x, (ReportEvent, Rejected))
        if isinstance(x, ReportEvent):
            assert x.accession.strip() and x.text.strip()
