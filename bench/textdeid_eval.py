"""Score a PHI detector on the PHI dev set (tests/data/phi/dev.jsonl), token- and span-level.

    PYTHONPATH=. python bench/textdeid_eval.py [--engine radstream|presidio|scrubadub|philter] [--errors N]
    PYTHONPATH=. python bench/textdeid_eval.py --set hard   # the adversarial set, scored per class

The other engines are measured from a throwaway venv that has them (they are not project dependencies):
    /tmp/venv/bin/python bench/textdeid_eval.py --engine presidio

Token level (as i2b2): a token is a run of letters/digits; gold tokens are those inside gold spans, predicted
tokens those inside predicted spans. Recall = predicted gold tokens / gold tokens; precision = predicted
gold tokens / predicted tokens. Span level: a gold span counts as found when all its tokens are predicted
(strict), precision counts predicted spans that overlap any gold span. Types are not compared (a PHI
token removed under the wrong type is still removed); per-type recall is reported by the gold type.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PHI = Path(__file__).resolve().parents[1] / "tests" / "data" / "phi"
DEV = PHI / "dev.jsonl"
SETS = {"dev": DEV, "hard": PHI / "hard.jsonl"}  # hard: tests/data/phi/hard.py, one class per passage
TOKEN = re.compile(r"[A-Za-z0-9]+")
Spans = list[tuple[int, int]]


def load(path: Path = DEV) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _covered(spans: Spans, s: int, e: int) -> bool:
    return any(a <= s and e <= b for a, b in spans)


def score(docs: Iterable[dict[str, Any]], predict: Callable[[str], Spans]) -> dict[str, Any]:
    tp = fp = fn = 0
    span_found = span_total = pred_ok = pred_total = 0
    by_type: Counter[str] = Counter()
    by_type_found: Counter[str] = Counter()
    misses: list[tuple[str, str, str]] = []
    false_pos: list[tuple[str, str]] = []
    n = 0
    t0 = time.perf_counter()
    for doc in docs:
        n += 1
        text = doc["text"]
        gold = [(g["start"], g["end"]) for g in doc["spans"]]
        pred = predict(text)
        for tok in TOKEN.finditer(text):
            g, p = _covered(gold, *tok.span()), any(a < tok.end() and tok.start() < b for a, b in pred)
            tp += g and p
            fn += g and not p
            fp += p and not g
        for g_ in doc["spans"]:
            toks = [t.span() for t in TOKEN.finditer(text, g_["start"], g_["end"])]
            ok = all(any(a < te and ts < b for a, b in pred) for ts, te in toks)
            span_total += 1
            span_found += ok
            by_type[g_["type"]] += 1
            by_type_found[g_["type"]] += ok
            if not ok:
                misses.append((doc["id"], g_["type"], text[g_["start"] : g_["end"]]))
        for a, b in pred:
            pred_total += 1
            hit = any(a < ge and gs < b for gs, ge in gold)
            pred_ok += hit
            if not hit:
                false_pos.append((doc["id"], text[a:b]))
    seconds = time.perf_counter() - t0
    return {
        "reports": n,
        "token_recall": tp / max(1, tp + fn),
        "token_precision": tp / max(1, tp + fp),
        "span_recall": span_found / max(1, span_total),
        "span_precision": pred_ok / max(1, pred_total),
        "gold_spans": span_total,
        "recall_by_type": {t: round(by_type_found[t] / by_type[t], 4) for t in sorted(by_type)},
        "ms_per_report": 1000 * seconds / max(1, n),
        "misses": misses,
        "false_positives": false_pos,
    }


def radstream_engine() -> Callable[[str], Spans]:
    from processors.textdeid import detect

    return lambda text: [(s.start, s.end) for s in detect(text)]


def presidio_engine() -> Callable[[str], Spans]:  # pragma: no cover - measured from another venv
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    try:
        spacy.load("en_core_web_lg")
        engine = AnalyzerEngine()
    except OSError:  # no model: presidio's pattern recognizers with a blank pipeline
        blank = Path("/tmp/spacy-blank-en")
        if not blank.exists():
            spacy.blank("en").to_disk(blank)
        nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(blank)}])
        engine = AnalyzerEngine(nlp_engine=nlp)
    return lambda text: [(r.start, r.end) for r in engine.analyze(text, language="en")]


def scrubadub_engine() -> Callable[[str], Spans]:  # pragma: no cover - measured from another venv
    import scrubadub

    scrubber = scrubadub.Scrubber()
    return lambda text: [(f.beg, f.end) for f in scrubber.iter_filth(text)]


# the shared dev sets sit next to the checkout (/work/shared/eval beside /work/main); a git worktree is one
# level deeper (/work/wt/<name>), so look in every parent directory
SHARED = next(
    (p / "shared" / "eval" for p in Path(__file__).resolve().parents if (p / "shared" / "eval").is_dir()),
    Path(__file__).resolve().parents[1].parent / "shared" / "eval",
)


def clinical_texts(limit: int | None = None) -> dict[str, list[str]]:
    """Open-i (exam..impression composed) and CMC (history + impression) reports: already de-identified
    by their publishers, so what we tag there is almost all clinical text we should have kept."""
    import csv

    out: dict[str, list[str]] = {}
    cols = {
        "openi_chest_xray_dev.csv": ("exam", "indication", "comparison", "findings", "impression"),
        "cmc2007_dev.csv": ("clinical_history", "impression"),
    }
    for name, fields in cols.items():
        path = SHARED / name
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[:limit]
        out[name] = ["\n".join(f"{c.upper()}: {r[c]}" for c in fields if r.get(c)) for r in rows]
    return out


def clinical(limit: int | None = None) -> dict[str, Any]:
    """NLP findings on the de-identified text vs on the original: the share of reports with the same
    findings (concept, negated, uncertain, historical, section, and the finding's text), and what was
    tagged."""
    from processors.nlp import analyze
    from processors.textdeid import deidentify

    result: dict[str, Any] = {}
    for name, texts in clinical_texts(limit).items():
        same = tagged_reports = 0
        tagged: Counter[str] = Counter()
        examples: list[str] = []
        for text in texts:
            d = deidentify(text, key=b"clinical-check-key-0123", patient="psn-x")
            a, b = analyze(text), analyze(d.text)
            key_a = sorted(
                (f.concept, f.negated, f.uncertain, f.historical, f.section, f.text) for f in a.findings
            )
            key_b = sorted(
                (f.concept, f.negated, f.uncertain, f.historical, f.section, f.text) for f in b.findings
            )
            same += key_a == key_b
            if d.spans:
                tagged_reports += 1
                for sp in d.spans:
                    tagged[sp.type] += 1
                if len(examples) < 40:
                    examples += [
                        f"{sp.type}: {d.text[max(0, sp.start - 25) : sp.end + 10]!r}" for sp in d.spans
                    ]
        result[name] = {
            "reports": len(texts),
            "same_findings": round(same / max(1, len(texts)), 4),
            "reports_with_spans": tagged_reports,
            "spans_by_type": dict(tagged),
            "examples": examples[:40],
        }
    return result


def negex_sentences() -> list[str]:
    """The sentences of the shared NegEx/ConText dev set (one clinical sentence a row)."""
    path = SHARED / "negex_dev.tsv"
    if not path.exists():
        return []
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    return [r.split("\t")[2] for r in rows if r.count("\t") >= 3]


def digest(limit: int | None = None) -> dict[str, Any]:
    """Over-removal on clinical text: one SHA-256 over the de-identified Open-i, CMC and NegEx texts
    (compare it between two checkouts: equal means not one character changed), the texts with a span,
    and the texts whose NLP findings differ between the original and the de-identified text.
    Baseline: ``PYTHONPATH=<other checkout> python bench/textdeid_eval.py --digest`` runs this code
    against the other checkout's de-identifier."""
    import hashlib

    from processors.nlp import analyze
    from processors.textdeid import deidentify

    def key(text: str) -> list[tuple[object, ...]]:
        return sorted(
            (f.concept, f.negated, f.uncertain, f.historical, f.section, f.text)
            for f in analyze(text).findings
        )

    sets = {**clinical_texts(limit), "negex_dev.tsv": negex_sentences()[:limit]}
    h = hashlib.sha256()
    out: dict[str, Any] = {}
    for name, texts in sets.items():
        with_spans = changed = 0
        one = hashlib.sha256()
        for text in texts:
            d = deidentify(text, key=b"clinical-check-key-0123", patient="psn-x")
            h.update(d.text.encode("utf-8") + b"\x00")
            one.update(d.text.encode("utf-8") + b"\x00")
            with_spans += bool(d.spans)
            changed += bool(d.spans) and key(text) != key(d.text)
        out[name] = {"texts": len(texts), "with_spans": with_spans, "findings_changed": changed,
                     "sha256": one.hexdigest()}
    out["sha256"] = h.hexdigest()
    return out


ENGINES = {"radstream": radstream_engine, "presidio": presidio_engine, "scrubadub": scrubadub_engine}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="radstream", choices=sorted(ENGINES))
    ap.add_argument("--set", default="dev", choices=sorted(SETS), help="dev (default) or hard")
    ap.add_argument("--file", default=None, help="another JSONL file in the same format")
    ap.add_argument("--errors", type=int, default=0, help="print this many misses and false positives")
    ap.add_argument(
        "--clinical",
        action="store_true",
        help="instead: NLP findings on de-identified vs original Open-i / CMC reports",
    )
    ap.add_argument(
        "--digest",
        action="store_true",
        help="instead: SHA-256 of the de-identified Open-i, CMC and NegEx texts, texts with spans and "
        "with changed NLP findings",
    )
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    if args.digest:
        print(json.dumps(digest(args.limit), indent=2))
        return
    if args.clinical:
        print(json.dumps(clinical(args.limit), indent=2))
        return
    docs = load(Path(args.file) if args.file else SETS[args.set])
    predict = ENGINES[args.engine]()
    result = score(docs, predict)
    misses, fps = result.pop("misses"), result.pop("false_positives")
    result["n_misses"], result["n_false_positives"] = len(misses), len(fps)
    classes = sorted({d["class"] for d in docs if "class" in d})
    if classes:  # the hard set: each passage is one class of hard case, scored on its own
        result["by_class"] = {}
        for cls in classes:
            r = score([d for d in docs if d.get("class") == cls], predict)
            result["by_class"][cls] = {
                k: round(r[k], 3)
                for k in ("token_recall", "token_precision", "span_recall", "span_precision")
            }
    print(json.dumps({"engine": args.engine, "set": args.file or args.set, **result}, indent=2))
    for m in misses[: args.errors]:
        print("MISS", *m, file=sys.stderr)
    for f in fps[: args.errors]:
        print("FP  ", *f, file=sys.stderr)


if __name__ == "__main__":
    main()
