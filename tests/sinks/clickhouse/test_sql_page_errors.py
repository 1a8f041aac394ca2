"""What the SQL page's ``/health``, ``/ready`` and ``/sql`` say while the sink cannot open its embedded
store (a real ``SinkService`` on a chDB path that cannot be created, a real ``SqlServer``): the store's
path is an admin's (docs/access.md), so anyone else reads only the exception's class."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.config import Settings
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.service import SinkService
from sinks.clickhouse.web import SqlServer
from streams.auth import Gate, TokenStore
from tests.sinks.clickhouse.sql_page import call

HIDDEN = "hospital-research-store"
get = functools.partial(call, timeout=30)


@pytest.fixture
def unopenable(tmp_path: Path) -> Iterator[tuple[SqlServer, dict[str, str]]]:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    s = Settings(state_dir=str(tmp_path)).replace(kafka={"bootstrap": "127.0.0.1:1"})  # never reached
    svc = SinkService(s.kafka, s.topics, ClickHouseConfig(url=f"chdb://{blocker / HIDDEN}", database="rs"))
    store = TokenStore(tmp_path / "tokens.json")
    tokens = {}
    for user, role in (("prom", "monitor"), ("rita", "analyst"), ("ada", "admin")):
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)
    server = SqlServer(svc, "127.0.0.1", 0, gate=Gate(store))
    svc.start()
    server.start()
    try:
        deadline = time.monotonic() + 30
        while svc.error is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert svc.error is not None and HIDDEN in repr(svc.error), "the store opened after all"
        yield server, tokens
    finally:
        server.stop()
        svc.stop(5)


def test_the_store_path_reaches_only_admins(unopenable: tuple[SqlServer, dict[str, str]]) -> None:
    server, tokens = unopenable
    for role in ("monitor", "analyst"):
        status, body = get(server.port, "/health", tokens[role])
        assert status == 200 and HIDDEN not in body, body
        assert json.loads(body)["sink"].startswith("error: ") and "(" not in json.loads(body)["sink"]
        status, body = get(server.port, "/ready", tokens[role])
        assert status == 503 and HIDDEN not in body, body
        assert json.loads(body)["checks"]["clickhouse"] == "error: RuntimeError"
    status, body = get(server.port, "/sql", tokens["analyst"], "SELECT 1")
    assert status == 503 and "still opening" in body and HIDDEN not in body, body
    # an admin reads the whole message
    assert HIDDEN in get(server.port, "/health", tokens["admin"])[1]
    assert HIDDEN in get(server.port, "/sql", tokens["admin"], "SELECT 1")[1]
