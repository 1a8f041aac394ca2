"""The demo's one-time sign-in (`make demo` ends with it): a token of the demo user that expires, and that
the next demo run's sign-in revokes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from radstream.cli.demo import DEMO_SIGN_IN, _web_sign_in
from radstream.config import load_settings
from streams.auth import TokenStore


def test_each_demo_sign_in_expires_and_revokes_the_previous_one(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)})
    tokens = []
    for _ in range(2):
        _web_sign_in(settings, None)
        line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("sign in as demo with: ")]
        tokens.append(line[0].removeprefix("sign in as demo with: ").strip())
    store = TokenStore(settings.auth.token_file)
    assert store.verify(tokens[0]) is None
    principal = store.verify(tokens[1])
    assert principal is not None and principal.user == "demo" and principal.roles == {"analyst", "steward"}
    expires = datetime.fromisoformat(store.tokens()[principal.token_id]["expires"])
    assert abs((expires - datetime.now(UTC)) - DEMO_SIGN_IN).total_seconds() < 60
    # each sign-in is in the audit log file, as `radstream auth` records its changes
    events = [json.loads(x) for x in Path(settings.auth.audit_log).read_text().splitlines()]
    made = [json.loads(e["detail"])["token_id"] for e in events if e["action"] == "auth.add-token"]
    assert made == [t.split("_")[1] for t in tokens]
    assert [e["action"] for e in events].count("auth.add-user") == 2


def test_the_local_token_is_made_once_and_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.auth import client_token

    monkeypatch.delenv("RADSTREAM_TOKEN", raising=False)
    settings = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)})
    first = client_token(settings.auth.token_file, settings.auth.audit_log)
    assert client_token(settings.auth.token_file, settings.auth.audit_log) == first  # kept, not made again
    events = [json.loads(x) for x in Path(settings.auth.audit_log).read_text().splitlines()]
    assert [e["action"] for e in events] == ["auth.add-user", "auth.add-token"]
    assert json.loads(events[1]["detail"])["token_id"] == first.split("_")[1]
    assert TokenStore(settings.auth.token_file).verify(first).roles == {"admin"}  # type: ignore[union-attr]
