"""note_nlp over findings_current with one join (ddl/017): a store migrated up to 016 shows the same
note_nlp rows and columns, and the documented OMOP query the same answer, before and after 017; the same
after 021 (that join keyed on a 128-bit hash of site and accession) for a store migrated up to 020. And the
documented latest_with_argmax, whose LowCardinality columns are cast before its sort, answers as its
plain form did."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import Result, close_readonly_clients, run_readonly
from sinks.clickhouse.rows import rows_for_many
from sinks.clickhouse.sink import write_records, write_rows

from .factories import ddl_until, finding, findings, report

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[3] / "docs" / "analysts.md"
TEXT = "FINDINGS: A 7 mm nodule in the right upper lobe. No pleural effusion. Possible mass."


def records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the latest rows must follow: a correction, a newer NLP run, a cancellation, a version still
    waiting for its NLP result, another site with the same accession, findings not about the patient."""
    b1, c1, d1, e1 = (report(a, text=TEXT) for a in ("B1", "C1", "D1", "E1"))
    b1_other = report("B1", site="other", patient_id="P9", text=TEXT)
    c2 = report("C1", 2, status="corrected", text=TEXT)
    d2 = report("D1", 2, status="cancelled", text=TEXT)
    e2 = report("E1", 2, status="corrected", text=TEXT)  # no NLP result yet
    nodule = finding("nodule", start=12, size_mm=7.0, laterality="right")
    nlp = [
        findings(b1, [nodule, finding("pleural_effusion", start=50, negated=True),
                      finding("mass", start=73, uncertain=True)]),
        findings(b1_other, [finding("nodule", start=12, experiencer="family")]),
        findings(c1, [finding("nodule", start=12, size_mm=12.0)]),
        findings(c2, [finding("nodule", start=12, negated=True),
                      finding("nodule", start=40, historical=True)]),
        findings(d1, [finding("mass", start=73)]),
        findings(d2, []),
        findings(e1, [finding("nodule", start=12)]),
    ]
    newer = findings(b1, [nodule, finding("nodule", start=30, hypothetical=True)],
                     processed_time=b1["status_time"] + timedelta(days=3))
    newer["nlp_version"] = "test-2"
    return [b1, b1_other, c1, c2, d1, d2, e1, e2], [*nlp, newer]


# latest_with_argmax as docs/analysts.md had it before the casts
PLAIN_ARGMAX = """SELECT site, accession, max(version) AS latest_version,
       argMax(status, version) AS latest_status, argMax(modality, version) AS latest_modality
FROM report_versions
GROUP BY site, accession
ORDER BY accession"""


def example(name: str) -> str:
    m = re.search(rf"```sql\n-- example: {name}\n(.*?)```", DOC.read_text(), re.S)
    assert m
    return m.group(1)


def snapshot(client: Client) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]], Result]:
    res = client.query("SELECT * FROM note_nlp ORDER BY note_nlp_id")
    columns = list(zip(res.column_names, [t.name for t in res.column_types], strict=True))
    omop = run_readonly(client, example("omop_note_nlp"), "rows")
    assert isinstance(omop, Result)
    return columns, [tuple(r) for r in res.result_rows], omop


def same_after_migration(tmp_path: Path, until: int, write: Callable[[Client], None],
                         applied: list[str]) -> tuple[list[str], list[tuple[Any, ...]], Result]:
    """A store migrated up to ``until`` with ``write``'s rows, then migrated on (the first files it applies
    are ``applied``): note_nlp's columns and rows and the documented OMOP query's answer, which must be
    the same before and after. Returns the column names, the rows and that answer."""
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs", ddl_until(tmp_path / "ddl", until))
        write(client)
        before = snapshot(client)
        assert migrate(client, "rs")[:len(applied)] == applied
        after = snapshot(client)
    finally:
        close_readonly_clients()
        client.close()
    columns, rows, example = before
    assert after[0] == columns
    assert after[1] == rows
    assert (after[2].columns, after[2].types, after[2].rows) == (example.columns, example.types, example.rows)
    return [c for c, _ in columns], rows, example


def test_a_store_from_before_017_shows_the_same_note_nlp(tmp_path: Path) -> None:
    reps, nlp = records()

    def write(client: Client) -> None:
        for _ in range(2):  # at-least-once: replays add no rows to the views
            write_records(client, "report_findings", nlp)
            rows = rows_for_many("report_finalized", reps)
            rows.pop("report_search")  # ddl/018, after this store's time
            write_rows(client, rows)

    names, rows, example = same_after_migration(tmp_path, 16, write,
                                                ["017_note_nlp_one_join", "018_report_search"])
    # the answer is not trivially equal: what the latest rows must show is there, and nothing else
    keys = ("rs_site", "rs_accession", "lexical_variant", "term_exists", "term_temporal")
    got = {tuple(r[names.index(k)] for k in keys) for r in rows}
    assert got == {
        ("default", "B1", "nodule", "Y", "present"),  # the newer run of B1 (test-2) ...
        ("default", "B1", "nodule", "N", "present"),  # ... with its hypothetical nodule
        ("other", "B1", "nodule", "N", "present"),  # the other site's B1, about a family member
        ("default", "C1", "nodule", "N", "present"),  # the correction, negated
        ("default", "C1", "nodule", "Y", "past"),
    }  # no D1 (cancelled), no E1 (its version 2 waits for its NLP result), no effusion or mass of B1 v1
    uids = {r[names.index("rs_study_instance_uid")] for r in rows}
    assert uids == {r["study_instance_uid"] for r in reps if r["accession"] in ("B1", "C1")} - {""}
    assert all("nodule" in r[names.index("snippet")] for r in rows if r[names.index("offset")] == "12")
    assert [r[1] for r in example.rows] == sorted(r[1] for r in example.rows) and len(example.rows) == 5


def test_a_store_from_before_021_shows_the_same_note_nlp(tmp_path: Path) -> None:
    reps, nlp = records()
    for r in reps:  # the other site's B1 is another study: the join must tell the sites apart
        if r["site"] == "other":
            r["study_instance_uid"] = "2.25.4242"
    # an NLP result whose report row has not been written (the sink reads two topics): its findings
    # are current, with no report to join: an empty snippet and study UID, as before
    early = report("F1", text=TEXT)
    nlp.append(findings(early, [finding("nodule", start=12)]))

    def write(client: Client) -> None:
        for _ in range(2):  # at-least-once: replays add no rows to the views
            write_records(client, "report_findings", nlp)
            write_records(client, "report_finalized", reps)

    names, rows, _ = same_after_migration(tmp_path, 20, write, ["021_note_nlp_report_key"])
    by_acc: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in rows:
        by_acc.setdefault((r[names.index("rs_site")], r[names.index("rs_accession")]), []).append(r)
    assert sorted(by_acc) == [("default", "B1"), ("default", "C1"), ("default", "F1"), ("other", "B1")]
    snippet, offset, uid = names.index("snippet"), names.index("offset"), names.index("rs_study_instance_uid")
    # each report's own study UID and text (the two sites' B1 differ in UID), and none for F1
    uids = {r["site"] + r["accession"]: r["study_instance_uid"] for r in reps}  # the last version's
    for (site, acc), got in by_acc.items():
        assert {r[uid] for r in got} == ({""} if acc == "F1" else {uids[site + acc]})
    assert uids["defaultB1"] != uids["otherB1"]
    # the snippet: the 60 characters around the term in the report's text, as the view always cut it
    start = 12
    want = TEXT[max(start - 60, 0): start + len("nodule") + 60]
    assert {r[snippet] for r in by_acc[("default", "B1")] if r[offset] == "12"} == {want}
    assert {r[snippet] for r in by_acc[("default", "F1")]} == {""}


def test_latest_with_argmax_answers_as_its_plain_form(tmp_path: Path) -> None:
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp_path / 'chdb'}", database="rs"))
    try:
        migrate(client, "rs")
        reps, nlp = records()
        write_records(client, "report_finalized", [*reps, report("A0", modality="MR", site="b")])
        # the lines an analyst gets are the same to the byte (the two sites' B1 tie on the sort key: their
        # order is ClickHouse's choice in either form)
        for fmt in ("jsonl", "tsv"):
            cast = str(run_readonly(client, example("latest_with_argmax"), fmt)).splitlines()
            assert sorted(cast) == sorted(str(run_readonly(client, PLAIN_ARGMAX, fmt)).splitlines())
        got = run_readonly(client, example("latest_with_argmax"), "rows")
        plain = run_readonly(client, PLAIN_ARGMAX, "rows")
    finally:
        close_readonly_clients()
        client.close()
    assert isinstance(got, Result) and isinstance(plain, Result)
    assert got.columns == plain.columns and sorted(got.rows) == sorted(plain.rows)
    assert got.types == ["String", "String", "Int64", "String", "String"]  # no LowCardinality left
    assert [r[1] for r in got.rows] == ["A0", "B1", "B1", "C1", "D1", "E1"]
    assert ("default", "D1", 2, "cancelled", "CT") in got.rows and ("b", "A0", 1, "final", "MR") in got.rows
