"""Fixtures of the stream tests: a real ``radstream worker`` process on the session's broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radstream.config import Settings
from tests.streams.helpers import free_port, worker_process


@pytest.fixture
def worker(topic_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = topic_settings.replace(
        state_dir=str(tmp_path),
        kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"},
        worker={"web_port": free_port()},
    )
    with worker_process(settings, tmp_path / "worker.log", "--no-sink"):
        yield settings


