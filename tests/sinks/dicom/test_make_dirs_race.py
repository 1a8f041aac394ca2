"""An identified project's directory never ends group-readable because a de-identified write (a study in
flight when the project was re-registered identified) made it at the same time: ``make_dirs``' mkdir and
its widening chmod are one step for the other writers of the store (real threads, a real directory)."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sinks.dicom import journal


def test_a_de_identified_write_never_loosens_what_an_identified_one_tightened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "store"
    root.mkdir(mode=0o750)
    proj = str(root / "P1")
    real_chmod = os.chmod
    made, go = threading.Event(), threading.Event()

    def slow_chmod(path: Any, mode: int, *a: Any, **k: Any) -> None:
        if threading.current_thread().name == "deid" and path == proj and mode == 0o750:
            made.set()
            go.wait(10)  # the de-identified writer pauses between its mkdir and its chmod
        real_chmod(path, mode, *a, **k)

    monkeypatch.setattr(os, "chmod", slow_chmod)
    deid = threading.Thread(name="deid", target=journal.make_dirs,
                            args=(str(root), os.path.join(proj, "1.2.3.deid"), 0o750))
    ident = threading.Thread(name="ident", target=journal.make_dirs,
                             args=(str(root), os.path.join(proj, "1.2.840.orig"), 0o700))
    deid.start()
    assert made.wait(10)
    ident.start()  # the identified writer finds the level and tightens it, or waits for the other
    time.sleep(0.5)
    go.set()
    deid.join(10)
    ident.join(10)
    assert not deid.is_alive() and not ident.is_alive()
    assert stat.S_IMODE(os.stat(proj).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(proj, "1.2.840.orig")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(proj, "1.2.3.deid")).st_mode) == 0o750
