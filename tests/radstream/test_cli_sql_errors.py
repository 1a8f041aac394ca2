"""``radstream sql`` as docs/analysts.md tells it: an analyst runs it with ``RADSTREAM_TOKEN`` from a
directory of their own (no store there), and the local admin in the deployment's state directory. A real
embedded store served by a real SQL page (the worker's), real subprocesses of the command; the Kafka the
commands are configured with is not running (nothing of this needs it: no connection spam, no waits).

Review r16 (session 17), findings 3 and 7: from their own directory the analyst's query never reached the
worker (its store is not the caller's ``./.state/chdb``): the command created an empty store there and
called the valid token invalid; and an admin read only "the query could not be checked" for a typo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from radstream import access
from radstream.config import Settings
from sinks.clickhouse.access import UNCHECKED
from streams.audit import FileAudit
from streams.auth import TokenStore
from tests.sinks.clickhouse.sql_page import call

ROOT = Path(__file__).resolve().parents[2]
NO_KAFKA = "127.0.0.1:1"  # nothing listens there


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The deployment's directory (its state in ``./.state``, a migrated store) and tokens by role."""
    from sinks.clickhouse.sink import ClickHouseSink

    home = tmp_path_factory.mktemp("deployment")
    s = Settings(state_dir=str(home / ".state"))
    Path(s.state_dir).mkdir()
    ClickHouseSink(s.clickhouse, s.topics).close()  # creates and migrates the store
    store = TokenStore(s.auth.token_file)
    tokens = {}
    for user, role in (("alice", "analyst"), ("root", "admin")):
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)
    return home, tokens


@contextmanager
def worker(home: Path, port: int) -> Iterator[None]:
    """The worker's SQL page on ``port``, serving the deployment's store (as ``radstream worker``)."""
    from sinks.clickhouse.query import close_readonly_clients
    from sinks.clickhouse.service import SinkService
    from sinks.clickhouse.sink import ClickHouseSink
    from sinks.clickhouse.web import SqlServer

    s = Settings(state_dir=str(home / ".state")).replace(kafka={"bootstrap": NO_KAFKA})
    service = SinkService(s.kafka, s.topics, s.clickhouse)
    service.sink = ClickHouseSink(s.clickhouse, s.topics)  # the store open; no Kafka loop
    gate = access.gate(s, "worker", audit=FileAudit(s.auth.audit_log))
    srv = SqlServer(service, "127.0.0.1", port, gate=gate)
    srv.start()
    try:
        yield
    finally:
        srv.stop()
        close_readonly_clients()
        service.sink.close()


def radstream_sql(cwd: Path, port: int, query: str, token: str | None,
                  *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """The command as a user runs it in ``cwd``: no RADSTREAM_* settings but the worker's port and a
    Kafka that is not there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_")}
    env.update(PYTHONPATH=str(ROOT), RADSTREAM_WORKER_WEB_PORT=str(port), RADSTREAM_KAFKA_BOOTSTRAP=NO_KAFKA)
    if token is not None:
        env["RADSTREAM_TOKEN"] = token
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "radstream", "sql", query, "--format", "csv", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - started


def test_an_analyst_in_their_own_directory_is_answered_by_the_worker(
        deployment: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    home, tokens = deployment
    own = tmp_path / "alice"
    own.mkdir()
    port = _free_port()
    with worker(home, port):
        ok, took = radstream_sql(own, port, "SELECT count() AS n FROM reports_latest", tokens["analyst"])
        assert ok.returncode == 0 and ok.stdout.splitlines() == ['"n"', "0"], ok.stderr
        assert ok.stderr == "" and took < 30, (took, ok.stderr)
        bad, _ = radstream_sql(own, port, "SELECT 1", "rst_000000000000_not-a-secret")
        assert bad.returncode == 1 and f"the worker at http://127.0.0.1:{port}/sql refused RADSTREAM_TOKEN" \
            in bad.stderr, bad.stderr
        # finding 7: an analyst reads only that the check failed (docs/access.md: no yes/no oracle)
        typo, _ = radstream_sql(own, port, "SELECT study_ref FROM findings_latest LIMIT 1", tokens["analyst"])
        assert typo.returncode == 1 and typo.stderr.strip().endswith(f"Error: {UNCHECKED}"), typo.stderr
        # ... and an admin, who may read everything, the engine's cause
        status, body = call(port, "/sql", tokens["admin"], "SELECT study_ref FROM findings_latest LIMIT 1")
        assert status == 403 and body.startswith(f"{UNCHECKED}: ") and "study_ref" in body, body
        assert "UNKNOWN_IDENTIFIER" in body, body
    # no worker: said plainly, where it asked and why the store is not opened from here instead
    down, took = radstream_sql(own, port, "SELECT count() FROM reports_latest", tokens["analyst"])
    assert down.returncode == 1 and "not a valid token" not in down.stderr, down.stderr
    assert f"no worker answers at http://127.0.0.1:{port}/sql" in down.stderr, down.stderr
    assert "needs the store's OS user, in the deployment's state directory" in down.stderr, down.stderr
    assert "rdkafka" not in down.stderr and took < 30, (took, down.stderr)
    # opening directly from here: refused before anything is made
    direct, _ = radstream_sql(own, port, "SELECT 1", tokens["analyst"], "--direct")
    assert direct.returncode == 1 and f"no store in {own / '.state'}" in direct.stderr, direct.stderr
    # no token at all: said so, before asking anyone
    bare, _ = radstream_sql(own, port, "SELECT 1", None)
    assert bare.returncode == 1 and "set RADSTREAM_TOKEN" in bare.stderr, bare.stderr
    assert list(own.iterdir()) == []  # no stray .state (store, token store, audit log) in their directory


def test_the_admin_in_the_deployment_directory(deployment: tuple[Path, dict[str, str]]) -> None:
    """The local admin (no token: the OS user's local token): through the worker when it runs, else by
    opening the store; either way an engine error gives the admin its cause. Opened directly, the query
    is audited to the audit topic too, which is down here: librdkafka's refused connections are said
    once per 10 s, not 7 times a second."""
    home, _ = deployment
    port = _free_port()
    typo = "SELECT study_ref FROM findings_latest LIMIT 1"
    with worker(home, port):
        ok, _ = radstream_sql(home, port, "SELECT count() AS n FROM reports_latest", None)
        assert ok.returncode == 0 and ok.stdout.splitlines() == ['"n"', "0"], ok.stderr
        bad, _ = radstream_sql(home, port, typo, None)
        assert bad.returncode == 1 and "UNKNOWN_IDENTIFIER" in bad.stderr, bad.stderr
    ok, _ = radstream_sql(home, port, "SELECT count() AS n FROM reports_latest", None)
    assert ok.returncode == 0 and ok.stdout.splitlines() == ['"n"', "0"], ok.stderr
    bad, _ = radstream_sql(home, port, typo, None)
    assert bad.returncode == 1 and "Unknown expression identifier `study_ref`" in bad.stderr, bad.stderr
    for run in (ok, bad):
        assert run.stderr.count("rdkafka") < 5, run.stderr  # one a kind per 10 s, not ~70
        assert "kept in the local audit log" in run.stderr, run.stderr
