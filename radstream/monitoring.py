"""``/metrics``, ``/health`` and ``/ready`` of the processes without a web page of their own (the MLLP
listener, the DICOM worker, the storage SCP, ``radstream db sink`` on a ClickHouse server), wired from
Settings: bound to ``metrics.host`` (127.0.0.1 unless configured), behind the same token gate and TLS as
every endpoint (docs/access.md, docs/monitoring.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from radstream import access
from radstream.config import Settings
from streams.ops import Check, Ops, OpsServer, kafka_check


def pacs_check(settings: Settings) -> Check:
    """The PACS answers a C-ECHO from our calling AE."""

    def check() -> object:
        from sinks.dicom.net import echo

        p = settings.pacs
        if not echo(p.host, p.port, p.ae_title, p.calling_ae, timeout=3.0):
            raise RuntimeError(f"no C-ECHO answer from {p.ae_title}@{p.host}:{p.port}")
        return True

    return check


def serve_ops(settings: Settings, service: str, port: int, checks: Mapping[str, Check] | None = None,
              health: Callable[[], Mapping[str, Any]] | None = None) -> OpsServer | None:
    """Start the pages for ``service`` (Kafka is always among the readiness checks); prints where.

    A port that cannot be bound (taken) is reported and the process runs on without them: the pipeline
    matters more than its metrics, and Prometheus shows the target down (``RadstreamProcessDown``)."""
    probes = {"kafka": kafka_check(settings.kafka), **(checks or {})}
    try:
        server = OpsServer(Ops(health, probes), settings.metrics.host, port,
                           gate=access.gate(settings, service), tls=access.tls(settings)).start()
    except OSError as exc:
        print(f"{service}: NOT serving /metrics /health /ready: {settings.metrics.host}:{port}: {exc}",
              file=sys.stderr, flush=True)
        return None
    print(f"{service}: /metrics /health /ready on {server.url}", file=sys.stderr, flush=True)
    return server
