"""A plain-http ClickHouse server's password and queries go only to a process of the server's user:
another OS user's process that holds the server's loopback port (while the server is down) is sent
nothing. The other user is real: a listener run as uid 65534 (tests/streams/test_auth_peer.py)."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest

from sinks.clickhouse.client import _checked_pool, open_client, server_trust
from sinks.clickhouse.config import ClickHouseConfig
from streams.peer import PeerRefused
from tests.streams.helpers import free_port
from tests.streams.test_auth_peer import NOBODY, listener

PASSWORD = "ch-squatted-password"
BASIC = base64.b64encode(f"radstream:{PASSWORD}".encode()).decode()


def config(port: int, server_user: str = "") -> ClickHouseConfig:
    return ClickHouseConfig(url=f"http://radstream:{PASSWORD}@127.0.0.1:{port}", server_user=server_user)


def test_another_users_process_on_the_servers_port_is_sent_no_password_and_no_query(tmp_path: Path) -> None:
    port = free_port()
    with listener(tmp_path, port) as other:
        with pytest.raises(PeerRefused) as refused:
            open_client(config(port))
        got = other.received()
    assert BASIC not in got and "query" not in got and got.strip() in ("", "b''"), got
    msg = str(refused.value)
    assert f"ClickHouse at http://127.0.0.1:{port}" in msg and f"runs as uid {NOBODY}" in msg, msg
    assert "clickhouse.server_user" in msg and PASSWORD not in msg


def test_the_configured_server_user_is_sent_the_request(tmp_path: Path) -> None:
    # the listener is no ClickHouse (its answer does not parse): what counts is that it was asked
    port = free_port()
    with listener(tmp_path, port) as server:
        with pytest.raises(Exception) as failed:  # noqa: PT011 - any error of the client's, not a refusal
            open_client(config(port, server_user=str(NOBODY)))
        got = server.received()
    assert not isinstance(failed.value, PeerRefused), failed.value
    assert f"Authorization: Basic {BASIC}" in got, got


def test_a_remote_plain_http_server_with_a_password_needs_the_opt_in() -> None:
    # no other host in the tests: the decision for a peer not on this host (uid None)
    remote = ipaddress.ip_address("192.0.2.10")
    ch = ClickHouseConfig(url=f"http://radstream:{PASSWORD}@192.0.2.10:8123", server_user="")
    why = server_trust(ch).refusal(remote, 8123, None)
    assert "another host" in why and "https://" in why and "clickhouse.plain_http_remote" in why
    assert server_trust(ClickHouseConfig(url=ch.url, server_user="", plain_http_remote=True)).refusal(
        remote, 8123, None) == ""
    # no password in the URL: the queries may go (as before); https is clickhouse-connect's own (verified)
    assert server_trust(ClickHouseConfig(url="http://192.0.2.10:8123", server_user="")).refusal(
        remote, 8123, None) == ""


def test_an_unknown_server_user_is_a_config_problem_but_the_default_need_not_exist() -> None:
    with pytest.raises(ValueError, match="no OS user"):
        server_trust(ClickHouseConfig(url="http://127.0.0.1:8123", server_user="no-such-user-here"))
    server_trust(ClickHouseConfig(url="http://127.0.0.1:8123"))  # "clickhouse", absent on this host


def test_every_new_connection_of_the_clients_pool_is_checked_not_only_the_first(tmp_path: Path) -> None:
    # the up-front check passed (a server of ours) and the port changes hands later (a restart): the
    # pool's next connection is checked again before the request goes
    port = free_port()
    pool = _checked_pool(server_trust(config(port)))
    with listener(tmp_path, port, None) as ours:
        assert pool.request("GET", f"http://127.0.0.1:{port}/?query=SELECT+1", retries=False).status == 200
        assert "SELECT+1" in ours.received()
    pool.clear()
    with listener(tmp_path, port) as other:
        with pytest.raises(PeerRefused, match=f"runs as uid {NOBODY}"):
            pool.request("GET", f"http://127.0.0.1:{port}/?query=SELECT+2", retries=False)
        assert "SELECT+2" not in other.received()
