"""``radstream cohort retrieve|export`` against real Kafka and Orthanc."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from processors.ingest.pseudonym import keyed_identifier
from processors.ingest.research import open_study_ref
from radstream.cli import main
from radstream.config import Settings
from radstream.stack.orthanc import free_port
from radstream.text_deid import research_key
from streams import serde

from .conftest import SMALL, spec
from .helpers import from_start

pytestmark = pytest.mark.integration


def _env(s: Settings) -> dict[str, str]:
    return {"RADSTREAM_STATE_DIR": s.state_dir, "RADSTREAM_KAFKA_BOOTSTRAP": s.kafka.bootstrap,
            "RADSTREAM_TOPICS_RETRIEVAL_REQUESTS": s.topics.retrieval_requests,
            "RADSTREAM_TOPICS_PROJECTS": s.topics.projects,  # cohort retrieve needs the project registered
            "RADSTREAM_PACS_PORT": str(s.pacs.port), "RADSTREAM_PACS_HTTP_PORT": str(s.pacs.http_port),
            "RADSTREAM_RESEARCH_ALLOWED_DESTINATIONS": "RESEARCH",
            "RADSTREAM_WORKER_WEB_PORT": str(free_port())}  # no warehouse endpoint: nothing is skipped


def _requests(s: Settings, n: int) -> list[dict[str, object]]:
    c = from_start(s, s.topics.retrieval_requests)
    out: list[dict[str, object]] = []
    for _ in range(40):
        out += [serde.decode("retrieval_requested", m.value()) for m in c.consume(50, timeout=0.25)
                if not m.error()]
        if len(out) >= n:
            break
    c.close()
    return out


def test_cohort_dry_run_retrieve_and_export(dicom_settings: Settings, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("Accession\nA1\nA2\nNOPE9\n")
    runner, env = CliRunner(), _env(dicom_settings)

    dry = runner.invoke(main, ["cohort", "retrieve", "--csv", str(cohort), "--project", "IRB-7",
                               "--destination", "RESEARCH", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert f"3 request(s), 2 studies, {2 * SMALL} instances expected, 1 without a match" in dry.output
    assert "nothing skipped" in dry.output  # the warehouse endpoint is not there, and it says so

    bad = runner.invoke(main, ["cohort", "retrieve", "--csv", str(cohort), "--project", "IRB-7",
                               "--destination", "ELSEWHERE"], env=env)
    assert bad.exit_code != 0 and "allow-list" in bad.output

    out = runner.invoke(main, ["cohort", "retrieve", "--csv", str(cohort), "--project", "IRB-7",
                               "--destination", "RESEARCH", "--requester", "dr.who"], env=env)
    assert out.exit_code == 0, out.output
    reqs = _requests(dicom_settings, 3)
    # the radiology list goes out in research terms: keyed accessions and the encrypted study reference
    key = research_key(dicom_settings)
    assert sorted(str(r["accession"]) for r in reqs) == sorted(
        keyed_identifier(key, "accession", a) for a in ("A1", "A2", "NOPE9"))
    assert sorted(open_study_ref(key, str(r["study_ref"])).accession for r in reqs) == ["A1", "A2", "NOPE9"]
    assert {(r["project_id"], r["requester"], r["source"], r["destination_ae"]) for r in reqs} == {
        ("IRB-7", "dr.who", "cohort", "RESEARCH")}

    manifest = runner.invoke(main, ["cohort", "export", "--csv", str(cohort)], env=env)
    assert manifest.exit_code == 0, manifest.output
    rows = list(csv.DictReader(io.StringIO(manifest.output)))
    by_acc = {r["accession"]: r for r in rows}
    assert by_acc["A1"]["study_instance_uid"] == spec("A", 1).study_uid and by_acc["A1"]["modality"] == "CT"
    assert by_acc["A2"]["patient_id"] == spec("A", 2).patient_id
    assert by_acc["NOPE9"]["study_instance_uid"] == ""
