"""Fixtures of the stream tests: a real ``radstream worker`` process on the session's broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.config import Settings, settings_env
from tests.streams.helpers import ROOT, free_port


@pytest.fixture
def worker(topic_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = topic_settings.replace(
        state_dir=str(tmp_path),
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()},
    )
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "radstream", "worker", "--no-sink"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield settings
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


