"""Keyed pseudonyms of patient ids."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from processors.ingest.model import ReportEvent
from processors.ingest.pseudonym import PseudonymKeyError, load_key, pseudonym, pseudonymise


def event(pid: str = "MRN-1", site: str = "s") -> ReportEvent:
    return ReportEvent(site=site, accession="A", report_id="A", version=1, status="final", patient_id=pid,
                       text="t", source_format="json", received_time=datetime(2026, 1, 1, tzinfo=UTC))


def test_pseudonym_is_keyed_stable_and_site_scoped() -> None:
    k1, k2 = b"k" * 32, b"j" * 32
    assert pseudonym(k1, "s", "MRN-1") == pseudonym(k1, "s", "MRN-1")
    assert pseudonym(k1, "s", "MRN-1") != pseudonym(k2, "s", "MRN-1")
    assert pseudonym(k1, "s", "MRN-1") != pseudonym(k1, "t", "MRN-1")
    assert pseudonym(k1, "s", "MRN-1") != pseudonym(k1, "s", "MRN-2")
    assert "MRN" not in pseudonym(k1, "s", "MRN-1")


def test_pseudonymise_event_keeps_event_id_and_flags_it() -> None:
    ev = event()
    ps = pseudonymise(ev, b"k" * 32)
    assert ps.patient_id_is_pseudonym and ps.patient_id.startswith("psn-") and ps.event_id == ev.event_id
    assert pseudonymise(ps, b"k" * 32) == ps  # never twice
    assert pseudonymise(ev, None) is ev
    assert "MRN-1" not in repr(ps.to_avro())


def test_key_sources(tmp_path: Path) -> None:
    assert load_key() is None
    assert load_key("secret-key-value") == b"secret-key-value"
    f = tmp_path / "key"
    f.write_bytes(b"0123456789abcdef0123\n")
    assert load_key(key_file=str(f)) == b"0123456789abcdef0123"
    f.write_bytes(b"short")
    with pytest.raises(PseudonymKeyError, match="shorter"):
        load_key(key_file=str(f))
    with pytest.raises(PseudonymKeyError, match="cannot read") as ei:
        load_key(key_file=str(tmp_path / "missing"))
    assert "0123" not in str(ei.value)
