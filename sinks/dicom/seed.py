"""Seed the PACS (Orthanc REST ``POST /instances``) with synthetic studies."""

from __future__ import annotations

import http.client

from sinks.dicom.config import PacsConfig
from sinks.dicom.synth import StudySpec, instance_bytes, specs


def upload(host: str, http_port: int, studies: list[StudySpec]) -> int:
    """Upload every instance of ``studies``; returns the number stored. Raises on any HTTP error."""
    conn = http.client.HTTPConnection(host, http_port, timeout=60)
    n = 0
    try:
        for spec in studies:
            for i in range(spec.images):
                body = instance_bytes(spec, i)
                conn.request("POST", "/instances", body=body, headers={"Content-Type": "application/dicom"})
                resp = conn.getresponse()
                data = resp.read()
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

