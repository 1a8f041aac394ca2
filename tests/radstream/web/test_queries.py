"""The web app's queries on a real embedded store (chDB) through the role-checked read path: values are
bound as literals (an injection attempt matches nothing), the filters select what they say, and the
steward-only queries are refused for analysts by the query layer itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from radstream.web import queries as q
from radstream.web.app import highlight, progress, version_diffs
from sinks.clickhouse.access import AccessDenied, Checked, policy_for
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients, run_readonly
from sinks.clickhouse.sink import write_records
from tests.helpers_chdb import migrated_store
from tests.sinks.clickhouse.factories import finding, findings, report

ANALYST = policy_for(["analyst"])
STEWARD = policy_for(["steward"])


DAY = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[Client]:
    """Reports and NLP results written by the sink's own mapping and writer (as the worker does):
    A1 CT chest, nodule 8 mm, a follow-up in 90 days; A2 MR, no nodule, BI-RADS 4A; A3 CT, its
    correction negates the 12 mm nodule of version 1 and has a critical result; A4 cancelled."""
    yield from _store(tmp_path)


@pytest.fixture(scope="class")
def read_only_ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """``ch``'s store, built once for a class of tests that only read it (a store costs ~2 s of CPU:
    migrations and writes). Closed at the end of the class: chDB holds one store path per process."""
    yield from _store(tmp_path_factory.mktemp("queries"))


def _store(tmp_path: Path) -> Iterator[Client]:
    # a copy of a migrated store (tests/helpers_chdb.py): migrate checks it and applies nothing
    store = migrated_store(tmp_path / "chdb", "rs")
    client = open_client(ClickHouseConfig(url=f"chdb://{store}", database="rs"))
    migrate(client, "rs")
    a1 = report("A1", exam_time=DAY, text="FINDINGS: 8 mm Nodule in the right upper lobe. O'Brien sign.",
                study_ref="sr1.A1")
    a2 = report("A2", modality="MR", body_part="BREAST", patient_class="inpatient",
                exam_time=DAY + timedelta(days=31), text="FINDINGS: No pulmonary nodule.", study_ref="sr1.A2")
    a3 = report("A3", exam_time=DAY + timedelta(days=59), body_part="ABDOMEN", patient_class="emergency",
                text="FINDINGS: Normal.", study_ref="sr1.A3")
    a3v2 = {**a3, "version": 2, "status": "corrected", "event_id": "default|A3|2",
            "text": "FINDINGS: Normal. No nodule. Free air."}
    a4 = report("A4", exam_time=DAY, text="FINDINGS: 9 mm nodule.", study_ref="sr1.A4")
    a4v2 = {**a4, "version": 2, "status": "cancelled", "event_id": "default|A4|2"}
    follow_up = {"kind": "imaging_followup", "text": "CT in 3 months", "start": 0, "end": 5, "modality": "CT",
                 "interval_days_min": 90, "interval_days_max": 90, "guideline": ""}
    write_records(client, "report_finalized", [a1, a2, a3, a3v2, a4, a4v2])
    write_records(client, "report_findings", [
        findings(a1, [finding("nodule", size_mm=8.0)], recommendations=[follow_up]),
        findings(a2, [finding("nodule", negated=True)], assessments=[("BI-RADS", "4A")]),
        findings(a3, [finding("nodule", size_mm=12.0)]),
        findings(a3v2, [finding("nodule", negated=True), finding("free_air")], critical=["free_air"]),
        findings(a4, [finding("nodule", size_mm=9.0)]),
        findings(a4v2, [finding("nodule", size_mm=9.0)]),
    ])
    try:
        yield client
    finally:
        close_readonly_clients()
        client.close()


def run(client: Client, sql: str, policy: Any = ANALYST) -> list[dict[str, Any]]:
    out = str(run_readonly(client, sql, "jsonl", policy=policy))
    return [json.loads(line) for line in out.splitlines() if line]


def accessions(client: Client, s: q.Search) -> list[str]:
    return sorted(r["accession"] for r in run(client, q.results(s)))


def test_full_text_modality_and_dates_select_what_they_say(ch: Client) -> None:
    assert accessions(ch, q.Search(text="nodule")) == ["A1", "A2", "A3"]  # case-insensitive; A4 cancelled
    assert accessions(ch, q.Search(text="nodule", modality="MR")) == ["A2"]
    assert accessions(ch, q.Search.of({"date_from": "2025-02-01", "date_to": "2025-03-10"})) == ["A2", "A3"]
    assert accessions(ch, q.Search(text="free air")) == ["A3"]  # the latest version's text only
    assert accessions(ch, q.Search(text="nodule", date_from=date(2025, 1, 10))) == ["A1", "A2", "A3"]
    assert accessions(ch, q.Search(text="O'Brien")) == ["A1"]  # a quote is part of the value
    assert int(run(ch, q.count(q.Search(text="nodule")))[0]["n"]) == 3
    months = run(ch, q.histogram(q.Search(text="finding")))
    assert [(m["month"], int(m["n"])) for m in months] == [("2025-01-01", 1), ("2025-02-01", 1),
                                                          ("2025-03-01", 1)]
    studies = run(ch, q.cohort_studies(q.Search(modality="CT")))
    assert [(r["accession"], r["study_ref"]) for r in studies] == [("A1", "sr1.A1"), ("A3", "sr1.A3")]


def test_full_text_matches_the_words_literally_and_uses_the_text_index(ch: Client) -> None:
    """LIKE's wildcards in a search are plain characters; case folds also beyond ASCII; the planner
    skips report_search's granules by its text index (ddl/020) for the search's own condition."""
    a7 = report("A7", exam_time=DAY, text="FINDINGS: 50% stenosis of the ÖSOPHAGUS_WALL, C:\\path.")
    write_records(ch, "report_finalized", [a7])
    assert accessions(ch, q.Search(text="50% stenosis")) == ["A7"]
    assert accessions(ch, q.Search(text="5_% stenosis")) == []  # "_" is not a wildcard
    assert accessions(ch, q.Search(text="%")) == ["A7"]  # nor is "%"
    assert accessions(ch, q.Search(text="ösophagus_wall")) == ["A7"]
    assert accessions(ch, q.Search(text="c:\\path")) == ["A7"]
    assert accessions(ch, q.Search(text="NODULE")) == ["A1", "A2", "A3"]
    cond = q.bind("SELECT count() FROM report_search AS t WHERE " + " AND ".join(
        c.format(t="t.") for c in q._parts(q.Search(text="no such words")).pre),
        q._parts(q.Search(text="no such words")).params)
    plan = [r[0] for r in ch.query("EXPLAIN indexes = 1 " + cond).result_rows]
    at = next(i for i, line in enumerate(plan) if line.strip() == "Name: ix_text")
    assert "Granules: 0/" in "".join(plan[at:at + 6]), plan


@pytest.mark.parametrize("attack", [
    "x') > 0 OR 1=1 OR position(r.text, '",
    "x\\') > 0 OR 1=1 --",
    "%(text)s",
    "' UNION ALL SELECT * FROM deid_map --",
])
def test_typed_values_are_bound_as_literals_never_sql(ch: Client, attack: str) -> None:
    sql = q.results(q.Search(text=attack, modality=attack))
    assert run(ch, sql) == []  # one literal that no report contains; the check passed as a plain SELECT


def test_the_finding_filter_is_a_fixed_fragment(ch: Client) -> None:
    sql = q.results(q.Search(finding="nodule", finding_state="present", min_size_mm=6.0))
    assert "c = 'nodule' AND NOT n AND NOT u AND ifNull(z >= 6.0, false)" in sql
    assert sorted(r["accession"] for r in run(ch, sql)) == ["A1"]
    with pytest.raises(ValueError, match="finding_state"):
        q.Search.of({"finding_state": "1=1"})
    with pytest.raises(ValueError):
        q.Search.of({"date_from": "yesterday"})
    with pytest.raises(ValueError):
        q.Search.of({"min_size_mm": "6 OR 1=1"})


def test_steward_queries_are_refused_for_analysts_by_the_query_layer(ch: Client) -> None:
    for sql in (q.audit_log(), q.audit_log("rita"), q.quarantine()):
        with pytest.raises(AccessDenied, match="not readable by this role"):
            run(ch, sql, ANALYST)
        assert run(ch, sql, STEWARD) == []
    assert run(ch, q.project_totals()) == []  # the dashboard reads analysts' tables only
    assert run(ch, q.retrievals(project="P1")) == []


def test_search_round_trips_through_its_params() -> None:
    s = q.Search.of({"text": " nodule ", "finding": "Nodule", "finding_state": "present", "min_size_mm": "6",
                     "assessment_system": "BI-RADS", "min_category": "4", "critical": "on",
                     "date_from": "2025-01-01"})
    assert s.params() == {"text": "nodule", "finding": "nodule", "finding_state": "present",
                          "min_size_mm": "6", "date_from": "2025-01-01", "assessment_system": "BI-RADS",
                          "min_category": "4", "critical": "1"}
    assert q.Search.of(s.params()) == s
    assert q.Search.of({}).empty


def test_highlight_escapes_the_text_and_marks_negated_findings_apart() -> None:
    text = "No <b>nodule</b>; 8 mm mass."
    found = [{"concept": "nodule", "start": 6, "end": 12, "negated": True, "uncertain": False},
             {"concept": "mass", "start": 23, "end": 27, "negated": False, "uncertain": False}]
    html = str(highlight(text, found))
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert '<mark class="f-negated" title="nodule (negated)">nodule</mark>' in html
    assert '<mark class="f-present" title="mass (present)">mass</mark>' in html


def test_progress_and_version_diffs() -> None:
    assert progress({"state": "moving", "expected": "6", "stored": "3"})["percent"] == 50
    assert progress({"state": "completed", "expected": None, "stored": None})["percent"] == 100
    assert progress({"state": "queued"})["percent"] == 0
    vs = version_diffs([{"version": 1, "status": "final", "text": "a\nb"},
                        {"version": 2, "status": "corrected", "text": "a\nc"}])
    assert vs[0]["diff"] == "" and "-b" in vs[1]["diff"] and "+c" in vs[1]["diff"]


class TestStructuredFilters:
    """Read-only cases: they share one store (``read_only_ch``)."""

    @pytest.mark.parametrize(("form", "expected"), [
        ({"finding": "nodule", "finding_state": "present"}, ["A1"]),
        ({"finding": "nodule", "finding_state": "negated"}, ["A2", "A3"]),  # A3's correction negates it
        ({"finding": "nodule", "min_size_mm": "10"}, []),  # the 12 mm of A3's superseded version
        ({"finding_state": "uncertain"}, []),
        ({"critical": "1"}, ["A3"]),
        ({"assessment_system": "BI-RADS", "min_category": "4"}, ["A2"]),
        ({"min_category": "5"}, []),
        ({"body_region": "Chest"}, ["A1"]),
        ({"body_region": "abdomen", "modality": "CT"}, ["A3"]),
        ({"patient_class": "inpatient"}, ["A2"]),
        ({"patient_class": "emergency", "text": "air"}, ["A3"]),
        ({"recommendation": "any"}, ["A1"]),
        ({"recommendation": "biopsy"}, []),
        ({"recommendation": "imaging_followup", "due_by": "2025-04-09"}, []),  # due 2025-04-10
        ({"recommendation": "any", "due_by": "2025-04-10"}, ["A1"]),
        ({"due_by": "2026-01-01", "finding": "nodule", "finding_state": "present"}, ["A1"]),
    ])
    def test_structured_filters_see_only_the_current_version(
            self, read_only_ch: Client, form: dict[str, str], expected: list[str]) -> None:
        s = q.Search.of(form)
        assert accessions(read_only_ch, s) == expected
        assert int(run(read_only_ch, q.count(s))[0]["n"]) == len(expected)
        assert q.Search.of(s.params()) == s


def test_the_filters_agree_with_the_latest_views(ch: Client) -> None:
    """report_current's arrays give the accessions the per-row latest views give (the due day with the
    exam time of the current version's report_search row)."""
    views = {
        "finding": "SELECT DISTINCT accession FROM findings_latest WHERE concept = 'nodule' AND NOT negated",
        "critical": "SELECT DISTINCT accession FROM critical_results_latest",
        "birads": "SELECT DISTINCT accession FROM assessments_latest WHERE system = 'BI-RADS' "
                  "AND toInt32OrZero(extract(category, '^[0-9]+')) >= 4",
        "due": "SELECT DISTINCT accession FROM recommendations_latest WHERE interval_days_min IS NOT NULL "
               "AND exam_time + toIntervalDay(interval_days_min) < toDateTime64('2025-04-11', 6, 'UTC')",
    }
    searches = {"finding": q.Search(finding="nodule", finding_state="present"),
                "critical": q.Search(critical=True),
                "birads": q.Search(assessment_system="BI-RADS", min_category=4),
                "due": q.Search(recommendation="any", due_by=date(2025, 4, 10))}
    for name, sql in views.items():
        want = sorted(r["accession"] for r in run(ch, sql))
        assert want and accessions(ch, searches[name]) == want, name


def test_summary_is_count_facets_and_histogram_in_one_query(ch: Client) -> None:
    for s in (q.Search(), q.Search(text="nodule"), q.Search(finding="nodule", finding_state="negated"),
              q.Search(modality="MR")):
        rows = run(ch, q.summary(s))
        got = {f: [(r["value"], int(r["n"])) for r in rows if r["facet"] == f]
               for f in ("total", "modality", "month")}
        assert got["total"] == [("", int(run(ch, q.count(s))[0]["n"]))]
        assert got["modality"] == [(r["value"], int(r["n"])) for r in run(ch, q.facets(s))]
        assert got["month"] == [(r["month"], int(r["n"])) for r in run(ch, q.histogram(s))]
    assert run(ch, q.summary(q.Search(text="no such words"))) == []
    facets = run(ch, q.finding_facets(q.Search(modality="CT")))
    assert [(r["value"], int(r["n"])) for r in facets] == [("free_air", 1), ("nodule", 1)]  # A1, A3 (v2)


def test_the_report_page_shows_the_current_run_as_the_latest_views_do(ch: Client) -> None:
    for acc in ("A1", "A3", "A4"):
        want = run(ch, "SELECT accession, concept, negated, size_mm FROM findings_latest "
                       f"WHERE accession = '{acc}' ORDER BY start")
        got = run(ch, q.findings_of("default", [acc]))
        assert sorted((r["accession"], r["concept"], r["negated"], r["size_mm"]) for r in got) == sorted(
            (r["accession"], r["concept"], r["negated"], r["size_mm"]) for r in want)
        assert run(ch, q.sections("default", acc)) == run(
            ch, f"SELECT name, title, start, end FROM sections_latest WHERE accession = '{acc}'")
    assert sorted(r["concept"] for r in run(ch, q.findings_of("default", ["A3"]))) == ["free_air", "nodule"]
    assert run(ch, q.findings_of("default", ["A4"])) == []  # cancelled
    assert [r["category"] for r in run(ch, q.assessments("default", "A2"))] == ["4A"]
    assert len(run(ch, q.findings_of("default", ["A1", "A2", "A3"]))) == 4


def test_a_correction_that_moves_the_report_leaves_no_stale_version(ch: Client) -> None:
    """report_search keeps every version under its own modality and month; only the current one counts:
    A5's correction moved it from CT in January to MR in March and dropped the effusion."""
    a5 = report("A5", exam_time=DAY, text="FINDINGS: Small effusion.", study_ref="sr1.A5")
    a5v2 = {**a5, "version": 2, "status": "corrected", "event_id": "default|A5|2", "modality": "MR",
            "observation_time": DAY + timedelta(days=60), "text": "FINDINGS: No change."}
    write_records(ch, "report_finalized", [a5, a5v2])
    write_records(ch, "report_findings", [findings(a5, [finding("effusion", size_mm=7.0)]),
                                          findings(a5v2, [finding("effusion", negated=True)])])
    for form in ({"text": "effusion"}, {"modality": "CT"}, {"date_to": "2025-01-31"},
                 {"text": "effusion", "modality": "CT", "date_from": "2025-01-01"},
                 {"finding": "effusion", "finding_state": "present"}):
        s = q.Search.of(form)
        assert "A5" not in accessions(ch, s), form
        assert "effusion" not in {r["value"] for r in run(ch, q.finding_facets(s))}, form
    for form in ({"modality": "MR", "text": "no change"}, {"date_from": "2025-03-01", "modality": "MR"},
                 {"finding": "effusion", "finding_state": "negated", "modality": "MR"}):
        assert "A5" in accessions(ch, q.Search.of(form)), form
    months = run(ch, q.summary(q.Search(modality="MR")))
    assert ("month", "2025-03-01") in {(r["facet"], r["value"]) for r in months}
    studies = run(ch, q.cohort_studies(q.Search(modality="MR", date_from=date(2025, 3, 1))))
    assert [(r["accession"], r["study_ref"]) for r in studies] == [("A5", "sr1.A5")]


def test_the_search_reads_only_analysts_tables_through_the_role_check(ch: Client) -> None:
    """What the search pages read passes the analyst's check (views expanded), and a role whose
    allowlist lacks report_search is refused: the new table is a table like any other to the check."""
    s = q.Search(text="nodule", modality="CT", finding="nodule", date_from=date(2025, 1, 1),
                 recommendation="any", due_by=date(2026, 1, 1))
    for sql in (q.results(s), q.summary(s), q.finding_facets(s), q.cohort_studies(s)):
        checked: list[Checked] = []
        run_readonly(ch, sql, "jsonl", policy=ANALYST, checked=checked)
        assert "rs.report_search" in checked[0].tables or "report_search" not in sql
        assert all(t.partition(".")[2] in ANALYST.tables for t in checked[0].tables), checked[0].tables
    no_search = replace(ANALYST, tables=ANALYST.tables - {"report_search"})
    with pytest.raises(AccessDenied, match="report_search"):
        run_readonly(ch, q.results(q.Search(text="nodule")), "jsonl", policy=no_search)


PAGE_FORMS = [
    {}, {"text": "nodule"}, {"text": "NODULE", "modality": "CT"}, {"modality": "MR"},
    {"date_from": "2025-01-01", "date_to": "2025-02-15"}, {"text": "no such words"},
    {"text": "findings", "finding": "nodule", "finding_state": "negated", "date_from": "2025-01-01"},
    {"finding": "nodule", "min_size_mm": "6"}, {"critical": "1", "modality": "CT"}, {"critical": "1"},
    {"body_region": "chest"},
    {"assessment_system": "BI-RADS", "min_category": "4"},
    {"body_region": "chest", "patient_class": "outpatient"},
    {"recommendation": "any", "due_by": "2025-04-10"}, {"recommendation": "imaging_followup"},
    {"recommendation": "imaging_followup", "due_by": "2025-04-09"},
    {"due_by": "2026-01-01", "finding": "nodule", "finding_state": "present", "text": "nodule"},
]


@pytest.mark.parametrize("form", PAGE_FORMS)
def test_the_page_query_returns_what_the_three_queries_return(ch: Client, form: dict[str, str]) -> None:
    """``page`` (one query) split by ``page_parts`` gives the rows of ``results``, ``summary`` and
    ``finding_facets`` in their order, through the analyst's check; A6 has no NLP result yet (listed
    and counted, no facets), A7 is a second report in A1's month with a non-ASCII text."""
    a6 = report("A6", exam_time=DAY + timedelta(hours=1), text="FINDINGS: Nodule, not yet analysed.")
    a7 = report("A7", exam_time=DAY + timedelta(days=2),
                text="FINDINGS: Kleiner Knoten, größenstabil. Nodule.")
    write_records(ch, "report_finalized", [a6, a7])
    write_records(ch, "report_findings", [findings(a7, [finding("nodule", size_mm=4.0), finding("cyst")])])
    s = q.Search.of(form)
    rows = run(ch, q.page(s))
    assert len(rows) == 1
    want = (run(ch, q.results(s)), run(ch, q.summary(s)), run(ch, q.finding_facets(s)))
    assert q.page_parts(rows[0]) == want
    if not s.empty and s.text != "no such words" and s.due_by != date(2025, 4, 9):
        assert want[0] and want[1], form  # the forms select something (the comparison is not of nothing)
    for offset in (1, 2):
        got = q.page_parts(run(ch, q.page(s, offset, 2))[0], offset, 2)[0]
        assert got == run(ch, q.results(s, offset, 2))
