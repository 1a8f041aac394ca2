"""The live-feed consumer example of docs/analysts.md runs against the real broker and prints the
latest version of each accession (an older version re-delivered later is ignored)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from radstream.config import Settings

from .factories import finding, findings, report
from .kafka_helpers import produce_all, produce_raw

ROOT = Path(__file__).resolve().parents[3]


def example() -> str:
    text = (ROOT / "docs" / "analysts.md").read_text()
    match = re.search(r"<!-- live-feed-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "live feed example missing"
    return match.group(1)


def test_the_example_is_short() -> None:
    code = [line for line in example().splitlines() if line.strip()]
    assert len(code) <= 18


def test_live_feed_example_prints_the_latest_version_per_accession(topic_settings: Settings) -> None:
    s = topic_settings
    t = s.topics.findings
    x1, x2, y1 = report("X", 1), report("X", 2, status="corrected"), report("Y", 1)
    items = [
        (t, "report_findings", "default|X", findings(x1, [finding("nodule"), finding("effusion")])),
        (
            t,
            "report_findings",
            "default|Y",
            findings(y1, [finding("mass"), finding("fracture", negated=True)]),
        ),
        (t, "report_findings", "default|X", findings(x2, [finding("nodule")])),
        (t, "report_findings", "default|X", findings(x1, [finding("effusion")])),  # stale re-delivery
    ]
    produce_all(s, items)
    produce_raw(s, t, b"default|Z", b"garbage")
    env = dict(os.environ, BOOTSTRAP=s.kafka.bootstrap, TOPIC=t, GROUP="doc-example", IDLE_S="4")
    out = subprocess.run(
        [sys.executable, "-c", example()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sorted(lines) == sorted(["X 1 ['nodule', 'effusion']", "Y 1 ['mass']", "X 2 ['nodule']"])
    assert lines.index("X 1 ['nodule', 'effusion']") < lines.index("X 2 ['nodule']")
