"""Opening ClickHouse clients (clickhouse-connect) for embedded chDB and servers alike.

chDB facts this relies on (clickhouse-connect 1.12, chdb 4.x): one process hosts at most one engine
path; any number of clients in that process may share it (each has its own handle and a lock, so a
client may be used from several threads, one call at a time); another process cannot open the same
path while this one has it open.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from sinks.clickhouse.config import ClickHouseConfig


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def is_embedded(url: str) -> bool:
    return url.startswith("chdb:")


def _connect(url: str, database: str | None, settings: dict[str, Any] | None) -> Client:
    if is_embedded(url):
        return clickhouse_connect.get_client(dsn=url, database=database, settings=settings or {})
    parsed = urlparse(url)
    # a database in the URL path is ignored: ClickHouseConfig.database names ours
    dsn = f"{parsed.scheme}://{parsed.netloc}"
    return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or {},
                                         connect_timeout=5, send_receive_timeout=60)


def open_client(ch: ClickHouseConfig, *, create_database: bool = True) -> Client:
    """A read-write client whose default database is ``ch.database``.

    With ``create_database`` the database is created when missing (migrations create the tables).
    """
    url = ch.url
    db = ch.database
    if create_database:
        boot = _connect(url, None, None)
        try:
            boot.command(f"CREATE DATABASE IF NOT EXISTS {quote_ident(db)}")
        finally:
            if not is_embedded(url):
                boot.close()
        if is_embedded(url):
            # keep the engine up: closing the last chDB client shuts the engine down
            boot.database = db
            return boot
    return _connect(url, db, None)


def client_like(client: Client) -> Client:
    """Another read-write client on the same store and database (chDB: a handle on the same engine)."""
    return _connect(client_url(client), str(client.database or "default"), None)


def readonly_client_like(url: str, database: str, limits: dict[str, Any] | None = None) -> Client:
    # final (and the limits) first: once readonly=1 is set on a chDB handle no setting can be changed
    return _connect(url, database, {"final": 1, **(limits or {}), "readonly": 1})


def client_url(client: Client) -> str:
    """The URL a client was opened with (``chdb:///path`` or ``http://host:port``)."""
    return str(client.uri)
