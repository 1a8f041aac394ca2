"""NLP speed: our engine vs medspaCy's default pipeline vs bare spaCy tokenisation, same reports, one go.

    PYTHONPATH=. python bench/nlp_speed.py [--repeats 3] [--limit N] [--json]

``--clock cpu`` times the single-process runs by this process's CPU time instead of wall time (other
jobs on a shared machine then cost less noise; the 2-process pool is skipped).

Data: the shared dev set (<repo>/../shared/eval/openi_chest_xray_dev.csv, each report composed from its
exam/indication/comparison/findings/impression columns) and long synthetic reports (~470 words) made
here from a seeded generator. Every single-process measurement is pinned to one core
(``sched_setaffinity``) and is the best of ``--repeats`` passes after a warm-up pass.

- ours: ``processors.nlp`` ``Engine.analyze`` (sections, sentences, findings + ConText, chest labels and
  the measurement/recommendation/assessment/critical/exam extractors), one process; and with 2 processes
  (a process pool, one engine per worker, both cores).
- spaCy tokeniser: ``spacy.blank("en")`` called on each text (tokenisation only).
- medspaCy: ``medspacy.load()`` default pipeline (tokenizer, PyRuSH sentences, target matcher, ConText)
  with our lexicon's synonyms as TargetRules, run in a throwaway venv (medspaCy pins spaCy<3.8 and
  numpy<2, which conflict with ours) under ~/.cache/radstream/bench-medspacy, as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEDSPACY_VENV = Path(
    os.environ.get("RADSTREAM_BENCH_MEDSPACY", Path.home() / ".cache/radstream/bench-medspacy")
)
MEDSPACY_SPEC = "medspacy==1.3.1"

_MEDSPACY_SCRIPT = r"""
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[3])})
import medspacy
from medspacy.target_matcher import TargetRule
data = json.load(open(sys.argv[1]))
phrases = json.load(open(sys.argv[2]))
nlp = medspacy.load()
nlp.get_pipe("medspacy_target_matcher").add([TargetRule(p, c) for p, c in phrases])
repeats = int(sys.argv[4])
out = {"pipeline": nlp.pipe_names, "version": medspacy.__version__}
for name, texts in data.items():
    for t in texts[:20]:
        nlp(t)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        n_ents = sum(len(nlp(t).ents) for t in texts)
        best = min(best, time.perf_counter() - t0)
    out[name] = {"seconds": best, "reports": len(texts), "entities": n_ents}
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------------------------- data
def dev_reports(limit: int | None) -> list[str]:
    from processors.nlp.chest.evaluate import compose_report, read_rows, resolve_text_columns

    for path in (
        REPO.parent / "shared/eval/openi_chest_xray_dev.csv",
        Path("/work/shared/eval/openi_chest_xray_dev.csv"),
    ):
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(read_rows(fh))
            cols = resolve_text_columns(list(rows[0]), None)
            texts = [compose_report(r, cols) for r in rows]
            return texts[:limit] if limit else texts
    raise SystemExit("dev set not found: <repo>/../shared/eval/openi_chest_xray_dev.csv")


_LOBES = [
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "lingula",
    "left lower lobe",
    "right lung base",
    "left lung base",
    "both lung bases",
    "left apex",
]
_FIND = [
    "nodule",
    "opacity",
    "consolidation",
    "atelectasis",
    "ground-glass opacity",
    "mass",
    "scarring",
    "pleural thickening",
    "bronchiectasis",
    "granuloma",
]
_SENTENCES = [
    "There is a {size} {find} in the {lobe}, previously {prior} mm.",
    "No {find} is seen in the {lobe}.",
    "A {size} {find} in the {lobe} cannot be excluded.",
    "Stable {find} in the {lobe} measuring {a} x {b} cm.",
    "There is no pneumothorax, pleural effusion or focal consolidation.",
    "Mild cardiomegaly with small bilateral pleural effusions, increased since the prior study.",
    "The {find} in the {lobe} has resolved.",
    "Probable {find} in the {lobe}, which may represent infection or atelectasis.",
    "Status post median sternotomy with intact sternal wires.",
    "Degenerative changes of the thoracic spine without acute fracture.",
    "The heart size is normal and the mediastinal contours are within normal limits.",
    "No evidence of pulmonary edema; however, there is mild peribronchial thickening.",
    "Interval development of a {size} {find} in the {lobe}, concerning for malignancy.",
    "Calcified granuloma in the {lobe}, unchanged.",
    "There is no acute osseous abnormality, and the visualized upper abdomen is unremarkable.",
]


def synthetic_reports(n: int, words: int = 470, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        head = (
            "EXAM: CT CHEST WITH CONTRAST\nCLINICAL HISTORY: Cough and weight loss, evaluate for malignancy. "
            "History of smoking.\nTECHNIQUE: Axial images with IV contrast.\nCOMPARISON: CT from last year.\n"
            "FINDINGS:\n"
        )
        body: list[str] = []
        count = len(head.split())
        while count < words - 40:
            s = rng.choice(_SENTENCES).format(
                size=rng.choice(["small", "6 mm", "1.2 cm", "large", "tiny", "8 mm"]),
                find=rng.choice(_FIND),
                lobe=rng.choice(_LOBES),
                prior=rng.randint(3, 9),
                a=rng.randint(1, 4),
                b=rng.randint(1, 3),
            )
            body.append(s)
            count += len(s.split())
        impression = (
            "IMPRESSION:\n1. Enlarging right upper lobe nodule, Lung-RADS 4B. Recommend PET/CT in 3 months "
            "per Fleischner guidelines.\n2. No pneumothorax.\n3. Findings discussed with Dr. Smith by "
            "telephone at 14:35 on 1/2/2024."
        )
        out.append(head + " ".join(body) + "\n" + impression)
    return out


# ------------------------------------------------------------------------------------------- runners
CLOCK: Callable[[], float] = time.perf_counter  # --clock cpu: time.process_time


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def run_ours(texts: list[str], repeats: int) -> float:
    from processors.nlp.engine import get_engine

    engine = get_engine()
    return best_of(lambda: [engine.analyze(t) for t in texts], repeats)


def run_spacy(texts: list[str], repeats: int) -> float:
    import spacy

    nlp = spacy.blank("en")
    return best_of(lambda: [nlp(t) for t in texts], repeats)


def _warm(_: int) -> int:
    from processors.nlp.engine import get_engine

    get_engine().analyze("FINDINGS: No pneumothorax.")
    return os.getpid()


def _analyze_chunk(texts: list[str]) -> int:
    from processors.nlp.engine import get_engine

    engine = get_engine()
    return sum(len(engine.analyze(t).findings) for t in texts)


def run_ours_pool(texts: list[str], repeats: int, workers: int = 2) -> float:
    chunks = [texts[i : i + 64] for i in range(0, len(texts), 64)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_warm, range(workers * 2)))
        return best_of(lambda: list(pool.map(_analyze_chunk, chunks)), repeats)


def ensure_medspacy() -> Path | None:
    py = MEDSPACY_VENV / "bin" / "python"
    ok = (
        py.exists()
        and subprocess.run([str(py), "-c", "import medspacy"], capture_output=True).returncode == 0
    )
    if not ok:
        print(f"installing {MEDSPACY_SPEC} into {MEDSPACY_VENV} (throwaway venv) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(MEDSPACY_VENV)], check=True)
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", MEDSPACY_SPEC])
        if res.returncode != 0:
            return None
    return py


def lexicon_phrases() -> list[tuple[str, str]]:
    from processors.nlp.lexicon import load_concepts

    phrases, _ = load_concepts()
    return [(p, cs[0].concept.upper()) for p, cs in phrases.items()]


def run_medspacy(data: dict[str, list[str]], repeats: int, core: int) -> dict[str, object] | None:
    py = ensure_medspacy()
    if py is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        texts_file, phrases_file, script = (
            Path(tmp, "texts.json"),
            Path(tmp, "phrases.json"),
            Path(tmp, "m.py"),
        )
        texts_file.write_text(json.dumps(data))
        phrases_file.write_text(json.dumps(lexicon_phrases()))
        script.write_text(_MEDSPACY_SCRIPT)
        res = subprocess.run(
            [str(py), str(script), str(texts_file), str(phrases_file), str(core), str(repeats)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            print(res.stderr[-2000:], file=sys.stderr)
            return None
        result: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
        return result


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="Use only the first N dev reports.")
    ap.add_argument("--long", type=int, default=300, help="Number of long synthetic reports.")
    ap.add_argument("--medspacy-repeats", type=int, default=1, help="medspaCy is slow: timed passes for it.")
    ap.add_argument("--no-medspacy", action="store_true")
    ap.add_argument("--json", action="store_true", help="Print the results as JSON too.")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU time (fairer on a shared machine; single-process runs "
                         "only, the 2-process pool is skipped).")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.process_time

    data = {"dev": dev_reports(args.limit), "long": synthetic_reports(args.long)}
    words = {k: sum(len(t.split()) for t in v) / len(v) for k, v in data.items()}
    cores = sorted(os.sched_getaffinity(0))
    core = cores[-1]
    load_before = os.getloadavg()

    results: dict[str, dict[str, float]] = {k: {} for k in data}
    os.sched_setaffinity(0, {core})
    for name, texts in data.items():
        results[name]["ours"] = len(texts) / run_ours(texts, args.repeats)
        results[name]["spacy tokenizer"] = len(texts) / run_spacy(texts, args.repeats)
    os.sched_setaffinity(0, set(cores))
    if len(cores) >= 2 and args.clock == "wall":
        for name, texts in data.items():
            results[name]["ours, 2 processes"] = len(texts) / run_ours_pool(texts, args.repeats, 2)
    med = None if args.no_medspacy else run_medspacy(data, args.medspacy_repeats, core)
    if med is not None:
        for name in data:
            m = med[name]
            assert isinstance(m, dict)
            results[name]["medspaCy default"] = m["reports"] / m["seconds"]
    load_after = os.getloadavg()

    from rich.console import Console
    from rich.table import Table

    table = Table(title="NLP speed (reports/s; one process pinned to one core unless noted)")
    for col in ("data", "system", "reports/s", "ms/report", "x medspaCy", "x spaCy tokenizer"):
        table.add_column(col, justify="left" if col in ("data", "system") else "right")
    for name, res in results.items():
        med_rate = res.get("medspaCy default")
        tok_rate = res["spacy tokenizer"]
        for system, rate in res.items():
            table.add_row(
                f"{name} (~{words[name]:.0f} words)",
                system,
                f"{rate:,.0f}",
                f"{1000 / rate:.2f}",
                f"{rate / med_rate:.1f}" if med_rate else "-",
                f"{rate / tok_rate:.2f}",
            )
        table.add_section()
    console = Console(width=120)
    console.print(table)
    meta = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "clock": args.clock,
        "reports": {k: len(v) for k, v in data.items()},
        "medspacy": med and {"version": med.get("version"), "pipeline": med.get("pipeline")},
    }
    console.print(meta)
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
