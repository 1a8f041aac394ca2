"""``radstream cohort watch|unwatch`` keep the web page's rules: a user with a role, a registered project,
a steward for an identified one; the watch carries its subscriber's roles; an analyst ends only their
own watch of a de-identified project; every attempt audited. Real Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings
from streams.cohort import WatchRegistry
from tests.sinks.dicom.helpers import audit_events, register_projects, role_env

pytestmark = pytest.mark.integration

RULE = {"name": "big-nodules", "modality": "CT", "finding": {"concept": ["nodule"], "min_size_mm": 8}}


@pytest.fixture
def s(topic_settings: Settings, tmp_path: Path) -> Settings:
    settings = topic_settings.replace(state_dir=str(tmp_path),
                                      research={"allowed_destinations": ("RESEARCH",)})
    register_projects(settings)  # P9 identified, IRB-7 de-identified
    return settings


def _current(s: Settings) -> dict[str, tuple[str, tuple[str, ...] | None]]:
    reg = WatchRegistry(s.kafka, s.topics)
    reg.start()
    assert reg.loaded.wait(30)
    reg.stop()
    return {w.watch_id: (w.requester, w.requester_roles) for w in reg.current()}


def test_watch_and_unwatch_follow_the_roles_and_are_audited(s: Settings, tmp_path: Path) -> None:
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE))
    run = CliRunner().invoke
    ana, ana2 = role_env(s, "ana", "analyst"), role_env(s, "bo", "analyst")
    stew = role_env(s, "stew", "steward")
    args = ["cohort", "watch", "--destination", "RESEARCH", "--rule", str(rule), "--project"]

    unknown = run(main, [*args, "NOPE-1", "--id", "w0"], env=ana)
    assert unknown.exit_code != 0 and "not registered" in unknown.output, unknown.output
    identified = run(main, [*args, "P9", "--id", "w1"], env=ana)
    assert identified.exit_code != 0 and "only a steward" in identified.output, identified.output
    for argv, env in (([*args, "IRB-7", "--id", "w2"], ana), ([*args, "P9", "--id", "w3"], stew)):
        res = run(main, argv, env=env)
        assert res.exit_code == 0, res.output
    assert _current(s) == {"w2": ("ana", ("analyst",)), "w3": ("stew", ("steward",))}
    # the same id would replace the watch standing there: another analyst's, or an identified project's
    for argv, env, says in (([*args, "IRB-7", "--id", "w2"], ana2, "only they or a steward"),
                            ([*args, "IRB-7", "--id", "w3"], ana, "only a steward"),
                            ([*args, "IRB-7", "--requester", "stew"], ana, "in another's name")):
        taken = run(main, argv, env=env)
        assert taken.exit_code != 0 and says in taken.output, taken.output
    assert _current(s) == {"w2": ("ana", ("analyst",)), "w3": ("stew", ("steward",))}

    other = run(main, ["cohort", "unwatch", "w2"], env=ana2)
    assert other.exit_code != 0 and "only they or a steward" in other.output, other.output
    steward_only = run(main, ["cohort", "unwatch", "w3"], env=ana)
    assert steward_only.exit_code != 0 and "only a steward" in steward_only.output, steward_only.output
    for wid, env in (("w2", ana), ("w3", stew)):
        res = run(main, ["cohort", "unwatch", wid], env=env)
        assert res.exit_code == 0, res.output
    assert _current(s) == {}

    events = [e for e in audit_events(s, 11) if e["action"] in ("cohort.watch", "cohort.unwatch")]
    got = sorted((e["action"], e["actor"], e["allowed"]) for e in events)
    assert got == sorted([
        ("cohort.watch", "bo", False), ("cohort.watch", "ana", False), ("cohort.watch", "ana", False),
        ("cohort.watch", "ana", False), ("cohort.watch", "ana", False), ("cohort.watch", "ana", True),
        ("cohort.watch", "stew", True), ("cohort.unwatch", "bo", False), ("cohort.unwatch", "ana", False),
        ("cohort.unwatch", "ana", True), ("cohort.unwatch", "stew", True)])


def test_retrieve_and_cohort_retrieve_audit_every_refusal(s: Settings, tmp_path: Path) -> None:
    # as ``cohort watch`` does: an unregistered project, a missing role, a destination off the allow-list
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("accession\nA1\n")
    run = CliRunner().invoke
    stew, ana = role_env(s, "stew", "steward"), role_env(s, "ana", "analyst")
    one = ["retrieve", "--accession", "A1", "--project"]
    many = ["cohort", "retrieve", "--csv", str(cohort), "--project"]
    for argv, env, says in (([*one, "NOPE-1", "--destination", "RESEARCH"], stew, "not registered"),
                            ([*many, "NOPE-1", "--destination", "RESEARCH"], stew, "not registered"),
                            ([*one, "P9", "--destination", "RESEARCH"], ana, "only a steward"),
                            ([*many, "P9", "--destination", "RESEARCH"], ana, "only a steward"),
                            ([*one, "IRB-7", "--destination", "ELSEWHERE"], ana, "allow-list"),
                            ([*many, "IRB-7", "--destination", "ELSEWHERE"], ana, "allow-list")):
        res = run(main, argv, env=env)
        assert res.exit_code != 0 and says in res.output, res.output  # the clear error still
    events = [e for e in audit_events(s, 6) if e["action"] == "retrieval.request"]
    got = sorted((e["actor"], e["allowed"], e["project"], json.loads(e["detail"])["destination"],
                  json.loads(e["detail"]).get("source", "manual")) for e in events)
    assert got == sorted([
        ("stew", False, "NOPE-1", "RESEARCH", "manual"), ("stew", False, "NOPE-1", "RESEARCH", "cohort"),
        ("ana", False, "P9", "RESEARCH", "manual"), ("ana", False, "P9", "RESEARCH", "cohort"),
        ("ana", False, "IRB-7", "ELSEWHERE", "manual"), ("ana", False, "IRB-7", "ELSEWHERE", "cohort")])
    reasons = [json.loads(e["detail"])["reason"] for e in events]
    assert sum("not registered" in r for r in reasons) == 2 and sum("allow-list" in r for r in reasons) == 2


def test_cohort_retrieve_refuses_a_project_that_is_not_registered(s: Settings, tmp_path: Path) -> None:
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("accession\nA1\n")
    args = ["cohort", "retrieve", "--csv", str(cohort), "--destination", "RESEARCH", "--project"]
    res = CliRunner().invoke(main, [*args, "NOPE-1"], env=role_env(s, "stew", "steward"))
    assert res.exit_code != 0 and "not registered" in res.output, res.output
