"""Report-text de-identification speed against the NLP engine, same reports, same run, one core.

    PYTHONPATH=. python bench/textdeid_speed.py [--repeats 3] [--limit N] [--json] [--clock wall|cpu]

Reports: the shared Open-i dev set (composed as bench/nlp_speed.py does), the long synthetic reports of
bench/nlp_speed.py (~470 words) and the PHI dev set (tests/data/phi/dev.jsonl, PHI-dense). For each:
``processors.nlp`` ``Engine.analyze`` vs ``processors.textdeid.deidentify`` (surrogate mode, a fixed key
and patient), each the best of ``--repeats`` passes after a warm-up pass, pinned to one core. The goal
(issue 13): de-identification costs no more than the NLP per report. ``--clock cpu`` times with the
process's CPU time (less sensitive to other jobs on a shared machine than the wall clock).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench.nlp_speed as nlp_speed  # noqa: E402
from bench.nlp_speed import best_of, dev_reports, synthetic_reports  # noqa: E402

PHI_DEV = REPO / "tests" / "data" / "phi" / "dev.jsonl"


def phi_reports(limit: int | None) -> list[str]:
    texts = [
        json.loads(line)["text"] for line in PHI_DEV.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return texts[:limit] if limit else texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = ap.parse_args()
    if args.clock == "cpu":
        nlp_speed.CLOCK = time.process_time  # best_of reads it at each call
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from processors.nlp import get_engine
    from processors.textdeid import deidentify

    engine = get_engine()
    key, patient = b"bench-key-0123456789abcdef", "psn-00000000000000000000000000000000"
    sets = {
        "openi": dev_reports(args.limit),
        "synthetic_long": synthetic_reports(args.limit or 200),
        "phi_dev": phi_reports(args.limit),
    }
    out: dict[str, dict[str, float]] = {}
    for name, texts in sets.items():
        for t in texts[:20]:  # warm-up: engines built, regexes compiled
            engine.analyze(t)
            deidentify(t, key=key, patient=patient)
        def nlp(texts: list[str] = texts) -> object:
            return [engine.analyze(t) for t in texts]

        def deid(texts: list[str] = texts) -> object:
            return [deidentify(t, key=key, patient=patient) for t in texts]

        nlp_s = best_of(nlp, args.repeats)
        deid_s = best_of(deid, args.repeats)
        n = len(texts)
        out[name] = {
            "reports": n,
            "avg_chars": round(sum(map(len, texts)) / max(1, n)),
            "nlp_ms_per_report": round(1000 * nlp_s / n, 3),
            "deid_ms_per_report": round(1000 * deid_s / n, 3),
            "deid_over_nlp": round(deid_s / nlp_s, 3),
        }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for name, r in out.items():
        print(
            f"{name:15s} {r['reports']:5d} reports, {r['avg_chars']:5d} chars: "
            f"NLP {r['nlp_ms_per_report']:.3f} "
            f"ms, de-id {r['deid_ms_per_report']:.3f} ms per report (de-id/NLP {r['deid_over_nlp']:.2f})"
        )


if __name__ == "__main__":
    main()
