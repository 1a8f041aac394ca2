"""``radstream auth add-user|add-token|revoke|list`` on a token store in a temp state dir; every change
is in the audit log file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from radstream.cli import main
from streams.auth import TokenStore


def test_auth_commands_manage_users_and_tokens(tmp_path: Path) -> None:
    env = {"RADSTREAM_STATE_DIR": str(tmp_path)}
    run = CliRunner()
    out = run.invoke(main, ["auth", "add-user", "alice", "--role", "analyst"], env=env)
    assert out.exit_code == 0, out.output
    bad = run.invoke(main, ["auth", "add-user", "bob", "--role", "superuser"], env=env)
    assert bad.exit_code != 0
    out = run.invoke(main, ["auth", "add-token", "alice", "--note", "laptop"], env=env)
    assert out.exit_code == 0, out.output
    token = out.stdout.strip().splitlines()[-1]
    store = TokenStore(tmp_path / "auth" / "tokens.json")
    principal = store.verify(token)
    assert principal is not None and principal.user == "alice" and principal.roles == {"analyst"}
    listed = run.invoke(main, ["auth", "list"], env=env).stdout
    assert "alice\tanalyst" in listed and "laptop" in listed and token.split("_", 2)[2] not in listed
    assert run.invoke(main, ["auth", "add-token", "nobody"], env=env).exit_code != 0
    out = run.invoke(main, ["auth", "revoke", principal.token_id], env=env)
    assert out.exit_code == 0 and principal.token_id in out.stdout
    assert store.verify(token) is None
    actions = [json.loads(line)["action"] for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert actions == ["auth.add-user", "auth.add-token", "auth.revoke"]


def test_a_token_with_a_lifetime_is_listed_with_its_expiry_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    env = {"RADSTREAM_STATE_DIR": str(tmp_path)}
    run = CliRunner()
    assert run.invoke(main, ["auth", "add-user", "alice", "--role", "analyst"], env=env).exit_code == 0
    out = run.invoke(main, ["auth", "add-token", "alice", "--expires", "8h"], env=env)
    assert out.exit_code == 0, out.output
    tid = out.stdout.strip().splitlines()[-1].split("_")[1]
    expires = datetime.fromisoformat(TokenStore(tmp_path / "auth" / "tokens.json").tokens()[tid]["expires"])
    assert abs((expires - datetime.now(UTC)) - timedelta(hours=8)) < timedelta(minutes=1)
    assert f"expires {expires.isoformat()}" in run.invoke(main, ["auth", "list"], env=env).stdout
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert audit[-1]["action"] == "auth.add-token"
    assert json.loads(audit[-1]["detail"])["expires"] == expires.isoformat()
    for bad in ("0h", "8", "8 weeks", "-1d"):
        out = run.invoke(main, ["auth", "add-token", "alice", "--expires", bad], env=env)
        assert out.exit_code == 2 and "e.g. 30m, 8h or 7d" in out.output, (bad, out.output)
