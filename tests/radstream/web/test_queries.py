"""The web app's queries on a real embedded store (chDB) through the role-checked read path: values are
bound as literals (an injection attempt matches nothing), the filters select what they say, and the
steward-only queries are refused for analysts by the query layer itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from radstream.web import queries as q
from radstream.web.app import highlight, progress, version_diffs
from sinks.clickhouse.access import AccessDenied, policy_for
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients, run_readonly

ANALYST = policy_for(["analyst"])
STEWARD = policy_for(["steward"])


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[Client]:
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    migrate(client, "rs")
    rows = [("A1", "CT", "2025-01-10", "FINDINGS: 8 mm Nodule in the right upper lobe. O'Brien sign."),
            ("A2", "MR", "2025-02-10", "FINDINGS: No pulmonary nodule."),
            ("A3", "CT", "2025-03-10", "FINDINGS: Normal.")]
    for acc, mod, day, text in rows:
        client.command(f"INSERT INTO rs.reports (site, accession, version, status, modality, exam_time, "
                       f"received_time, text, study_ref) VALUES ('default', '{acc}', 1, 'final', '{mod}', "
                       f"'{day} 09:00:00', '{day} 09:00:00', {json.dumps(text)}, 'sr1.{acc}')".replace(
                           '"', "'").replace("O'Brien", "O\\'Brien"))
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
    assert accessions(ch, q.Search(text="nodule")) == ["A1", "A2"]  # case-insensitive
    assert accessions(ch, q.Search(text="nodule", modality="CT")) == ["A1"]
    assert accessions(ch, q.Search.of({"date_from": "2025-02-01", "date_to": "2025-03-10"})) == ["A2", "A3"]
    assert accessions(ch, q.Search(text="O'Brien")) == ["A1"]  # a quote is part of the value
    assert int(run(ch, q.count(q.Search(text="nodule")))[0]["n"]) == 2
    months = run(ch, q.histogram(q.Search(text="finding")))
    assert [(m["month"], int(m["n"])) for m in months] == [("2025-01-01", 1), ("2025-02-01", 1),
                                                          ("2025-03-01", 1)]
    studies = run(ch, q.cohort_studies(q.Search(modality="CT")))
    assert [(r["accession"], r["study_ref"]) for r in studies] == [("A1", "sr1.A1"), ("A3", "sr1.A3")]


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
    assert "concept = 'nodule' AND negated = 0 AND uncertain = 0 AND size_mm >= 6.0" in sql
    assert run(ch, sql) == []  # no NLP rows in this store: nothing matches
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
