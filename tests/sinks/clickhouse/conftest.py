"""Fixtures for the warehouse tests: a real embedded ClickHouse (chDB) store per test.

chDB allows one engine path per process, so every client a test opens is closed at teardown
(the engine shuts down with its last client) and the next test may use another path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from radstream.config import Settings
from sinks.clickhouse.client import open_client
from sinks.clickhouse.migrate import migrate
from sinks.clickhouse.query import close_readonly_clients


def _with_store(settings: Settings, store: Path) -> Settings:
    return settings.replace(clickhouse={"url": f"chdb://{store}", "database": "rs", "flush_ms": 200})


@pytest.fixture
def ch_settings(tmp_path: Path) -> Settings:
    return _with_store(Settings(state_dir=str(tmp_path)), tmp_path / "chdb")


REPO = Path(__file__).resolve().parents[3]

# builds a migrated store at argv[1] (in a process of its own: chDB holds one engine path per process,
# and another store may be open in this one when the first test asks for the template)
_TEMPLATE = """
import sys
from radstream.config import Settings
from sinks.clickhouse.client import open_client
from sinks.clickhouse.migrate import migrate
cfg = Settings().replace(clickhouse={"url": "chdb://" + sys.argv[1], "database": "rs"}).clickhouse
client = open_client(cfg)
migrate(client, "rs")
client.close()
"""


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store migrated once per test session; each ``ch`` store starts as a copy of it. Running the
    migrations costs ~2 s of CPU per store, copying the ~2 MB store ~0.3 s (its symlinks are relative)."""
    path = tmp_path_factory.mktemp("chdb-template") / "chdb"
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
    subprocess.run([sys.executable, "-c", _TEMPLATE, str(path)], check=True, cwd=REPO, env=env, timeout=300)
    return path


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
    return s.replace(kafka={"consumer_group": f"g{uuid.uuid4().hex[:8]}"}, state_dir=str(tmp_path))
