"""The self-check of what the direct paths take from pynetdicom, and the fall-back when it fails."""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

from sinks.dicom.wire import compat

ROOT = Path(__file__).resolve().parents[4]
WIRE = ROOT / "sinks" / "dicom" / "wire"


@pytest.fixture(autouse=True)
def fresh_verdicts() -> Iterator[None]:
    """Every test checks afresh and leaves no verdict behind (a False one would turn the direct paths
    off for the tests that run after it in this process)."""
    compat.reset()
    yield
    compat.reset()


def _drop_instance_attribute(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Association.__init__ no longer sets ``name``: a pynetdicom that dropped that instance attribute."""
    init = Association.__init__

    def without(self: Association, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        delattr(self, name)

    monkeypatch.setattr(Association, "__init__", without)


def test_the_installed_pynetdicom_passes_the_self_check() -> None:
    assert compat.check_pynetdicom() == []
    assert compat.check_pynetdicom("scu") == [] and compat.check_pynetdicom("scp") == []
    assert compat.version_problem() is None
    assert compat.usable("scu") and compat.usable("scp")


def test_the_list_names_every_private_pynetdicom_attribute_the_wire_code_reaches() -> None:
    """A new ``assoc._x``/``dul._x`` in the wire code fails here until it is listed in compat.NEEDS."""
    listed = {n.name for n in compat.NEEDS if n.private}
    reached: set[str] = set()
    for path in WIRE.glob("*.py"):
        if path.name != "compat.py":
            reached |= set(re.findall(r"\b(?:assoc|dul|dimse)\)?\.(_[a-z]\w*)", path.read_text()))
    reached = {name for name in reached if not name.startswith("_radstream_")}  # ours, set on their objects
    assert reached and reached <= listed, sorted(reached - listed)
    assert all(n.name.startswith("_") == n.private for n in compat.NEEDS)
    assert all(n.owner in compat.OWNERS and set(n.sides) <= set(compat.SIDES) for n in compat.NEEDS)
    assert len({n.label for n in compat.NEEDS}) == len(compat.NEEDS)


def test_a_removed_method_is_reported_for_the_sides_that_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(DULServiceProvider, "_decode_pdu")
    decode = "DULServiceProvider._decode_pdu"
    assert compat.check_pynetdicom() == [decode]
    assert compat.check_pynetdicom("scu") == compat.check_pynetdicom("scp") == [decode]
    monkeypatch.delattr(Association, "_get_valid_context")  # used by the SCU only
    assert compat.check_pynetdicom("scu") == ["Association._get_valid_context", decode]
    assert compat.check_pynetdicom("scp") == [decode]


def test_a_removed_instance_attribute_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    _drop_instance_attribute(monkeypatch, "_reactor_checkpoint")
    assert compat.check_pynetdicom("scu") == ["Association._reactor_checkpoint"]
    assert compat.check_pynetdicom("scp") == []  # the SCP side does not pause the reactor


def test_an_association_that_cannot_be_made_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(self: Association, ae: Any, mode: str, new_argument: int) -> None:
        raise AssertionError("not reached")

    monkeypatch.setattr(Association, "__init__", changed)
    missing = compat.check_pynetdicom("scp")
    assert missing[0].startswith("Association(AE(), 'requestor'): TypeError")
    assert "DULServiceProvider._recv_pdu" in missing and "Association._kill" in missing
    assert "DULServiceProvider._decode_pdu" not in missing  # a method: still on the class


@pytest.mark.parametrize(("version", "ok"), [
    ("3.0.0", True), ("3.0.4", True), ("3.0.10.dev0", True), ("3.1.0", False), ("2.0.2", False),
    ("4.0.0", False), ("unknown", False)])
def test_the_version_is_checked_against_the_tested_range(version: str, ok: bool) -> None:
    problem = compat.version_problem(version)
    assert (problem is None) == ok
    if not ok:
        assert problem is not None and version in problem and ">=3.0,<3.1" in problem


def test_the_tested_range_is_the_pin_in_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d.replace(" ", "") for d in deps if re.match(r"pynetdicom\b", d)]
    (lo_major, lo_minor), (hi_major, hi_minor) = compat.TESTED
    assert pins == [f"pynetdicom>={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"]


def test_an_untested_version_turns_the_direct_paths_off_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import pynetdicom

    monkeypatch.setattr(pynetdicom, "__version__", "3.1.0")
    with caplog.at_level(logging.WARNING, logger=compat.__name__):
        assert not compat.usable("scu")
        assert not compat.usable("scu")  # checked once
    [record] = caplog.records
    assert "pynetdicom 3.1.0" in record.getMessage() and "SCU" in record.getMessage()
    assert "not a tested version" in record.getMessage()


# -- the fall-back: the SCU and the SCP choose plain pynetdicom -----------------------------------------

class _PublicOnly:
    """An established association as far as pynetdicom's public API goes: send_c_find and send_c_move
    answer like a PACS (two pending responses, then success). Nothing private: the direct paths, which
    read ``_accepted_cx`` and friends, would fail on it."""

    is_established = True
    is_aborted = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    @staticmethod
    def _status(code: int, **counts: int) -> Dataset:
        ds = Dataset()
        ds.Status = code
        for name, value in counts.items():
            setattr(ds, name, value)
        return ds

    def send_c_move(self, ds: Dataset, destination: str, model: Any) -> Iterator[tuple[Dataset, None]]:
        self.calls.append(f"C-MOVE {ds.StudyInstanceUID} to {destination}")
        for done in (1, 2):
            yield self._status(0xFF00, NumberOfRemainingSuboperations=2 - done,
                               NumberOfCompletedSuboperations=done, NumberOfFailedSuboperations=0,
                               NumberOfWarningSuboperations=0), None
        yield self._status(0x0000, NumberOfCompletedSuboperations=2, NumberOfFailedSuboperations=0,
                           NumberOfWarningSuboperations=0), None

    def send_c_find(self, query: Dataset, model: Any) -> Iterator[tuple[Dataset, Dataset | None]]:
        self.calls.append(f"C-FIND {query.AccessionNumber}")
        match = Dataset()
        match.StudyInstanceUID, match.AccessionNumber, match.PatientID = "1.2.3", query.AccessionNumber, "P1"
        yield self._status(0xFF00), match
        yield self._status(0x0000), None


def _one_warning(caplog: pytest.LogCaptureFixture, side: str, missing: str) -> None:
    import pynetdicom

    records = [r for r in caplog.records if r.name == compat.__name__]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert missing in message and f"direct {side} path is off" in message
    assert f"pynetdicom {pynetdicom.__version__}" in message


def test_the_scu_moves_and_finds_through_pynetdicom_when_the_check_fails(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from sinks.dicom.find import Pacs, PacsSession, c_find_studies
    from sinks.dicom.move import c_move_study
    from sinks.dicom.wire import scu

    monkeypatch.delattr(DULServiceProvider, "_decode_pdu")
    started: list[str] = []
    monkeypatch.setattr(scu.DirectExchange, "start", lambda self: started.append(self.name) or True)
    assoc = _PublicOnly()
    pacs = Pacs("ORTHANC", "127.0.0.1", 1, "RADSTREAM", fast_move=True)

    class Session(PacsSession):
        def get(self) -> Any:
            return assoc

    with caplog.at_level(logging.WARNING):
        pendings: list[Any] = []
        moved = c_move_study(pacs, "RESEARCH", "1.2.3", pendings.append, assoc=assoc)
        found = c_find_studies(pacs, accession="A1", session=Session(pacs))
        c_move_study(pacs, "RESEARCH", "1.2.4", assoc=assoc)
    assert (moved.outcome, moved.completed, moved.pendings, len(pendings)) == ("completed", 2, 2, 2)
    assert [m.study_instance_uid for m in found] == ["1.2.3"]
    assert assoc.calls == ["C-MOVE 1.2.3 to RESEARCH", "C-FIND A1", "C-MOVE 1.2.4 to RESEARCH"]
    assert started == []  # the direct exchanges were never tried
    _one_warning(caplog, "SCU", "DULServiceProvider._decode_pdu")


def _conn_open_handlers(store: Any) -> list[Any]:
    return [h[0] if isinstance(h, tuple) else h for h in store._server.get_handlers(evt.EVT_CONN_OPEN)]


@pytest.mark.parametrize("fast_path", [True, False])
def test_the_scp_installs_the_direct_paths_only_when_the_check_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        fast_path: bool) -> None:
    from sinks.dicom.net import set_nodelay
    from sinks.dicom.scp import ResearchStore, ScpConfig
    from sinks.dicom.wire import scp as wire_scp

    def handlers() -> list[Any]:
        store = ResearchStore(ScpConfig(ae_title="RESEARCH", port=0, host="127.0.0.1", store_dir=tmp_path,
                                        allowed_calling_aes=("ORTHANC",), fast_path=fast_path))
        store.start()
        try:
            return _conn_open_handlers(store)
        finally:
            store.stop()

    installers: list[bool] = []
    install = wire_scp.install
    monkeypatch.setattr(wire_scp, "install", lambda *args: installers.append(True) or install(*args))
    passing = handlers()
    assert passing[:2] == [set_nodelay, wire_scp.fast_store_responses]
    assert len(passing) == (3 if fast_path else 2) and installers == ([True] if fast_path else [])
    assert not caplog.records

    compat.reset()
    _drop_instance_attribute(monkeypatch, "_run_loop_delay")  # the SCP's C-STORE loop sets it
    with caplog.at_level(logging.WARNING):
        assert handlers() == [set_nodelay]  # plain pynetdicom: its reactor, its own C-STORE responses
    assert len(installers) == (1 if fast_path else 0)
    _one_warning(caplog, "SCP", "DULServiceProvider._run_loop_delay")


def test_the_worker_decides_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    from radstream.config import Settings
    from sinks.dicom.worker import Worker

    # no broker at that address: the producer is made, never used
    settings = Settings(state_dir=str(tmp_path)).replace(kafka={"bootstrap": "127.0.0.1:1"})

    def worker(s: Settings) -> Worker:
        return Worker(s.kafka, s.topics, s.pacs, s.research, s.state_dir)

    assert worker(settings).pacs.fast_move
    assert worker(settings.replace(pacs={"fast_move": False})).pacs.fast_move is False
    compat.reset()
    monkeypatch.delattr(Association, "_get_valid_context")
    with caplog.at_level(logging.WARNING):
        assert worker(settings).pacs.fast_move is False  # plain pynetdicom from the start
        assert worker(settings).pacs.fast_move is False
    _one_warning(caplog, "SCU", "Association._get_valid_context")
