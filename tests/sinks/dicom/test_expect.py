"""The registration files and the per-request manifest of what the SCP did with each instance."""

from __future__ import annotations

from pathlib import Path

from sinks.dicom.expect import Registry


def test_register_lookup_release(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register("1.2.3", "P1", "r1", "RESEARCH")
    exp = reg.lookup("1.2.3")
    assert exp is not None and (exp.project_id, exp.request_id) == ("P1", "r1")
    reg.release("1.2.3", "other")  # another request's release leaves it
    assert reg.lookup("1.2.3") is not None
    reg.release("1.2.3", "r1")
    assert reg.lookup("1.2.3") is None


def test_manifest_keeps_the_last_outcome_per_instance(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    assert reg.received("1.2.3", "r1") == {}
    reg.record("1.2.3", "r1", "1.2.3.1", "failed", "OSError: disk full")
    reg.record("1.2.3", "r1", "1.2.3.2", "quarantined", "BurnedInAnnotation=YES")
    reg.record("1.2.3", "r1", "1.2.3.1", "stored")
    reg.record("1.2.3", "r2", "1.2.3.3", "stored")  # another request of the same study
    with reg.manifest("1.2.3", "r1").open("a") as fh:
        fh.write('{"sop": "1.2.3.9", "outc')  # a line cut short by a crash is skipped
    assert reg.received("1.2.3", "r1") == {"1.2.3.1": ("stored", ""),
                                           "1.2.3.2": ("quarantined", "BurnedInAnnotation=YES")}
    reg.forget("1.2.3", "r1")
    assert reg.received("1.2.3", "r1") == {} and reg.received("1.2.3", "r2") != {}
