"""sinks.dicom.synth: synthetic studies for the PACS."""

from __future__ import annotations

from sinks.dicom import synth


def test_synthetic_uids_are_deterministic_and_sizes_as_asked() -> None:
    a, b = synth.specs(2, 3), synth.specs(2, 3)
    assert [s.sop_uids() for s in a] == [s.sop_uids() for s in b]
    assert a[0].study_uid != a[1].study_uid and a[0].accession == "A1" and a[1].accession == "A2"
    rows = synth.rows_for_kb(128)
    assert abs(rows * rows * 2 - 128 * 1024) < 2 * rows * 2 + 2
    assert len(synth.instance_bytes(synth.specs(1, 1, rows=rows, cols=rows)[0], 0)) > 128 * 1024
