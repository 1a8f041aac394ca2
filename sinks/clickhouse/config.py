"""The warehouse writer's config section (composed by ``radstream.config``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` without its user and password (``http://user:pw@host:8123`` -> ``http://host:8123``), for
    every message and log line that names a ClickHouse URL: the writer's credentials sit in that URL
    (docs/access.md) and must never reach a page, a log or a probe's answer."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable: show nothing of it rather than the secret
        return "<ClickHouse URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


@dataclass(frozen=True)
class ClickHouseConfig:
    # chdb:///path/to/store (embedded) or http://host:8123; radstream.config fills in the embedded default
    url: str = ""
    database: str = "radstream"
    batch_rows: int = 5000
    flush_ms: int = 500
    # the sink inserts a batch's child tables over this many clients at once (1: one after the other)
    insert_threads: int = 3
    # Kafka static membership of the sink: "auto" = one stable id per (host, embedded store), "" = off
    sink_instance_id: str = "auto"
    # the sink merges the partitions the views read with FINAL into one part every this many seconds
    # (sinks/clickhouse/maintenance.py; one partition per flush); 0 = never
    optimize_interval_s: float = 86400.0
    # limits of a query by a non-admin role (/sql, `radstream sql`, the web app; docs/access.md): the
    # worker that owns the embedded store must not be run out of memory by one answer. ClickHouse refuses
    # a query that would pass one (result_overflow_mode 'throw'); 0 = no limit. The largest documented
    # query (docs/analysts.md, latest_with_argmax) returns a million rows at a million reports.
    query_max_result_rows: int = 5_000_000
    query_max_result_bytes: int = 512 << 20  # uncompressed, as ClickHouse counts a result's blocks
    query_max_memory_usage: int = 4 << 30
    query_max_execution_time_s: int = 300
    # a plain-http server on this host is used only when the process listening on its port runs as
    # root, as this process's user, or as this OS user (name or uid; "clickhouse": only if it exists):
    # the password and every query would go to whoever holds the port (sinks/clickhouse/client.py)
    server_user: str = "clickhouse"
    # a plain-http server on another host with a password in the URL: only with this set (anyone on the
    # path reads the password); use https:// otherwise
    plain_http_remote: bool = False

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.url.startswith(("chdb:", "http://", "https://")):
            out.append(f"url: {self.shown_url!r} is neither chdb://<path> nor http(s)://host:port")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.database):
            out.append(f"database: {self.database!r} is not a plain ClickHouse identifier")
        for name in ("batch_rows", "flush_ms", "insert_threads"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be at least 1, not {getattr(self, name)}")
        for name in ("query_max_result_rows", "query_max_result_bytes", "query_max_memory_usage",
                     "query_max_execution_time_s"):
            if getattr(self, name) < 0:
                out.append(f"{name}: must be 0 (no limit) or more, not {getattr(self, name)}")
        if self.optimize_interval_s < 0:
            out.append(f"optimize_interval_s: must be 0 (off) or more, not {self.optimize_interval_s}")
        return out

    def query_limits(self) -> dict[str, int | str]:
        """The ClickHouse settings that bound a non-admin's query (those not 0)."""
        limits: dict[str, int | str] = {k: v for k, v in (
            ("max_result_rows", self.query_max_result_rows),
            ("max_result_bytes", self.query_max_result_bytes),
            ("max_memory_usage", self.query_max_memory_usage),
            ("max_execution_time", self.query_max_execution_time_s)) if v}
        if "max_result_rows" in limits or "max_result_bytes" in limits:
            limits["result_overflow_mode"] = "throw"  # not a silently cut answer
        return limits

    @property
    def shown_url(self) -> str:
        """The URL as messages may show it: without user and password."""
        return redact_url(self.url)

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb:")
