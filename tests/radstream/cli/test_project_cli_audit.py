"""``radstream project add|retire``: every refused attempt is audited (``project.register`` /
``project.retire``, allowed false with the reason), not only a missing role: a project the validation
refuses, one registered already, retiring one never registered. Real Kafka (the projects and audit
topics) and the local audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from radstream.cli import main
from radstream.config import Settings, settings_env
from streams.auth import TokenStore


def _refused(settings: Settings) -> list[tuple[str, str, str, str]]:
    path = Path(settings.auth.audit_log)
    entries: list[dict[str, Any]] = [json.loads(x) for x in path.read_text().splitlines()]
    return [(e["actor"], e["action"], e["project"], json.loads(e["detail"])["reason"]) for e in entries
            if e["action"].startswith("project.") and not e["allowed"]]


def test_refused_registrations_are_audited_with_the_reason(topic_settings: Settings, tmp_path: Path) -> None:
    settings = topic_settings.replace(state_dir=str(tmp_path),
                                      research={"allowed_destinations": ("RESEARCH",)})
    store = TokenStore(settings.auth.token_file)
    store.add_user("stew", ["steward"])
    env = {**settings_env(settings), "RADSTREAM_TOKEN": store.add_token("stew")}
    runner = CliRunner()

    def add(*args: str) -> Any:
        return runner.invoke(main, ["project", "add", *args, "--owner", "pi"], env=env)

    no_irb = add("ID-1", "--destination", "RESEARCH", "--identified")
    assert no_irb.exit_code == 1 and "IRB" in no_irb.output, no_irb.output
    elsewhere = add("DE-1", "--destination", "ELSEWHERE")
    assert elsewhere.exit_code == 1 and "ELSEWHERE" in elsewhere.output, elsewhere.output
    ok = add("DE-1", "--destination", "RESEARCH")
    assert ok.exit_code == 0, ok.output
    again = add("DE-1", "--destination", "RESEARCH")
    assert again.exit_code == 1 and "registered already" in again.output, again.output
    gone = runner.invoke(main, ["project", "retire", "NO-SUCH"], env=env)
    assert gone.exit_code == 1 and "not registered" in gone.output, gone.output

    refused = _refused(settings)
    assert [(actor, action, project) for actor, action, project, _ in refused] == [
        ("stew", "project.register", "ID-1"), ("stew", "project.register", "DE-1"),
        ("stew", "project.register", "DE-1"), ("stew", "project.retire", "NO-SUCH")]
    reasons = [reason for *_, reason in refused]
    assert "IRB" in reasons[0] and "ELSEWHERE" in reasons[1] and "registered already" in reasons[2]
    assert "not registered" in reasons[3]
