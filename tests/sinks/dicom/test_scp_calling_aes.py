"""An empty calling-AE allow-list is refused: pynetdicom reads an empty ``require_calling_aet`` as "check
nothing", so ``research.allowed_calling_aes = []`` would let every caller store into the research store.

Real SCP process (``radstream dicom scp``) and a real association."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from radstream.config import load_settings, problems, settings_env
from sinks.dicom.scp import ResearchStore, ScpConfig

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("value", ["", " , ,"])
def test_an_empty_allow_list_is_one_config_problem(tmp_path: Path, value: str) -> None:
    settings = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path),
                                  "RADSTREAM_RESEARCH_ALLOWED_CALLING_AES": value})
    assert settings.research.allowed_calling_aes == ()
    found = problems(settings)
    assert len(found) == 1, found
    assert found[0].startswith("research.allowed_calling_aes: empty, which would accept every calling AE")
    # the default and a listed title are fine
    assert problems(load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)})) == []
    assert problems(load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path),
                                       "RADSTREAM_RESEARCH_ALLOWED_CALLING_AES": "PACS2"})) == []


def test_the_scp_command_refuses_to_start_with_an_empty_allow_list(tmp_path: Path) -> None:
    """It stops with the configuration error before it listens (exit 78), instead of accepting anyone."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    settings = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)}).replace(
        research={"port": port, "allowed_calling_aes": ()})
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    # the old code started listening here (and ran until the timeout)
    proc = subprocess.run([sys.executable, "-m", "radstream", "dicom", "scp", "--metrics-port", "-1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 78, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.startswith("Error: the configuration has 1 problem:\n"
                                  "  research.allowed_calling_aes: empty"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_store_built_without_the_config_check_does_not_listen_for_everyone(tmp_path: Path) -> None:
    """``ScpConfig`` made in code (tools, benches) skips the settings check: ``start`` refuses too. Were
    it to listen, a caller with any AE title would be let in."""
    store = ResearchStore(ScpConfig("RESEARCH", 0, "127.0.0.1", tmp_path / "store", ()))
    accepted = None
    try:
        try:
            port = store.start()
        except ValueError as exc:
            assert "allowed_calling_aes" in str(exc)
        else:
            ae = AE(ae_title="ANYONE")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", port, ae_title="RESEARCH")
            accepted = assoc.is_established
            if accepted:
                assoc.release()
            time.sleep(0.1)
    finally:
        store.stop()
    assert accepted is None, f"the SCP listened with an empty allow-list (a stranger's association " \
                             f"established: {accepted})"
