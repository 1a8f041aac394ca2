"""``radstream backfill`` (direct to the warehouse, with text de-identification): no table an analyst may
read holds a name or a real date written in the report, section titles included (an addendum header
"ADDENDUM (01/17/2024 by Dr. A)" once kept both). Real NLP, real de-identification, embedded ClickHouse."""

from __future__ import annotations

import json
from pathlib import Path

from radstream.backfill import run_backfill
from radstream.config import Settings
from sinks.clickhouse.access import ROLES_DIR, policy_for
from sinks.clickhouse.client import open_client

PHI = ("Jonathan", "Whitfield", "Priya", "Raman", "01/17/2024", "01/18/2024", "Jan 19, 2024")
TEXT = ("EXAM: CT chest\nFINDINGS: 9 mm nodule in the right upper lobe. Findings discussed with "
        "Dr. Priya Raman at 14:05 on 01/18/2024.\nIMPRESSION: Nodule.\n"
        "ADDENDUM (01/17/2024 by Dr. Jonathan Whitfield): compared with outside study, stable.\n"
        "***ADDENDUM (Jan 19, 2024, Dr. Priya Raman)***\nSmall right pleural effusion.\n")


def test_backfill_analysts_tables_hold_no_name_or_date_of_the_report_text(tmp_path: Path) -> None:
    settings = Settings(state_dir=str(tmp_path)).replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"})
    path = tmp_path / "reports.jsonl"
    path.write_text(json.dumps({"accession": "BF-DEID-1", "patient_id": "MRN-BF-1", "status": "final",
                                "modality": "CT", "observation_time": "2024-01-17T08:15:00Z",
                                "text": TEXT}) + "\n")
    summary = run_backfill(settings, [path], workers=0)
    assert (summary.read, summary.loaded, summary.rejected) == (1, 1, 0)
    tables = sorted(t.split(".")[-1] for t in policy_for(["analyst"], ROLES_DIR).tables if t != "*")
    client = open_client(settings.clickhouse)
    try:
        names = client.query("SELECT name FROM system.tables WHERE database = 'rs'").result_rows
        present = {r[0] for r in names}
        assert {"sections", "sections_latest", "findings", "reports_latest", "note"} <= present
        found = []
        for table in [t for t in tables if t in present]:
            rows = client.query(f"SELECT * FROM rs.`{table}`").result_rows
            found += [(table, str(cell)) for row in rows for cell in row
                      if any(p.lower() in str(cell).lower() for p in PHI)]
        assert found == []
        rows = client.query("SELECT title FROM rs.sections FINAL ORDER BY start").result_rows
        titles = [r[0] for r in rows]
        assert titles == ["EXAM", "FINDINGS", "IMPRESSION", "addendum", "addendum"]
        # the restricted original still has them (the test would pass vacuously otherwise)
        original = client.query("SELECT text FROM rs.report_text_original").result_rows[0][0]
        assert "Whitfield" in original
    finally:
        client.close()
