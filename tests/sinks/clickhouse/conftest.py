"""Fixtures for the warehouse tests: a real embedded ClickHouse (chDB) store per test.

chDB allows one engine path per process, so every client a test opens is closed at teardown
(the engine shuts down with its last client) and the next test may use another path.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.client import open_client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients
from tests.helpers_chdb import migrated_store, template


def _with_store(settings: Settings, store: Path) -> Settings:
    return settings.replace(clickhouse={"url": f"chdb://{store}", "database": "rs", "flush_ms": 200})


@pytest.fixture
def ch_settings(tmp_path: Path) -> Settings:
    return _with_store(Settings(state_dir=str(tmp_path)), tmp_path / "chdb")


@pytest.fixture(scope="session")
def migrated_template() -> Path:
    """A store migrated once per test session (``tests.helpers_chdb``); each ``ch`` store starts as a
    copy of it. Running the migrations costs ~2 s of CPU per store, copying the ~2 MB store ~0.3 s."""
    return template("rs")


@pytest.fixture
def ch(ch_settings: Settings, migrated_template: Path) -> Iterator[Client]:
    shutil.copytree(migrated_template, ch_settings.clickhouse.url.removeprefix("chdb://"), symlinks=True)
    client = open_client(ch_settings.clickhouse)
    # a no-op on the copy; it still checks that the copy is at the latest migration
    migrate(client, ch_settings.clickhouse.database)
    try:
        yield client
    finally:
        close_readonly_clients()
        client.close()


@pytest.fixture
def sink_settings(topic_settings: Settings, tmp_path: Path) -> Settings:
    """Kafka topics of this test + an embedded store of this test + a consumer group of this test."""
    s = _with_store(topic_settings, tmp_path / "chdb")
    # the sink's own migrate finds the copy at the latest migration (tests/helpers_chdb.py)
    migrated_store(tmp_path / "chdb", "rs")
    return s.replace(kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"}, state_dir=str(tmp_path))
