"""What fsync'd parts cost the ClickHouse sink: the wall time of one flush (``write_rows``), fsync on vs off.

    PYTHONPATH=. python bench/sink_fsync.py [--reports 50,385] [--flushes 20] [--rounds 2] [--json]

A flush is what the sink inserts for ``--reports`` reports at once, with its default ``insert_threads``
(3 clients on the store): each report's original text (report_text_original), its de-identified
version (report_versions, reports, report_search, report_current) and its NLP result (report_nlp and 8
child tables: 13 rows), the rows of ``bench/e2e_latency.py``. 50 reports is a live flush at 100
reports/s (500 ms); 385 reports (~5,000 rows) a full ``batch_rows`` batch (a catch-up). Accessions are
new in every flush and spread over the 8 partitions of the report tables, as in production.

Modes, each in a fresh process with a freshly migrated store (chDB: one store per process):
- ``on``: the migrations as they are (033: ``fsync_after_insert = 1, fsync_part_directory = 1`` on
  every table);
- ``off``: the same store with both set back to 0 (ClickHouse's default, the store before 033).
Rounds run off, on, off, on, ... so load on the shared cores hits both alike. Two warm-up flushes are
not timed. ``FileSync`` / ``DirectorySync`` (system.events) count the fsyncs the engine did.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SYNC_EVENTS = ("FileSync", "DirectorySync", "FileSyncElapsedMicroseconds", "DirectorySyncElapsedMicroseconds")


def child(mode: str, reports: int, flushes: int) -> dict[str, Any]:
    from e2e_latency import findings_event, report_event

    from radstream.config import Settings
    from sinks.clickhouse.client import client_like, open_client
    from sinks.clickhouse.migrate import migrate
    from sinks.clickhouse.rows import Origin, Rows, merge_rows, rows_for
    from sinks.clickhouse.sink import write_rows

    with tempfile.TemporaryDirectory(prefix="radstream-fsync-", dir=os.environ.get("BENCH_DIR")) as tmp:
        cfg = Settings().replace(clickhouse={"url": f"chdb://{tmp}/chdb", "database": "rs"}).clickhouse
        client = open_client(cfg)
        migrate(client, "rs")
        tables = [str(r[0]) for r in client.query(
            "SELECT name FROM system.tables WHERE database = 'rs' AND engine LIKE '%MergeTree'").result_rows]
        if mode == "off":
            for t in tables:
                client.command(f"ALTER TABLE rs.{t} MODIFY SETTING fsync_after_insert = 0, "
                               "fsync_part_directory = 0")
        helpers = [client_like(client) for _ in range(cfg.insert_threads - 1)]
        pool = ThreadPoolExecutor(cfg.insert_threads)

        def events() -> dict[str, int]:
            res = client.query("SELECT event, value FROM system.events WHERE event IN {e:Array(String)}",
                               parameters={"e": list(SYNC_EVENTS)})
            return {str(k): int(v) for k, v in res.result_rows}

        offset = 0

        def batch() -> Rows:
            nonlocal offset
            rows: Rows = {}
            now = datetime.now(UTC)
            for _ in range(reports):
                acc = uuid.uuid4().hex[:12]
                rep = report_event(acc, now)
                offset += 1
                merge_rows(rows, rows_for("report_original", rep, Origin("reports", 0, offset)))
                merge_rows(rows, rows_for("report_finalized", rep, Origin("reports_deid", 0, offset)))
                merge_rows(rows, rows_for("report_findings", findings_event(rep, now),
                                          Origin("findings", 0, offset)))
            return rows

        times: list[float] = []
        n_rows = 0
        before: dict[str, int] = {}
        for i in range(flushes + 2):
            rows = batch()
            if i == 2:
                before = events()
            t0 = time.perf_counter()
            n = write_rows(client, rows, helpers, pool)
            if i >= 2:
                times.append(time.perf_counter() - t0)
                n_rows = n
        after = events()
        settings = client.query("SELECT engine_full FROM system.tables WHERE database = 'rs' "
                                "AND name = 'reports'").result_rows[0][0]
        pool.shutdown()
        for h in helpers:
            h.close()
        client.close()
    return {"mode": mode, "reports": reports, "rows": n_rows, "flushes": len(times), "times_s": times,
            "fsync_on": "fsync_after_insert = 1" in str(settings),
            "per_flush": {k: (after.get(k, 0) - before.get(k, 0)) / len(times) for k in SYNC_EVENTS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", default="50,385", help="reports per flush (comma-separated sizes)")
    ap.add_argument("--flushes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.reports.split(",")]
    if args.child:
        print(json.dumps(child(args.child, sizes[0], args.flushes)))
        return
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    results: list[dict[str, Any]] = []
    load = [os.getloadavg()[0]]
    for size in sizes:
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                out = subprocess.run([sys.executable, __file__, "--child", mode, "--reports", str(size),
                                      "--flushes", str(args.flushes)], check=True, capture_output=True,
                                     text=True, env=env, cwd=REPO).stdout
                results.append(json.loads(out.strip().splitlines()[-1]))
                load.append(os.getloadavg()[0])
    summary = []
    for size in sizes:
        per: dict[str, list[float]] = {}
        syncs: dict[str, dict[str, float]] = {}
        for r in results:
            if r["reports"] == size:
                assert r["fsync_on"] == (r["mode"] == "on"), r["mode"]
                per.setdefault(r["mode"], []).extend(r["times_s"])
                syncs[r["mode"]] = r["per_flush"]
                rows = r["rows"]
        med = {m: statistics.median(v) * 1000 for m, v in per.items()}
        p95 = {m: sorted(v)[int(0.95 * (len(v) - 1))] * 1000 for m, v in per.items()}
        summary.append({"reports": size, "rows": rows, "median_ms": med, "p95_ms": p95,
                        "ratio_median": med["on"] / med["off"], "ratio_p95": p95["on"] / p95["off"],
                        "fsyncs_per_flush_on": syncs["on"]})
    if args.json:
        print(json.dumps({"summary": summary, "load_1min": load, "runs": results}, indent=1))
        return
    print(f"load (1 min) during the runs: {', '.join(f'{x:.2f}' for x in load)}")
    print("| reports/flush (rows) | off: median / p95 ms | on: median / p95 ms | on/off median, p95 | "
          "fsyncs per flush (files + dirs), sync time ms |")
    print("|---|---:|---:|---:|---:|")
    for s in summary:
        f = s["fsyncs_per_flush_on"]
        print(f"| {s['reports']} ({s['rows']}) | {s['median_ms']['off']:.1f} / {s['p95_ms']['off']:.1f} | "
              f"{s['median_ms']['on']:.1f} / {s['p95_ms']['on']:.1f} | {s['ratio_median']:.2f}x, "
              f"{s['ratio_p95']:.2f}x | {f['FileSync']:.0f} + {f['DirectorySync']:.0f}, "
              f"{(f['FileSyncElapsedMicroseconds'] + f['DirectorySyncElapsedMicroseconds']) / 1000:.0f} |")


if __name__ == "__main__":
    main()
