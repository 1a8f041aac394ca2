"""A flood of bad tokens with a known (public) token id costs a bounded amount: at most ``max_verifying``
argon2 checks run at once (64 MiB each), the rest are answered 503 at once without hashing, a bad token
seen lately is refused without hashing again, and a good token still gets in. Each HTTP server takes a
bounded number of connections. A real token store and a real ops server over HTTP."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from streams.auth import Gate, TokenStore
from streams.ops import Ops, OpsServer


def get(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_flood_of_bad_tokens_is_bounded_and_a_good_token_still_works(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    for user in ("prom", "rita"):
        store.add_user(user, ["monitor"])
    known = store.add_token("prom")  # its id is public: audit rows, `auth list`
    good = store.add_token("rita")
    tid = known.split("_")[1]
    server = OpsServer(Ops(), "127.0.0.1", 0, gate=Gate(store, service="flood-test")).start()
    most, stop = 0, threading.Event()

    def watch() -> None:  # how many argon2 checks run at once
        nonlocal most
        while not stop.is_set():
            most = max(most, len(store._verifying))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        n = 24
        with ThreadPoolExecutor(n + 1) as pool:
            started = time.monotonic()
            bogus = [pool.submit(get, server.url + "/health", f"rst_{tid}_garbage{i}") for i in range(n)]
            time.sleep(0.2)
            ok = pool.submit(get, server.url + "/health", good)  # another token id: its own slot
            statuses = [f.result() for f in bogus]
            assert ok.result() == 200
            elapsed = time.monotonic() - started
        # how many wait past busy_wait_s (503) depends on the host's speed and load, not on the bound
        assert set(statuses) <= {401, 503}, statuses
        assert most <= store.max_verifying
        # 24 checks one after the other would take 24 x 0.3-1 s; the refused ones cost no hashing
        assert elapsed < 0.5 * n, elapsed
        # the same bad token again: refused from memory, no second argon2 check
        assert get(server.url + "/health", f"rst_{tid}_again") == 401
        t = time.monotonic()
        assert get(server.url + "/health", f"rst_{tid}_again") == 401
        assert time.monotonic() - t < 0.2
    finally:
        stop.set()
        server.stop()


def test_a_server_takes_a_bounded_number_of_connections(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    store.add_user("prom", ["monitor"])
    token = store.add_token("prom")
    server = OpsServer(Ops(), "127.0.0.1", 0, gate=Gate(store), max_connections=2).start()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]  # hold their threads
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as third:
            third.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert third.recv(100).startswith(b"HTTP/1.1 503"), "a third connection got a thread"
        for s in idle:
            s.close()
        time.sleep(0.3)  # their threads see the close and end
        assert get(server.url + "/health", token) == 200
    finally:
        server.stop()
