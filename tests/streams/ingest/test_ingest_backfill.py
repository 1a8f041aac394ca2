"""``radstream backfill`` into embedded ClickHouse: all formats, rejects, resume after a kill."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from processors.ingest.pseudonym import keyed_identifier
from radstream.backfill import run_backfill
from radstream.config import Settings
from radstream.text_deid import research_key
from sinks.clickhouse.client import open_client
from streams.ingest.backfill import reason_kind

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "samples"
PY = sys.executable


def ch_settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=str(tmp_path)).replace(
        clickhouse={"url": f"chdb://{tmp_path / 'chdb'}", "database": "rs"})


def query(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql).result_rows]


def clinical_accessions(client: Client, key: bytes) -> dict[str, str]:
    """Research accession -> clinical accession, from the restricted originals (a steward's view: the
    analysts' rows share no unkeyed value with them, not even the event id)."""
    return {keyed_identifier(key, "accession", str(a)): str(a)
            for (a,) in query(client, "SELECT DISTINCT accession FROM report_text_original")}


def hl7_batch(tmp_path: Path) -> Path:
    names = ["vendor_a_obx_per_line.hl7", "vendor_c_2_final.hl7", "vendor_c_3_corrected.hl7",
             "vendor_c_1_preliminary.hl7", "multi_obr_two_reports.hl7", "cancelled.hl7",
             "bad_missing_obr.hl7"]
    path = tmp_path / "batch.hl7"
    path.write_bytes(b"FHS|^~\\&\rBHS|^~\\&\r" + b"".join((SAMPLES / "hl7" / n).read_bytes() for n in names)
                     + b"BTS|7\rFTS|1\r")
    return path


def test_backfill_all_formats_rejects_and_latest_view(tmp_path: Path) -> None:
    settings = ch_settings(tmp_path)
    csv_path = tmp_path / "export.csv"
    csv_path.write_text("rid,mrn,findings,impression\nR1,M1,Small left pleural effusion.,Effusion.\n"
                        "R2,broken\nR3,M3,,\n")
    rejects = io.StringIO()
    paths = [SAMPLES / "reports.jsonl", hl7_batch(tmp_path), SAMPLES / "fhir" / "reports.fhir.ndjson",
             csv_path]
    # one mapping for all files: the CSV's columns; JSONL/HL7/FHIR fields are found by name
    from processors.ingest.records import ColumnMapping

    mapping = ColumnMapping.parse(["rid=accession", "findings=text", "impression=text"])
    s1 = run_backfill(settings, paths[:3], workers=0, rejects=rejects, chunk_size=4)
    s2 = run_backfill(settings, paths[3:], workers=0, rejects=rejects, mapping=mapping)
    # jsonl 10 + hl7 7 messages (one with 2 reports, one bad) + fhir 4 lines (one invalid)
    assert (s1.read, s1.loaded, s1.rejected) == (21, 20, 2)
    assert (s2.read, s2.loaded, s2.rejected) == (3, 1, 2)
    lines = rejects.getvalue().splitlines()
    assert any(ln.startswith("batch.hl7:7\tno OBR segment") for ln in lines)
    assert any(ln.startswith("reports.fhir.ndjson:4\tinvalid FHIR") for ln in lines)
    assert any(ln.startswith("export.csv:2\trow has 2 cells") for ln in lines)
    assert any(ln.startswith("export.csv:3\tempty report text") for ln in lines)
    assert "empty report text …" in s2.reasons

    key = research_key(settings)

    def acc(a: str) -> str:  # the research accession of a clinical one
        return keyed_identifier(key, "accession", a)

    def order(o: str) -> str:
        return keyed_identifier(key, "order", o) if o else ""

    client = open_client(settings.clickhouse)
    try:
        assert query(client, "SELECT count() FROM report_versions FINAL") == [(21,)]
        back = clinical_accessions(client, key)
        latest = {back[a]: st for a, st in query(client, "SELECT accession, status FROM reports_latest")}
        assert latest["ACC-C-5001"] == "corrected"  # the late preliminary did not override it
        assert latest["ACC1002"] == "corrected" and latest["ACC1003"] == "final"
        assert "ACC-X-1" not in latest and "FH-ACC-7782" not in latest  # cancelled: retracted
        assert latest["R1"] == "final" and latest["FH-ACC-9001"] == "final"
        versions = query(client, "SELECT status FROM report_versions FINAL "
                                 f"WHERE accession = '{acc('ACC-C-5001')}' ORDER BY version")
        assert versions == [("preliminary",), ("final",), ("corrected",)]
        # order numbers (HL7 OBR-2/ORC-2 and OBR-3/ORC-3) reach every report table and the latest view
        expect = sorted((acc(a), order(p), order(f)) for a, p, f in [
            ("ACC-C-5001", "", "ACC-C-5001"), ("ACC-M-2", "PL2", "ACC-M-2"),
            ("ACC20260302001", "PL5521", "ACC20260302001")])
        wanted = ", ".join(f"'{acc(a)}'" for a in ("ACC20260302001", "ACC-M-2", "ACC-C-5001"))
        for source in ("reports_latest", "reports FINAL", "report_versions FINAL"):
            rows = query(client, f"SELECT accession, placer_order_number, filler_order_number FROM {source} "
                                 f"WHERE accession IN ({wanted}) "
                                 "AND status != 'preliminary' "
                                 "ORDER BY accession, version DESC LIMIT 1 BY accession")
            assert rows == expect, source
        n_nlp = query(client, "SELECT count() FROM report_nlp FINAL")[0][0]
        assert n_nlp == 21
        assert query(client, "SELECT count() FROM findings FINAL")[0][0] > 0
        assert query(client, "SELECT count() FROM dead_letters FINAL WHERE stage = 'backfill'") == [(4,)]
    finally:
        client.close()


def test_backfill_stop_and_resume_counts_exact(tmp_path: Path) -> None:
    settings = ch_settings(tmp_path)
    path = tmp_path / "many.jsonl"
    write_synthetic(path, 60, bad_every=13)
    first = run_backfill(settings, [path], workers=0, chunk_size=7, write_batch=7, stop_after_chunks=3)
    assert (first.read, first.resumed) == (21, False)
    second = run_backfill(settings, [path], workers=0, chunk_size=7, write_batch=7)
    assert second.resumed and second.read == 60 and second.rejected == 4 and second.loaded == 56
    third = run_backfill(settings, [path], workers=0, chunk_size=7)  # finished: nothing to do
    assert (third.read, third.loaded) == (60, 56) and third.loaded_this_run == 0
    client = open_client(settings.clickhouse)
    try:
        assert query(client, "SELECT count(), uniqExact(event_id) FROM report_versions") == [(56, 56)]
    finally:
        client.close()


def test_backfill_refuses_changed_file_without_restart(tmp_path: Path) -> None:
    settings = ch_settings(tmp_path).replace(clickhouse={"url": ""})  # not reached
    path = tmp_path / "a.jsonl"
    write_synthetic(path, 5)
    cp = tmp_path / "cp.json"
    cp.write_text(json.dumps({"version": 1, "run_time": "2026-01-01T00:00:00+00:00", "counts": {},
                              "files": {str(path.resolve()): {"size": 1, "mtime_ns": 1, "done": 0,
                                                              "finished": False}}}))
    with pytest.raises(ValueError, match="changed since the checkpoint"):
        run_backfill(settings, [path], workers=0, checkpoint=cp)


def test_reason_kind_groups_record_specific_values() -> None:
    a, b = "empty report text for accession X17", "empty report text for accession Y2"
    assert reason_kind(a) == reason_kind(b)
    assert reason_kind("unknown report status 'Q' (hl7_0123)") == reason_kind("unknown report status 'Z' (x)")


FINDINGS = ["The lungs are clear.", "There is a small right pleural effusion.", "No pneumothorax.",
            "Mild cardiomegaly.", "Patchy opacity in the left lower lobe, possibly pneumonia.",
            "A 7 mm nodule in the right upper lobe.", "Degenerative changes of the thoracic spine."]


def write_synthetic(path: Path, n: int, bad_every: int = 0, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with path.open("w") as fh:
        for i in range(1, n + 1):
            if bad_every and i % bad_every == 0:
                fh.write('{"accession": "BROKEN' + str(i) + '", "text": \n')
                continue
            text = "FINDINGS: " + " ".join(rnd.sample(FINDINGS, 3)) + "\nIMPRESSION: " + rnd.choice(FINDINGS)
            fh.write(json.dumps({"accession": f"SYN{i:06d}", "patient_id": f"P{i % 97}", "modality": "CR",
                                 "status_time": f"2026-02-{1 + i % 27:02d}T10:{i % 60:02d}:00Z",
                                 "text": text}) + "\n")


def _record_no(accession: str) -> int:
    return int(accession.removeprefix("SYN"))


def test_backfill_killed_midway_then_rerun_loads_each_report_once(tmp_path: Path) -> None:
    """A real SIGKILL of the CLI (and its worker processes) mid-run, then a rerun.

    What the design promises (streams/ingest/backfill.py, sinks/clickhouse/ddl/001_tables.sql): the
    checkpoint is saved after each write batch, so the rerun re-loads at most the batch that was
    written but not yet checkpointed when the kill came, as identical rows (same run time, same event
    ids) that ReplacingMergeTree collapses. So: FINAL / latest-view counts are exact, physical
    duplicates exist only for that one batch, and no record the checkpoint covered is loaded again
    (checked with ``inserted_at``, which every insert stamps: rows inserted by the rerun are newer than
    every row present after the kill, also when a background merge kept the rerun's copy).
    """
    path = tmp_path / "big.jsonl"
    n, batch = 800, 50
    write_synthetic(path, n, bad_every=100)
    cp = tmp_path / "cp.json"
    env = {**os.environ, "RADSTREAM_STATE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "RADSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'chdb'}", "RADSTREAM_CLICKHOUSE_DATABASE": "rs"}
    args = [PY, "-m", "radstream", "backfill", str(path), "--workers", "1", "--chunk", "25",
            "--write-batch", str(batch), "--checkpoint", str(cp), "--no-progress",
            "--rejects", str(tmp_path / "rejects.tsv")]
    proc = subprocess.Popen(args, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    killed_at = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = json.loads(cp.read_text())["files"][str(path.resolve())]["done"]
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= 200:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = done
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert killed_at, f"backfill did not get going: {proc.stdout.read().decode() if proc.stdout else ''}"
    assert killed_at < n, "finished before the kill: the test proves nothing"
    # the checkpoint as the kill left it (the process may have saved once more before the signal landed)
    checkpointed = json.loads(cp.read_text())["files"][str(path.resolve())]["done"]
    assert killed_at <= checkpointed < n

    settings = ch_settings(tmp_path)
    client = open_client(settings.clickhouse)
    try:
        back = clinical_accessions(client, research_key(settings))
        before = {back[str(a)] for (a,) in query(client, "SELECT DISTINCT accession FROM report_versions")}
        last_insert_before = query(client, "SELECT max(inserted_at) FROM report_versions")[0][0]
    finally:
        client.close()
    covered = {f"SYN{i:06d}" for i in range(1, checkpointed + 1) if i % 100}
    in_flight = {a for a in before if _record_no(a) > checkpointed}  # written, not yet checkpointed
    assert covered <= before
    assert len(in_flight) <= batch and all(_record_no(a) <= checkpointed + batch for a in in_flight)

    rerun = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "backfill resumed" in rerun.stdout
    assert f"read {n}, loaded {n - 8}, rejected 8" in rerun.stdout, rerun.stdout
    client = open_client(settings.clickhouse)
    try:
        back = clinical_accessions(client, research_key(settings))
        # exact where the design promises exactness: deduplicated reads and the latest views
        sql = "SELECT count(), uniqExact(event_id) FROM report_versions FINAL"
        assert query(client, sql) == [(n - 8, n - 8)]
        assert query(client, "SELECT count() FROM reports_latest") == [(n - 8,)]
        assert query(client, "SELECT count() FROM report_nlp FINAL") == [(n - 8,)]
        assert query(client, "SELECT count() FROM dead_letters FINAL") == [(8,)]
        for table in ("report_versions", "report_nlp"):
            # physically: no event beyond the n - 8, each at most twice, and only the in-flight batch twice
            assert query(client, f"SELECT uniqExact(event_id) FROM {table}") == [(n - 8,)], table
            rows = query(client, f"SELECT accession, count() AS c FROM {table} GROUP BY accession "
                                 "HAVING c > 1")
            assert all(c == 2 for _, c in rows), (table, rows)
            assert {back[a] for a, _ in rows} <= in_flight, (table, rows)
            total = query(client, f"SELECT count() FROM {table}")[0][0]
            assert n - 8 <= total <= n - 8 + len(in_flight), (table, total)
        # the rerun loaded exactly what the checkpoint did not cover: nothing below it, everything above it
        reloaded = {back[str(a)] for (a,) in query(
            client, f"SELECT DISTINCT accession FROM report_versions WHERE inserted_at > "
                    f"toDateTime64('{last_insert_before}', 3, 'UTC')")}
        assert not reloaded & covered, sorted(reloaded & covered)[:5]
        assert reloaded == {f"SYN{i:06d}" for i in range(checkpointed + 1, n + 1) if i % 100}
    finally:
        client.close()
