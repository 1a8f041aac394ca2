"""Search latency of the web app (radstream web) at a given warehouse size: p50/p95 per search.

    PYTHONPATH=. python bench/web_search.py [--reports 100000] [--runs 20]

A fresh embedded store (chDB, temp dir) is filled by ClickHouse itself (INSERT ... SELECT FROM numbers())
with synthetic reports from our own sentences, their NLP header rows and two findings per report (a
nodule, present or negated, 2-15 mm; an effusion). Each search is the page's five queries (results,
count, modality facet, finding facet, histogram) built by ``radstream.web.queries`` (and, as "3 queries",
the same page as results + ``summary`` + finding facet, and as "1 query" the page as the app runs it,
``page``) and run through the
role-checked read path with the analyst's policy (``run_readonly(..., policy=...)``: the parser check
and the query), as the worker's /sql page runs them; the HTTP hop and the page rendering are not
included. Baseline: the same queries without the role check (policy None).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEARCHES = {
    "full text 'effusion'": {"text": "effusion"},
    "nodule >= 6 mm, present": {"finding": "nodule", "finding_state": "present", "min_size_mm": "6"},
    "text + filters + dates": {"text": "lobe", "finding": "nodule", "finding_state": "present",
                               "min_size_mm": "6", "modality": "CT", "date_from": "2024-03-01",
                               "date_to": "2024-09-30"},
}


def fill(c: Any, n: int) -> None:
    sentences = ["'There is a small left pleural effusion.'", "'The lungs are clear.'",
                 "'A nodule is seen in the right upper lobe.'", "'No pneumothorax.'",
                 "'Degenerative changes of the thoracic spine.'", "'Heart size is mildly enlarged.'"]
    arr = "[" + ", ".join(sentences) + "]"
    modality = "['CT', 'MR', 'CR', 'US'][{k} % 4 + 1]"
    nlp_time = "toDateTime64('2025-01-01', 6, 'UTC')"
    common = (
        "SELECT 'default' AS site, concat('ACC-', hex(number)) AS accession, 1 AS version, "
        f"'final' AS status, {modality.format(k='number')} AS modality, "
        "toDateTime64('2024-01-01 00:00:00', 6, 'UTC') + toIntervalMinute((number * 5261) % 525600) "
        "AS exam_time, exam_time AS received_time, concat('sr1.', hex(number)) AS study_ref, "
        f"arrayStringConcat(arrayMap(i -> {arr}[(number * 7 + i * 3) % 6 + 1], range(6)), ' ') AS text "
        f"FROM numbers({n})")
    cols = "site, accession, version, status, modality, exam_time, received_time, study_ref, text"
    for table in ("reports", "report_versions"):
        c.command(f"INSERT INTO rs.{table} ({cols}) {common}")
    # the search's own table (ddl/018), as the sink writes it beside report_versions
    c.command("INSERT INTO rs.report_search (site, accession, version, status, modality, exam_time, "
              "study_ref, text) SELECT site, accession, version, status, modality, exam_time, study_ref, "
              "text FROM rs.report_versions")
    c.command("INSERT INTO rs.report_nlp (site, accession, report_version, processed_time, status, modality) "
              f"SELECT 'default', concat('ACC-', hex(number)), 1, {nlp_time}, 'final', "
              f"{modality.format(k='number')} FROM numbers({n})")
    c.command("INSERT INTO rs.findings (site, accession, report_version, processed_time, finding_idx, "
              "concept, text, start, end, negated, size_mm, modality) "
              f"SELECT 'default', concat('ACC-', hex(intDiv(number, 2))), 1, {nlp_time}, number % 2, "
              "if(number % 2 = 0, 'nodule', 'pleural_effusion'), 'x', 0, 1, number % 5 = 0, "
              f"if(number % 2 = 0, 2 + number % 14, NULL), {modality.format(k='intDiv(number, 2)')} "
              f"FROM numbers({2 * n})")
    # the current run of each report with its findings as arrays (ddl/014-015: what the sink writes beside
    # the rows above; the latest views and the search filters read it)
    c.command("INSERT INTO rs.report_current (site, accession, report_version, processed_time, status, "
              "has_nlp, finding_concepts, finding_negated, finding_uncertain, finding_size_mm) "
              f"SELECT 'default', concat('ACC-', hex(number)), 1, {nlp_time}, 'final', true, "
              "['nodule', 'pleural_effusion'], [(number * 2) % 5 = 0, (number * 2 + 1) % 5 = 0], "
              f"[false, false], [2 + (number * 2) % 14, NULL] FROM numbers({n})")
    c.command("OPTIMIZE TABLE rs.reports FINAL")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    from radstream.web import queries as q
    from sinks.clickhouse.access import policy_for
    from sinks.clickhouse.client import open_client
    from sinks.clickhouse.config import ClickHouseConfig
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.query import close_readonly_clients, run_readonly

    tmp = tempfile.mkdtemp(prefix="web-bench-")
    client = open_client(ClickHouseConfig(url=f"chdb://{tmp}/chdb", database="rs"))
    migrate(client, "rs")
    t = time.monotonic()
    fill(client, args.reports)
    print(f"{args.reports:,} synthetic reports loaded in {time.monotonic() - t:.1f} s; "
          f"load average {os.getloadavg()[0]:.1f}")
    analyst = policy_for(["analyst"])
    print("| search | reports matched | checked p50 ms | checked p95 ms | unchecked p50 ms | "
          "unchecked p95 ms |")
    print("|---|---|---|---|---|---|")
    try:
        for name, form in SEARCHES.items():
            s = q.Search.of(form)
            pages = {name: [q.results(s), q.count(s), q.facets(s), q.finding_facets(s), q.histogram(s)],
                     f"{name} (3 queries)": [q.results(s), q.summary(s), q.finding_facets(s)],
                     f"{name} (1 query, as the app runs it)": [q.page(s)]}
            matched = json.loads(str(run_readonly(client, q.count(s), "jsonl")))["n"]
            for label, sqls in pages.items():
                time_page(client, label, sqls, matched, analyst, args.runs)
    finally:
        close_readonly_clients()
        client.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def time_page(client: Any, name: str, sqls: list[str], matched: Any, analyst: Any, runs: int) -> None:
    """One search page: its queries in a row, ``runs`` times, with and without the role check."""
    from sinks.clickhouse.query import run_readonly

    times: dict[str, list[float]] = {"checked": [], "unchecked": []}
    for _ in range(runs):
        for label, policy in (("checked", analyst), ("unchecked", None)):
            t = time.monotonic()
            for sql in sqls:
                run_readonly(client, sql, "jsonl", policy=policy)
            times[label].append((time.monotonic() - t) * 1000)

    def pct(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 1 else xs[0]

    print(f"| {name} | {matched} | {statistics.median(times['checked']):.0f} | "
          f"{pct(times['checked'], 95):.0f} | {statistics.median(times['unchecked']):.0f} | "
          f"{pct(times['unchecked'], 95):.0f} |")


if __name__ == "__main__":
    main()
