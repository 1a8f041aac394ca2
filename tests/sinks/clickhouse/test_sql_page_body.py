"""The SQL page reads a POSTed query only with a plain ``Content-Length`` of at most ``MAX_QUERY_BYTES``:
a missing, negative or non-numeric one is refused before any body byte is read (``rfile.read(-1)``
would read until the client closes). A real ``SqlServer`` (of a worker without the sink) over a socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse.web import MAX_QUERY_BYTES, SqlServer
from streams.auth import Gate, TokenStore


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[SqlServer, str]]:
    store = TokenStore(tmp_path / "tokens.json")
    store.add_user("ann", ["analyst"])
    token = store.add_token("ann")
    server = SqlServer(None, "127.0.0.1", 0, gate=Gate(store))
    server.start()
    try:
        yield server, token
    finally:
        server.stop()


def post(server: SqlServer, token: str, length: str | None, body: bytes) -> str:
    """The status line of the answer to a POST whose body is sent but not ended (the connection stays
    open for writing): a server that waits for the end of the body times out here."""
    header = b"" if length is None else f"Content-Length: {length}\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
                  + header + b"\r\n" + body)
        try:
            return s.recv(200).decode().splitlines()[0]
        except TimeoutError:
            return "no answer: the server is still reading the body"


@pytest.mark.parametrize(("length", "status"), [
    ("-1", "411"), (None, "411"), ("abc", "411"), ("1_0", "411"), (" -5", "411"),
    (str(MAX_QUERY_BYTES + 1), "413"),
])
def test_a_length_that_is_not_a_plain_byte_count_is_refused_before_the_body(
        page: tuple[SqlServer, str], length: str | None, status: str) -> None:
    server, token = page
    line = post(server, token, length, b"x" * (2 * MAX_QUERY_BYTES))
    assert line.split()[1:2] == [status], line


def test_a_query_of_its_length_is_read(page: tuple[SqlServer, str]) -> None:
    server, token = page
    line = post(server, token, "8", b"SELECT 1")
    assert line.split()[1] == "503", line  # read and answered: this worker runs without the sink
