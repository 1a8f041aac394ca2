"""``cohort export --csv`` writes the PACS's own identifiers (C-FIND by accession or patient id + date):
steward role only, refused attempts and exports audited (``cohort.export``), on real Kafka (the audit
topic) and the local audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings, settings_env
from streams.auth import TokenStore


def _events(settings: Settings, action: str) -> list[dict[str, Any]]:
    path = Path(settings.auth.audit_log)
    entries = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [e for e in entries if e["action"] == action]


def test_export_from_a_clinical_csv_needs_the_steward_role(topic_settings: Settings, tmp_path: Path) -> None:
    # nothing listens on the PACS port: a C-FIND would fail; the refusal comes before any
    settings = topic_settings.replace(state_dir=str(tmp_path), pacs={"port": 9})
    store = TokenStore(settings.auth.token_file)
    store.add_user("rita", ["analyst"])
    env = settings_env(settings)
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("patient_id,study_date\nP1,20250110\n")
    runner = CliRunner()

    res = runner.invoke(main, ["cohort", "export", "--csv", str(cohort)],
                        env={**env, "RADSTREAM_TOKEN": store.add_token("rita")})
    assert res.exit_code == 1, res.output
    assert "needs the steward role" in res.output and "request_id" not in res.output  # no manifest
    refused = _events(settings, "cohort.export")
    assert [(e["actor"], e["allowed"], json.loads(e["detail"])["source"]) for e in refused] == [
        ("rita", False, "csv")]

    # the local admin (no RADSTREAM_TOKEN) holds the steward role: allowed and audited (a CSV of no
    # studies, so no C-FIND is made)
    empty = tmp_path / "empty.csv"
    empty.write_text("accession\n")
    res = runner.invoke(main, ["cohort", "export", "--csv", str(empty)], env={**env, "RADSTREAM_TOKEN": ""})
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith("request_id,accession,patient_id")
    allowed = [e for e in _events(settings, "cohort.export") if e["allowed"]]
    assert [(json.loads(e["detail"])["source"], json.loads(e["detail"])["studies"]) for e in allowed] == [
        ("csv", 0)]
