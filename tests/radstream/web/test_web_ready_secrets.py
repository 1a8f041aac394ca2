"""The web app's ``/ready`` while a ClickHouse server it is configured for does not answer: the writer's
credentials sit in ``clickhouse.url`` (docs/access.md), and no token, of any role, reads them back; a
token without the admin role reads only which check failed and its exception class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from radstream.config import Settings
from radstream.web.app import create_app
from radstream.web.data import Warehouse
from streams.auth import TokenStore
from tests.streams.helpers import free_port

USER, PASSWORD = "radstream_writer_user", "S3cretPw"


@pytest.fixture
def server_mode(kafka_settings: Settings, tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    """Settings of a ClickHouse server with credentials in its URL, on a port nobody serves."""
    settings = kafka_settings.replace(
        state_dir=str(tmp_path / "state"), worker={"web_port": free_port()},
        clickhouse={"url": f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}", "database": "radstream"})
    Path(settings.state_dir).mkdir(parents=True)
    store = TokenStore(settings.auth.token_file)
    tokens = {}
    for user, role in (("prom", "monitor"), ("rita", "analyst"), ("ada", "admin")):
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)
    return settings, tokens


def ready(settings: Settings, token: str,
          warehouse: Warehouse | None = None) -> tuple[int, str, dict[str, Any]]:
    app = create_app(settings, warehouse=warehouse)
    try:
        r = TestClient(app).get("/ready", headers={"Authorization": f"Bearer {token}"})
        return r.status_code, r.text, r.json()["checks"]
    finally:
        app.state.stop_registries()


def test_ready_gives_no_credentials_and_non_admins_only_the_exception_class(
        server_mode: tuple[Settings, dict[str, str]]) -> None:
    settings, tokens = server_mode
    for role in ("monitor", "analyst"):
        status, body, checks = ready(settings, tokens[role])
        assert status == 503 and PASSWORD not in body and USER not in body, body
        # the class only: a message may name hosts or store paths
        assert checks["warehouse"] == "error: OperationalError", (role, checks)
    status, body, checks = ready(settings, tokens["admin"])
    assert status == 503 and PASSWORD not in body and USER not in body, body
    assert checks["warehouse"].startswith("error: OperationalError: ") and "127.0.0.1" in checks["warehouse"]


class _Unanswering:
    """A clickhouse-connect client whose server went away after it was opened: its ``ping()`` returns
    False on any failure (clickhouse-connect's HttpClient.ping). No ClickHouse server runs in the tests;
    this stands for one that stopped answering."""

    def ping(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_server_that_stops_answering_is_named_without_its_credentials(
        server_mode: tuple[Settings, dict[str, str]]) -> None:
    settings, tokens = server_mode
    wh = Warehouse(settings)
    wh._client = _Unanswering()
    with pytest.raises(ConnectionError) as exc:
        wh.reachable()
    assert PASSWORD not in str(exc.value) and USER not in str(exc.value)
    assert f"127.0.0.1:{settings.clickhouse.url.rsplit(':', 1)[1]}" in str(exc.value)
    status, body, checks = ready(settings, tokens["admin"], wh)
    assert status == 503 and PASSWORD not in body and USER not in body, body
    assert checks["warehouse"].startswith("error: ConnectionError: http://127.0.0.1:")
    status, body, checks = ready(settings, tokens["monitor"], wh)
    assert checks["warehouse"] == "error: ConnectionError", body


@pytest.mark.parametrize(("url", "shown"), [
    ("http://u:p@host:8123", "http://host:8123"),
    ("https://u:p%40x@host:8443/db?x=1", "https://host:8443/db?x=1"),
    ("http://u@host:8123", "http://host:8123"),
    ("http://host:8123", "http://host:8123"),
    ("chdb:///var/lib/radstream/chdb", "chdb:///var/lib/radstream/chdb"),
])
def test_redact_url_drops_user_and_password(url: str, shown: str) -> None:
    from sinks.clickhouse.config import redact_url

    assert redact_url(url) == shown
