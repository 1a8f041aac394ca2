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

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.url.startswith(("chdb:", "http://", "https://")):
            out.append(f"url: {self.shown_url!r} is neither chdb://<path> nor http(s)://host:port")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.database):
            out.append(f"database: {self.database!r} is not a plain ClickHouse identifier")
        for name in ("batch_rows", "flush_ms", "insert_threads"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be at least 1, not {getattr(self, name)}")
        if self.optimize_interval_s < 0:
            out.append(f"optimize_interval_s: must be 0 (off) or more, not {self.optimize_interval_s}")
        return out

    @property
    def shown_url(self) -> str:
        """The URL as messages may show it: without user and password."""
        return redact_url(self.url)

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb:")
