"""Local commands send their token (the OS user's admin token, or RADSTREAM_TOKEN) and their SQL only to
a worker that is ours: another OS user's process on the worker's port (while the worker is stopped) is
sent nothing, and the command fails saying so. Real ``radstream sql`` processes; the other user's
listener runs as uid 65534 (tests/streams/test_auth_peer.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from radstream.config import Settings, settings_env
from tests.helpers_chdb import seed_store_of
from tests.streams.helpers import free_port
from tests.streams.test_auth_peer import NOBODY, listener, state_with_users

ROOT = Path(__file__).resolve().parents[2]


def sql(settings: Settings, token: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), **env}
    full.pop("RADSTREAM_TOKEN", None)
    if token is not None:
        full["RADSTREAM_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "radstream", "sql", "SELECT 1 AS one", "--format", "csv"],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=120)


def test_the_store_owners_command_sends_its_admin_token_to_no_other_users_listener(tmp_path: Path) -> None:
    # the deployment's state dir (a store there): `radstream sql` first asks the worker's /health
    s = Settings(state_dir=str(tmp_path / "state")).replace(worker={"web_port": free_port()},
                                                              clickhouse={"url": "", "database": "radstream"})
    Path(s.state_dir).mkdir(parents=True)
    seed_store_of(s.clickhouse.url, "radstream")
    with listener(tmp_path, s.worker.web_port) as other:
        out = sql(s, None)
        got = other.received()
    local = (Path(s.auth.token_file).parent / "local.token").read_text().strip()
    assert "Authorization" not in got and local not in got, got
    assert out.returncode != 0, out.stdout
    assert f"refusing to send a token to 127.0.0.1:{s.worker.web_port}" in out.stderr, out.stderr
    assert f"runs as uid {NOBODY}" in out.stderr and local not in out.stderr


def test_an_analysts_command_needs_the_service_user_to_send_its_token_to_the_services_worker(
        tmp_path: Path) -> None:
    # an analyst's own directory (no store): the query goes to the configured worker only
    s = Settings(state_dir=str(tmp_path / "mine")).replace(worker={"web_port": free_port()})
    token = "rst_0a1b2c3d4e5f_analyst-secret"
    with listener(tmp_path, s.worker.web_port) as other:
        refused = sql(s, token)
        got = other.received()
    assert "Authorization" not in got and token not in got and "SELECT" not in got, got
    assert refused.returncode != 0
    assert f"127.0.0.1:{s.worker.web_port}" in refused.stderr and f"uid {NOBODY} (nobody)" in refused.stderr
    assert "auth.service_user" in refused.stderr, refused.stderr

    # the documented setting: the services run as that user, so its worker is sent the token and the query
    with listener(tmp_path, s.worker.web_port) as service:
        ok = sql(s, token, RADSTREAM_AUTH_SERVICE_USER="nobody")
        got = service.received()
    assert ok.returncode == 0, ok.stderr
    assert f"Authorization: Bearer {token}" in got and "SELECT 1 AS one" in got


def test_a_worker_of_our_own_user_is_asked_as_before(tmp_path: Path) -> None:
    s = Settings(state_dir=str(tmp_path / "state")).replace(worker={"web_port": free_port()})
    token = state_with_users(s, ana="analyst")["analyst"]
    with listener(tmp_path, s.worker.web_port, uid=None) as ours:
        out = sql(s, token)
        got = ours.received()
    assert out.returncode == 0, out.stderr
    assert f"Authorization: Bearer {token}" in got
