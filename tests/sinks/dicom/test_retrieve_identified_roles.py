"""Only a steward may send studies to an identified project, on every path: ``radstream retrieve`` and
``cohort retrieve`` ask for the steward role (refusals audited) and put the steward's roles in the request;
the DICOM worker refuses a request for an identified project that carries no roles, whatever its source
(fail closed). Real Kafka, a real Orthanc, our research SCP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings
from streams import serde
from tests.streams.helpers import consume

from .helpers import audit_events, final_of, request, role_env, statuses
from .test_dicom_worker import research_scp, run_worker

pytestmark = pytest.mark.integration


def _sent(settings: Settings, n: int) -> list[dict[str, Any]]:
    return [serde.decode("retrieval_requested", m.value())
            for m in consume(settings, settings.topics.retrieval_requests, n)]


def test_retrieve_to_an_identified_project_needs_a_steward_and_sends_the_roles(
        dicom_settings: Settings, tmp_path: Path) -> None:
    s = dicom_settings  # P9 identified, IRB-7 de-identified
    runner = CliRunner()
    args = ["retrieve", "--accession", "A3", "--destination", "RESEARCH", "--project"]
    analyst = runner.invoke(main, [*args, "P9"], env=role_env(s, "ana", "analyst"))
    assert analyst.exit_code != 0 and "only a steward" in analyst.output, analyst.output
    (refused,) = [e for e in audit_events(s, 1) if e["action"] == "retrieval.request"]
    assert (refused["actor"], refused["allowed"]) == ("ana", False)
    deid = runner.invoke(main, [*args, "IRB-7"], env=role_env(s, "ana", "analyst"))
    assert deid.exit_code == 0, deid.output  # a de-identified project: any requester
    ok = runner.invoke(main, [*args, "P9"], env=role_env(s, "stew", "steward"))
    assert ok.exit_code == 0, ok.output
    # an identified project's request names the steward who makes it, never another name
    alias = runner.invoke(main, [*args, "P9", "--requester", "someone"], env=role_env(s, "stew", "steward"))
    assert alias.exit_code != 0 and "name the steward who makes them" in alias.output, alias.output
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("accession\nA3\n")
    bad = runner.invoke(main, ["cohort", "retrieve", "--csv", str(cohort), "--project", "P9",
                               "--destination", "RESEARCH"], env=role_env(s, "ana", "analyst"))
    assert bad.exit_code != 0 and "only a steward" in bad.output, bad.output
    good = runner.invoke(main, ["cohort", "retrieve", "--csv", str(cohort), "--project", "P9",
                                "--destination", "RESEARCH"], env=role_env(s, "stew", "steward"))
    assert good.exit_code == 0, good.output
    sent = _sent(s, 3)  # the topic's partitions: no order across them
    got = sorted((r["project_id"], r["requester"], str(r["requester_roles"]), r["source"]) for r in sent)
    assert got == [
        ("IRB-7", "ana", "None", "manual"), ("P9", "stew", "['steward']", "cohort"),
        ("P9", "stew", "['steward']", "manual")]


def test_the_worker_refuses_a_request_without_roles_for_an_identified_project_whatever_its_source(
        dicom_settings: Settings) -> None:
    s = dicom_settings  # P2 identified
    manual = request(s, "A1", project="P2", source="manual", requester="cli", requester_roles=None)
    nosource = request(s, "A1", project="P2", requester="who", requester_roles=None)
    steward = request(s, "A2", project="P2", source="manual", requester="stew", requester_roles=["steward"])
    with research_scp(s):
        run_worker(s)
    events = statuses(s, {manual, nosource, steward})
    for rid in (manual, nosource):
        final = final_of(events, rid)
        assert final["state"] == "failed" and "does not say its requester's roles" in final["error"], final
    assert final_of(events, steward)["state"] == "completed"
