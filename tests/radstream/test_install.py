"""`pip install .` gives a working `radstream` command: a wheel is built from a copy of the source (no
network: the build backend is the project venv's setuptools), installed into a fresh venv, and the installed
command is run from a directory outside the checkout, so every module and data file comes from the install.

The fresh venv finds the locked dependencies through a .pth file naming the project venv's site-packages
(the same packages pip would install from the lock, without downloading them again); radstream itself is
not in that venv (tests run it from the checkout through PYTHONPATH)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("radstream", "streams", "processors", "sinks", "schemas")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], data: bytes | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, input=data, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout.decode()[-3000:], proc.stderr.decode()[-3000:])
    return proc


def pip(venv: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]


def _source_files() -> set[str]:
    """Every file of the five packages that git tracks or would (as paths in a wheel); outside a git
    checkout every file but caches."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *PACKAGES],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0:
        return {p for p in out.stdout.split() if (ROOT / p).is_file()}
    return {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """(wheel, venv, env) with radstream installed from its wheel into venv."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for rel in _source_files():  # a clean copy: no build/, egg-info or caches of the checkout
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, src / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RADSTREAM_CONFIG")}
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(wheels), str(src)], cwd=tmp, env=env)
    (wheel,) = wheels.glob("radstream-*.whl")
    venv = tmp / "venv"
    # no pip or setuptools of its own (they would shadow the locked ones): this venv's pip installs into it
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    python = str(venv / "bin" / "python")
    purelib = Path(_run([python, "-c", where], cwd=tmp, env=env).stdout.decode().strip())
    (purelib / "_radstream_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip(venv), "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp, env=env)
    yield wheel, venv, env


def test_the_wheel_holds_every_file_of_the_packages(installed: tuple[Path, Path, dict[str, str]]) -> None:
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_files() - names)
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools.package-data]): {missing}"
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "radstream = radstream.cli:main" in entry_points


def test_the_installed_command_runs_from_outside_the_checkout(
        installed: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    _, venv, env = installed
    radstream = str(venv / "bin" / "radstream")
    env = {**env, "RADSTREAM_STATE_DIR": str(tmp_path / "state")}
    assert not (tmp_path / "radstream").exists()

    where = _run([str(venv / "bin" / "python"), "-c",
                  "import radstream, sinks.clickhouse.migrate as m, processors.textdeid as t; "
                  "print(radstream.__file__, m.DDL_DIR, t.__file__)"], cwd=tmp_path, env=env).stdout.decode()
    assert str(ROOT) not in where and all(p.startswith(str(venv)) for p in where.split()), where

    helped = _run([radstream, "--help"], cwd=tmp_path, env=env).stdout.decode()
    assert "db" in helped and "worker" in helped and "text" in helped

    # the text de-identifier reads its rules and lexicons (processors/textdeid/*.json, lexicons/*.txt)
    line = json.dumps({"id": "r1", "text": "Discussed with Dr. Lee at 13:55 on 03/14/2024.",
                       "patient_id": "psn-1"})
    out = json.loads(_run([radstream, "text", "deid", "-"], cwd=tmp_path, env=env, data=line.encode() + b"\n")
                     .stdout.decode())
    assert out["id"] == "r1" and "Lee" not in out["text"] and out["spans"], out

    # the migrations (sinks/clickhouse/ddl/*.sql) on an embedded store in the temporary directory
    url = f"chdb://{tmp_path / 'chdb'}"
    migrated = _run([radstream, "db", "migrate"], cwd=tmp_path, env={**env, "RADSTREAM_CLICKHOUSE_URL": url})
    text = migrated.stdout.decode()
    assert "applied 001_tables" in text and "012_nlp_version_keys" in text, text
    again = _run([radstream, "db", "migrate"], cwd=tmp_path, env={**env, "RADSTREAM_CLICKHOUSE_URL": url})
    assert again.stdout.decode().startswith("up to date"), again.stdout

    # the cluster layout (sinks/clickhouse/cluster_layout.json) and the dependencies pip sees as installed
    ddl = _run([radstream, "db", "migrate", "--cluster", "c1", "--print"], cwd=tmp_path, env=env)
    ddl_text = ddl.stdout.decode()
    assert "ENGINE = Distributed(c1, radstream, findings_local, cityHash64(accession))" in ddl_text
    _run([*pip(venv), "check"], cwd=tmp_path, env=env)
