"""Seed the PACS (Orthanc REST ``POST /instances``) with synthetic studies."""

from __future__ import annotations

import http.client

from sinks.dicom.config import PacsConfig
from sinks.dicom.synth import StudySpec, instance_bytes, specs


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("POST", "/instances", body=body, headers={"Content-Type": "application/dicom"})
    resp = conn.getresponse()
    return resp, resp.read()


def upload(host: str, http_port: int, studies: list[StudySpec]) -> int:
    """Upload every instance of ``studies``; returns the number stored. Raises on any HTTP error."""
    conn = http.client.HTTPConnection(host, http_port, timeout=60)
    n = 0
    try:
        for spec in studies:
            for i in range(spec.images):
                body = instance_bytes(spec, i)
                try:
                    resp, data = _post(conn, body)
                except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                    # Orthanc closes a keep-alive connection idle for its KeepAliveTimeout (1 s), which
                    # building a large instance on a loaded host can take: again on a new connection
                    # (storing the same instance twice is idempotent in Orthanc)
                    conn.close()
                    conn = http.client.HTTPConnection(host, http_port, timeout=60)
                    resp, data = _post(conn, body)
                if resp.status != 200:
                    raise RuntimeError(f"Orthanc refused {spec.accession}/{i}: "
                                       f"HTTP {resp.status} {data[:200]!r}")
                n += 1
    finally:
        conn.close()
    return n


def seed(pacs: PacsConfig, n_studies: int, images: int, rows: int = 64, first: int = 1,
         prefix: str = "A") -> list[StudySpec]:
    studies = specs(n_studies, images, rows=rows, cols=rows, first=first, prefix=prefix)
    upload(pacs.host, pacs.http_port, studies)
    return studies

