"""spaCy components vs the engine alone: what putting radstream into a spaCy pipeline costs.

    PYTHONPATH=. python bench/spacy_components.py [--repeats 3] [--limit N] [--long 100] [--json]

Same reports as bench/nlp_speed.py (the shared Open-i dev set read at run time, and its seeded long
synthetic reports), one process pinned to one core, best of ``--repeats`` passes after a warm-up:

- engine: ``Engine.analyze(text)`` alone;
- spaCy tokenizer: ``spacy.blank("en")(text)``;
- blank + radstream: ``spacy.blank("en")`` with the one ``radstream`` component;
- blank + sections + context: with ``radstream_sections`` and ``radstream_context`` (one engine run per
  Doc: the second component takes the first one's analysis);
- the same, each Doc also serialised (``Doc.to_bytes``, what ``DocBin``/``n_process`` do).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from nlp_speed import dev_reports, synthetic_reports  # noqa: E402


def systems() -> dict[str, Callable[[str], object]]:
    import spacy

    import processors.nlp_spacy  # noqa: F401  (registers the factories from a source tree)
    from processors.nlp.engine import get_engine

    engine = get_engine()
    tok = spacy.blank("en")
    one = spacy.blank("en")
    one.add_pipe("radstream")
    two = spacy.blank("en")
    two.add_pipe("radstream_sections")
    two.add_pipe("radstream_context")
    return {
        "engine (Engine.analyze)": engine.analyze,
        "spaCy tokenizer": tok,
        "blank + radstream": one,
        "blank + sections + context": two,
        "blank + radstream + Doc.to_bytes": lambda t: one(t).to_bytes(),
    }


def _each(fn: Callable[[str], object], texts: list[str]) -> None:
    for t in texts:
        fn(t)


def interleaved(passes: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best seconds of each pass, the systems taking turns (a busy machine slows all of them alike)."""
    for fn in passes.values():
        fn()  # warm-up
    best = dict.fromkeys(passes, float("inf"))
    for _ in range(repeats):
        for name, fn in passes.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N dev reports.")
    ap.add_argument("--long", type=int, default=100, help="Number of long synthetic reports.")
    ap.add_argument("--json", action="store_true", help="Print the results as JSON too.")
    args = ap.parse_args()

    data = {"dev": dev_reports(args.limit), "long": synthetic_reports(args.long)}
    words = {k: sum(len(t.split()) for t in v) / len(v) for k, v in data.items()}
    cores = sorted(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    os.sched_setaffinity(0, {cores[-1]})
    funcs = systems()
    results: dict[str, dict[str, float]] = {k: {} for k in data}
    for name, texts in data.items():
        # each result is dropped at once, as in a stream (a list of 3,000 live Docs costs GC time)
        passes = {s: (lambda fn=fn, texts=texts: _each(fn, texts)) for s, fn in funcs.items()}
        best = interleaved(passes, args.repeats)
        results[name] = {s: len(texts) / sec for s, sec in best.items()}
    os.sched_setaffinity(0, set(cores))
    load_after = os.getloadavg()

    from rich.console import Console
    from rich.table import Table

    table = Table(title="radstream in spaCy (reports/s; one process pinned to one core)")
    for col in ("data", "system", "reports/s", "ms/report", "x engine", "x spaCy tokenizer"):
        table.add_column(col, justify="left" if col in ("data", "system") else "right")
    for name, res in results.items():
        eng, tok = res["engine (Engine.analyze)"], res["spaCy tokenizer"]
        for system, rate in res.items():
            table.add_row(
                f"{name} (~{words[name]:.0f} words)",
                system,
                f"{rate:,.0f}",
                f"{1000 / rate:.2f}",
                f"{rate / eng:.2f}",
                f"{rate / tok:.2f}",
            )
        table.add_section()
    console = Console(width=120)
    console.print(table)
    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "reports": {k: len(v) for k, v in data.items()},
    }
    console.print(meta)
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
