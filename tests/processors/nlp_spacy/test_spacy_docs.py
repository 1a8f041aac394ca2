"""docs/spacy.md's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_documented_example_runs(tmp_path: Path) -> None:
    text = (REPO / "docs/spacy.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    code = block.replace("/tmp/radstream_pipeline", str(tmp_path / "pipeline"))
    # thinc, which spaCy imports, imports torch when it can (5-6 s of CPU in the [ml] venv) for nothing the
    # example uses: the run hides it, as a venv without the [ml] extra has none
    code = "import sys; sys.modules['torch'] = None\n" + code
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "pneumothorax pneumothorax findings True False False False patient" in out
    assert "BI-RADS 4A" in out and "12.0" in out
