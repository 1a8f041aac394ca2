"""The SASL stack's super-user password is not on the storage tool's command line (any local user reads
/proc/<pid>/cmdline): it goes in a 0600 Java @argfile in the 0700 broker dir, removed after the format.
A real broker, started with SASL from the stack's jars; the command the code runs is recorded."""

from __future__ import annotations

import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from radstream.stack import kafka as stack

pytestmark = pytest.mark.integration


def test_the_format_steps_command_line_holds_no_password(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    password = "pw" + uuid.uuid4().hex
    real_run = subprocess.run
    seen: list[tuple[list[str], list[tuple[str, int, str]]]] = []

    def recording_run(cmd: list[str], *a: Any, **k: Any) -> Any:
        files = [(c, stat.S_IMODE(Path(c[1:]).stat().st_mode), Path(c[1:]).read_text())
                 for c in cmd if c.startswith("@")]
        seen.append((list(cmd), files))
        return real_run(cmd, *a, **k)

    monkeypatch.setattr(stack.subprocess, "run", recording_run)
    kdir = tmp_path / "kafka"
    st = stack.start_kafka(kdir, tie_to_parent=True, scram=("radstream", password))  # waits for a SASL login
    try:
        formats = [(cmd, files) for cmd, files in seen if any(stack.STORAGE_TOOL in f[2] for f in files)]
        assert len(formats) == 1, seen
        cmd, [(arg, mode, text)] = formats[0]
        assert not any(password in c for c in cmd), cmd
        assert stack.STORAGE_TOOL not in cmd and mode == 0o600
        assert f'"{stack.SCRAM}=[name=radstream,password={password}]"' in text
        assert not Path(arg[1:]).exists()  # removed after the format
        assert (kdir / "data" / "meta.properties").exists() and st.bootstrap
    finally:
        stack.stop_kafka(kdir)


def test_an_argfile_argument_keeps_quotes_and_backslashes() -> None:
    assert stack._argfile_quote('a"b\\c d') == '"a\\"b\\\\c d"'
