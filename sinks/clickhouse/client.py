"""Opening ClickHouse clients (clickhouse-connect) for embedded chDB and servers alike.

chDB facts this relies on (clickhouse-connect 1.12, chdb 4.x): one process hosts at most one engine
path; any number of clients in that process may share it (each has its own handle and a lock, so a
client may be used from several threads, one call at a time); another process cannot open the same
path while this one has it open.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import clickhouse_connect
import urllib3
from clickhouse_connect.driver._chdbclient import ChdbClient
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.httputil import get_pool_manager_options
from clickhouse_connect.driver.query import QueryContext, QueryResult

from sinks.clickhouse.config import ClickHouseConfig, redact_url
from streams.peer import PeerRefused, Trust, connect, uid_of


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def is_embedded(url: str) -> bool:
    return url.startswith("chdb:")


class _CleanChdbClient(ChdbClient):
    """A chDB client that leaves no output behind a failed call.

    chDB (4.x) keeps the output a query had written when it failed part-way (a limit, a timeout,
    ``throwIf``) and hands it out at the front of the next answer on that handle, which then reads
    wrong rows or fails to parse. Each call here holds the client's lock, and a failed one is followed
    by a throwaway query that takes the leftover before another call may run. Streams (``raw_stream``,
    ``query_*_stream``) are refused: a stream holds the handle after the call returns, so the lock could
    not cover it (a second call would wait on a handle the first caller still reads)."""

    def __init__(self, **kwargs: Any) -> None:
        self._calls = threading.RLock()
        super().__init__(**kwargs)

    @contextlib.contextmanager
    def _cleaned(self) -> Any:
        with self._calls:
            try:
                yield
            except Exception:
                with contextlib.suppress(Exception):
                    super().raw_query("SELECT 1", fmt="TabSeparated")
                raise

    def _query_with_context(self, context: QueryContext) -> QueryResult:
        if context.streaming:
            raise NotImplementedError("streams are not served on an embedded store (read the result whole)")
        with self._cleaned():
            return super()._query_with_context(context)

    def raw_query(self, query: str, parameters: Sequence[Any] | dict[str, Any] | None = None,
                  settings: dict[str, Any] | None = None, fmt: str | None = None,
                  use_database: bool = True, external_data: Any = None,
                  transport_settings: dict[str, str] | None = None) -> bytes:
        with self._cleaned():
            return super().raw_query(query, parameters, settings, fmt, use_database, external_data,
                                     transport_settings)

    def raw_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("streams are not served on an embedded store (use raw_query)")

    def command(self, cmd: str, parameters: Sequence[Any] | dict[str, Any] | None = None,
                data: str | bytes | None = None, settings: dict[str, Any] | None = None,
                use_database: bool = True, external_data: Any = None,
                transport_settings: dict[str, str] | None = None) -> Any:
        with self._cleaned():
            return super().command(cmd, parameters, data, settings, use_database, external_data,
                                   transport_settings)


def _chdb_client(url: str, database: str | None, settings: dict[str, Any]) -> Client:
    """``chdb:///abs/path`` (or ``chdb://memory``) as clickhouse-connect reads such a DSN."""
    parsed = urlparse(url)
    location = parsed.netloc.rpartition("@")[2] if parsed.netloc else unquote(parsed.path)
    path = None if location in ("", "memory", ":memory:") else location
    if path is not None:
        private_store_dir(Path(path))
    options = dict(parse_qsl(parsed.query)) or None
    return _CleanChdbClient(path=path, database=database, settings=settings, chdb_options=options)


def private_store_dir(path: Path) -> None:
    """The embedded store's directory, for its OS user only (0700).

    Its part files hold every table, the stewards-only ones (original report text, the re-identification
    map) included, and chDB writes them with the process's umask (0644 under the usual 022): the
    warehouse's roles guard queries, not the files. A directory of another user is left as it is.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            path.chmod(0o700)
    except OSError:
        return  # not a directory we can make: chDB's own opening fails and says why


_TRUSTS: dict[str, Trust] = {}  # host:port -> whom open_client's config trusts there (client_like etc.)


def server_trust(ch: ClickHouseConfig) -> Trust:
    """Whom a plain-http ClickHouse URL of ``ch`` may be sent its password and queries."""
    uid = None
    if ch.server_user:
        try:
            uid = uid_of(ch.server_user)
        except ValueError:
            if ch.server_user != ClickHouseConfig.server_user:  # the default user need not exist
                raise
    has_password = bool(urlparse(ch.url).password)
    return Trust(uid, ch.plain_http_remote or not has_password, what="queries and the password",
                 setting="clickhouse.server_user (RADSTREAM_CLICKHOUSE_SERVER_USER)",
                 remote_hint="use an https:// URL, or clickhouse.plain_http_remote = true (trusted network)")


class _CheckedHTTPConnection(urllib3.connection.HTTPConnection):
    trust: Trust

    def connect(self) -> None:
        super().connect()  # each new connection of the pool, checked before a byte is sent on it
        try:
            self.trust.check(self.sock)
        except BaseException:
            self.sock.close()
            raise


def _checked_pool(trust: Trust) -> urllib3.PoolManager:
    """A pool whose plain-http connections go only to a peer ``trust`` accepts (streams.peer): a
    ClickHouse server's loopback port may be held by another OS user's process while the server is
    down; its https connections are clickhouse-connect's own (certificate verified)."""
    conn = type("_Conn", (_CheckedHTTPConnection,), {"trust": trust})
    pool = type("_Pool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": conn})
    mgr = urllib3.PoolManager(**get_pool_manager_options())
    mgr.pool_classes_by_scheme = {**mgr.pool_classes_by_scheme, "http": pool}
    return mgr


def _connect(url: str, database: str | None, settings: dict[str, Any] | None,
             trust: Trust | None = None) -> Client:
    if is_embedded(url):
        return _chdb_client(url, database, settings or {})
    parsed = urlparse(url)
    # a database in the URL path is ignored: ClickHouseConfig.database names ours
    dsn = f"{parsed.scheme}://{parsed.netloc}"
    where = f"{parsed.hostname}:{parsed.port}"
    if trust is None:
        trust = _TRUSTS.get(where) or server_trust(ClickHouseConfig(url=url))
    else:
        _TRUSTS[where] = trust
    extra: dict[str, Any] = {}
    if parsed.scheme == "http":
        try:  # one clear line before clickhouse-connect's own first request (which would retry and wrap it)
            connect(parsed.hostname or "localhost", parsed.port or 8123, trust, timeout=5)
        except PeerRefused as exc:
            raise PeerRefused(f"ClickHouse at {redact_url(url)}: {exc}") from None
        except OSError:
            pass  # nobody answers: clickhouse-connect says so its own way (callers wait on its errors)
        extra["pool_mgr"] = _checked_pool(trust)
    return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or {},
                                         connect_timeout=5, send_receive_timeout=60, **extra)


def open_client(ch: ClickHouseConfig, *, create_database: bool = True) -> Client:
    """A read-write client whose default database is ``ch.database``.

    With ``create_database`` the database is created when missing (migrations create the tables).
    """
    url = ch.url
    db = ch.database
    if create_database:
        boot = _connect(url, None, None, server_trust(ch))
        try:
            boot.command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(db)}")
        finally:
            if not is_embedded(url):
                boot.close()
        if is_embedded(url):
            # keep the engine up: closing the last chDB client shuts the engine down
            boot.database = db
            return boot
    return _connect(url, db, None, server_trust(ch))


def client_like(client: Client) -> Client:
    """Another read-write client on the same store and database (chDB: a handle on the same engine)."""
    return _connect(client_url(client), str(client.database or "default"), None)


def readonly_client_like(url: str, database: str, limits: dict[str, Any] | None = None) -> Client:
    # final (and the limits) first: once readonly=1 is set on a chDB handle no setting can be changed
    return _connect(url, database, {"final": 1, **(limits or {}), "readonly": 1})


def client_url(client: Client) -> str:
    """The URL a client was opened with (``chdb:///path`` or ``http://host:port``)."""
    return str(client.uri)
