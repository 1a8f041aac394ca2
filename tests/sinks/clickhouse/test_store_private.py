"""The embedded store's files are its OS user's only: the roles guard queries, not the part files,
which hold the stewards-only tables too (original report text, the re-identification map)."""

from __future__ import annotations

import stat
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.clickhouse.client import client_url, private_store_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_store_directory_opened_by_a_client_is_0700(ch: Client) -> None:
    store = Path(client_url(ch).removeprefix("chdb://"))
    assert store.is_dir()
    assert _mode(store) == 0o700


def test_a_store_directory_left_readable_is_closed_and_a_new_one_is_made_private(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    old.chmod(0o755)
    private_store_dir(old)
    assert _mode(old) == 0o700
    new = tmp_path / "a" / "new"
    private_store_dir(new)
    assert _mode(new) == 0o700
