"""Seeding the PACS (sinks.dicom.seed) against a real Orthanc."""

from __future__ import annotations

import time

import pytest

from radstream.config import Settings
from sinks.dicom import seed, synth

pytestmark = pytest.mark.integration


def test_upload_goes_on_when_orthanc_closed_the_idle_keep_alive_connection(
        pacs_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orthanc closes a keep-alive connection idle for its KeepAliveTimeout (1 s); building the next
    instance can take longer on a loaded host (the web tests' seeding failed so, with a broken pipe)."""
    real = synth.instance_bytes

    def slow(spec: synth.StudySpec, i: int) -> bytes:
        if i == 1:
            time.sleep(2.5)
        return real(spec, i)

    monkeypatch.setattr(seed, "instance_bytes", slow)
    spec = synth.StudySpec("KA1", "KAPAT1", "KEEP^ALIVE", "20240101", 2, rows=8, cols=8)
    assert seed.upload(pacs_settings.pacs.host, pacs_settings.pacs.http_port, [spec]) == 2
