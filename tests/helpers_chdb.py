"""A fresh embedded store already at the latest migration, for tests that need one but do not test the
migrations themselves: a copy of a template store migrated once per test process and database.

Running the migrations costs ~2 s of CPU per store (10 s of wall on a loaded 2-core host); copying the
~2 MB template costs ~0.1 s. Whoever opens the copy still runs ``migrate`` on it, which then applies
nothing: that also checks the copy is at the latest migration. The template is built in a process of
its own (chDB holds one engine path per process, and the pytest process may hold another store then).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# builds a migrated store: argv[1] the store, argv[2] the database
_BUILD = """
import sys
from sinks.clickhouse.client import open_client
from sinks.clickhouse.config import ClickHouseConfig
from sinks.clickhouse.migrate import migrate
client = open_client(ClickHouseConfig(url="chdb://" + sys.argv[1], database=sys.argv[2]))
migrate(client, sys.argv[2])
client.close()
"""

_templates: dict[str, Path] = {}
_root: list[Path] = []


def template(database: str) -> Path:
    """The template store of ``database`` (built at the first call of this process)."""
    if database not in _templates:
        if not _root:
            _root.append(Path(tempfile.mkdtemp(prefix="rs-chdb-template-")))
            atexit.register(shutil.rmtree, _root[0], True)
        path = _root[0] / database / "chdb"
        paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))
        subprocess.run([sys.executable, "-c", _BUILD, str(path), database], check=True, cwd=REPO, env=env,
                       timeout=300)
        _templates[database] = path
    return _templates[database]


def migrated_store(store: Path | str, database: str) -> Path:
    """Put a store at the latest migration of ``database`` at ``store`` (which must not exist yet)."""
    store = Path(store)
    shutil.copytree(template(database), store, symlinks=True)
    return store


def seed_store_of(url: str, database: str) -> None:
    """``migrated_store`` at an embedded store's URL (``chdb://<path>``) if nothing is there yet but its
    directory is; a store a test made (an old schema, rows), a missing state directory (what the
    process makes of it may be under test) and a server URL are left alone."""
    if not url.startswith("chdb://"):
        return
    store = Path(url.removeprefix("chdb://"))
    if store.parent.is_dir() and not store.exists():
        migrated_store(store, database)
