"""``radstream text deid``: JSON lines in and out, a clear error per bad line, never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(tmp_path: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RADSTREAM_STATE_DIR": str(tmp_path / "state")}
    env.pop("RADSTREAM_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "radstream", "text", "deid", *args],
        input=data,
        capture_output=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_deid_lines_and_errors(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {"id": "a", "text": "Discussed with Dr. Lee at 13:55 on 03/14/2024.", "patient_id": "psn-1"}
        ),
        "not json",
        json.dumps({"text": 5}),
        "",
        json.dumps({"text": "Hodgkin lymphoma, Baker cyst. MRN 1234567."}),
    ]
    data = (
        ("\n".join(lines) + "\n").encode()
        + b'\xff\xfe{"text": "x"}\n'
        + json.dumps({"text": "a\u0000b"}).encode()
        + b"\n"
    )
    proc = run(tmp_path, data, "-")
    assert proc.returncode == 1
    assert b"could not be de-identified" in proc.stderr
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(out) == 6
    first = out[0]
    assert first["id"] == "a" and "Lee" not in first["text"] and "03/14/2024" not in first["text"]
    assert "13:55" in first["text"]
    assert [s["type"] for s in first["spans"]] == ["NAME", "DATE"]
    for s in first["spans"]:
        assert first["text"][s["start"] : s["end"]] not in ("Lee", "03/14/2024")
    assert out[1] == {"line": 2, "error": "not valid JSON: Expecting value at column 1"}
    assert out[2]["line"] == 3 and '"text" string' in out[2]["error"]
    assert out[3]["text"].startswith("Hodgkin lymphoma, Baker cyst. MRN ") and "1234567" not in out[3]["text"]
    assert out[4]["line"] == 6 and "UTF-8" in out[4]["error"]
    assert out[5]["line"] == 7 and "NUL" in out[5]["error"]
    # private by default: no pseudonym key configured -> a local key was made, owner-only
    key = tmp_path / "state" / "text_deid.key"
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"


def test_file_argument_tag_mode_and_an_enormous_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"text": "Called to J. Doe, RN."}) + "\n" + json.dumps({"text": "x" * 900_001}) + "\n"
    )
    proc = run(tmp_path, b"", "--mode", "tag", str(src))
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert out[0] == {"text": "Called to [NAME], RN.", "spans": [{"start": 10, "end": 16, "type": "NAME"}]}
    assert out[1]["line"] == 2 and "more than the limit" in out[1]["error"]
    assert proc.returncode == 1
