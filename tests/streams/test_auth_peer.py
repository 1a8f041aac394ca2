"""A token goes over plain HTTP only to a process of ours (streams.peer): another OS user's process that
binds a port we would send a token to (a worker that is stopped, a metrics port nobody serves) is sent
nothing. The other user is real: a listener started as uid 65534 (``setpriv``; the tests run as root)
that records every byte it receives."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams import peer
from streams.peer import PeerRefused, Trust, urlopen
from tests.streams.helpers import free_port

NOBODY = 65534
TOKEN = "rst_0123456789ab_squatted-secret"
# a listener that records what each connection sends (repr, one line) and answers 200 "{}" to a request
LISTENER = r"""
import socket, sys
srv = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if 'v6only' in sys.argv[3:]:
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
if 'defer' in sys.argv[3:]:  # a connection stays half-open until data comes, never accepted
    srv.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 30)
srv.listen(16)
print('LISTENING', flush=True)
if 'defer' in sys.argv[3:]:
    import time
    time.sleep(600)
while True:
    conn, _ = srv.accept()
    conn.settimeout(2)
    data = b''
    try:
        while b'\r\n\r\n' not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b'\r\n\r\n')
        sizes = [int(x.split(b':')[1]) for x in head.split(b'\r\n') if x.lower().startswith(b'content-len')]
        while sizes and len(body) < sizes[0]:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
            data += chunk
    except OSError:
        pass
    print(repr(data), flush=True)
    if data:
        conn.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n'
                     b'X-Radstream-Sink: ready\r\n\r\n{}')
    conn.close()
"""


@dataclass
class Listener:
    port: int
    out: Path

    def received(self) -> str:
        """What the listener was sent so far (repr of each connection's bytes, a line each)."""
        time.sleep(0.3)  # the last connection's line
        return "\n".join(x for x in self.out.read_text().splitlines() if x != "LISTENING")


@contextmanager
def listener(tmp: Path, port: int, uid: int | None = NOBODY, host: str = "127.0.0.1",
             *extra: str) -> Iterator[Listener]:
    """A recording listener on ``host:port`` as a process of ``uid`` (None: ours, root); ``defer`` in
    ``extra``: one that accepts nothing (TCP_DEFER_ACCEPT); ``v6only``: a v6 one that takes no IPv4."""
    out = tmp / f"listener-{port}-{uid}-{host}.out"
    prefix = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    # the system's python: the test's interpreter may live where uid 65534 cannot read
    with out.open("w") as fh:
        proc = subprocess.Popen([*prefix, "/usr/bin/python3", "-c", LISTENER, host, str(port), *extra],
                                stdout=fh, stderr=subprocess.STDOUT, cwd="/")
    try:
        deadline = time.monotonic() + 15
        while "LISTENING" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        yield Listener(port, out)
    finally:
        proc.kill()
        proc.wait(10)


def state_with_users(settings: Any, **users: str) -> dict[str, str]:
    """Make the state dir of ``settings`` with a token store holding ``users`` (name=role); role -> token."""
    from streams.auth import TokenStore

    Path(settings.state_dir).mkdir(parents=True)
    store = TokenStore(settings.auth.token_file)
    tokens = {}
    for user, role in users.items():
        store.add_user(user, [role])
        tokens[role] = store.add_token(user)
    return tokens


def ask(port: int, trust: Trust, host: str = "127.0.0.1") -> bytes:
    req = urllib.request.Request(f"http://{host}:{port}/sql", data=b"SELECT 1", method="POST",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urlopen(req, trust, timeout=5) as resp:
        body: bytes = resp.read()
        return body


@pytest.fixture(autouse=True)
def _as_root() -> None:
    assert os.getuid() == 0, "these tests start the other user's listener with setpriv: run as root"


def test_another_users_listener_is_sent_no_token_and_the_refusal_names_port_and_uids(tmp_path: Path) -> None:
    port = free_port()
    with listener(tmp_path, port) as other:
        with pytest.raises(PeerRefused) as exc:
            ask(port, Trust())
        got = other.received()
    # it was connected to (the check is of the connection itself) and sent nothing at all
    assert got == "b''", got
    msg = str(exc.value)
    assert f"127.0.0.1:{port}" in msg and f"uid {NOBODY} (nobody)" in msg and "expected uid 0 (root" in msg
    assert TOKEN not in msg and "\n" not in msg


def test_a_dual_stack_listener_of_another_user_is_refused_too(tmp_path: Path) -> None:
    # bound to [::]: an IPv4 client's connection is listed in tcp6 as ::ffff:127.0.0.1
    port = free_port()
    with listener(tmp_path, port, host="::") as other:
        with pytest.raises(PeerRefused, match=f"uid {NOBODY}"):
            ask(port, Trust())
        with pytest.raises(PeerRefused, match=f"uid {NOBODY}"):
            ask(port, Trust(), host="[::1]")
        assert "Authorization" not in other.received()


def test_a_connection_the_other_user_has_not_accepted_is_refused_too(tmp_path: Path) -> None:
    # half-open under TCP_DEFER_ACCEPT: sock_diag shows such a socket as uid 0 (root's, trusted), the
    # listener that holds it is the other user's; an unaccepted socket of kernels before sk_uid shows 0 too
    port = free_port()
    with listener(tmp_path, port, NOBODY, "127.0.0.1", "defer"), \
            pytest.raises(PeerRefused, match=f"runs as uid {NOBODY}"):
        ask(port, Trust())


OTHER, SERVICE = 1000, 2000  # another user whose uid is below that of the user our services run as


@pytest.mark.parametrize(("ours", "theirs", "to_theirs", "to_ours"), [
    (("::", "v6only"), ("127.0.0.1", "defer"), "127.0.0.1", "[::1]"),
    (("0.0.0.0", ), ("::1", "v6only", "defer"), "[::1]", "127.0.0.1"),
], ids=["ours-v6only-theirs-v4", "ours-v4-any-theirs-v6only"])
def test_a_half_open_connection_goes_by_the_listener_that_holds_it_not_the_ports_largest_uid(
        tmp_path: Path, ours: tuple[str, ...], theirs: tuple[str, ...], to_theirs: str, to_ours: str) -> None:
    # a v4 listener and a V6ONLY v6 one share a port across users; the other user's (defer: never
    # accepted, so the connection shows uid 0) is the one the kernel routes ``to_theirs`` to
    port = free_port()
    with listener(tmp_path, port, SERVICE, *ours) as mine, listener(tmp_path, port, OTHER, *theirs) as other:
        with pytest.raises(PeerRefused, match=f"runs as uid {OTHER}"):
            ask(port, Trust(service_uid=SERVICE), host=to_theirs)
        # the address the kernel routes to ours: sent (the check is not a blanket refusal of the port)
        assert ask(port, Trust(service_uid=SERVICE), host=to_ours) == b"{}"
        assert TOKEN in mine.received()
        assert TOKEN not in other.received()


def test_the_proc_tables_give_the_uid_sock_diag_gives(tmp_path: Path) -> None:
    # the fallback where netlink sock_diag is not available, on the same real connections
    for host, uid in (("127.0.0.1", NOBODY), ("::", NOBODY), ("127.0.0.1", None)):
        port = free_port()
        with listener(tmp_path, port, uid, host), socket.create_connection(("127.0.0.1", port)) as sock:
            ours, theirs = peer._endpoint(sock.getsockname()), peer._endpoint(sock.getpeername())
            via_diag = peer._diag_one(theirs, ours)
            entry, listeners = peer._proc_tables(theirs, ours)
            assert via_diag is not None and via_diag[1] == entry == (uid or 0), (host, via_diag, entry)
            assert peer._listener_uid(theirs, listeners, {0}) == peer._listener_uid(
                theirs, peer._diag_listeners(port), {0}) == (uid or 0)


def test_our_own_listener_and_the_configured_service_user_are_sent_the_token(tmp_path: Path) -> None:
    port = free_port()
    with listener(tmp_path, port, uid=None) as ours:
        assert ask(port, Trust()) == b"{}"
        assert f"Authorization: Bearer {TOKEN}" in ours.received()
    port = free_port()
    with listener(tmp_path, port) as service:  # an analyst's command and the service user's worker
        assert ask(port, Trust(service_uid=NOBODY)) == b"{}"
        assert f"Authorization: Bearer {TOKEN}" in service.received()


def test_a_peer_on_another_host_gets_no_token_over_plain_http_unless_allowed() -> None:
    # no other host in the tests: the decision for a peer that /proc does not list (uid None)
    remote, loopback = ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("127.0.0.1")
    assert "a peer on another host: set auth.tls_cert" in Trust().refusal(remote, 6066, None)
    assert Trust(plain_http_remote=True).refusal(remote, 6066, None) == ""
    # a loopback peer is always on this host: not listed means not known, whatever the opt-out says
    assert "cannot tell which user" in Trust(plain_http_remote=True).refusal(loopback, 6066, None)


def test_a_service_user_that_does_not_exist_is_a_config_problem() -> None:
    from streams.config import AuthConfig

    assert AuthConfig(service_user="no-such-radstream-user").problems() == [
        "service_user: no OS user 'no-such-radstream-user'"]
    assert AuthConfig(service_user="nobody").problems() == AuthConfig(service_user="65534").problems() == []


def test_sock_diag_tells_a_v6only_listener_from_a_dual_stack_one() -> None:
    # a dual-stack :: listener can hold an IPv4 connection, a V6ONLY one cannot (_listener_uid)
    for v6only in (True, False):
        with socket.socket(socket.AF_INET6) as srv:
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
            srv.bind(("::", 0))
            srv.listen(1)
            port = srv.getsockname()[1]
            assert [(str(x.addr), x.v6only) for x in peer._diag_listeners(port)] == [("::", v6only)]
    # ours on 127.0.0.1, another's V6ONLY :: on the same port: an IPv4 connection is ours; with V6ONLY
    # unknown (the /proc tables) the other's could hold it: its uid decides (refused)
    v4, any6 = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::")
    flags: list[tuple[bool | None, int]] = [(True, 2000), (None, 1000), (False, 1000)]
    for flag, decides in flags:
        found = [peer.Listening(v4, 8, 2000), peer.Listening(any6, 8, 1000, flag)]
        assert peer._listener_uid((v4, 8), found, {0, 2000}) == decides, flag
