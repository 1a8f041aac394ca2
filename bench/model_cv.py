"""Cross-validation of site-classifier methods on a labelled report CSV (e.g. shared/eval/cmc2007_dev.csv).

    PYTHONPATH=. python bench/model_cv.py ../shared/eval/cmc2007_dev.csv \
        --text-columns clinical_history,impression --label-column codes --method all [--errors]

Methods (5-fold, fixed seed; each fold trains exactly as ``radstream model train`` does: C, the weight of
the coding-rule features and the thresholds are chosen by an inner CV on the training folds only, so the
scores are nested cross-validation):

- ``rules``: the shipped method: assertion-aware words + rule-engine concepts + ICD-9-CM coding-rule
  features (processors.ml.features) -> TF-IDF -> one-vs-rest logistic regression.
- ``nocodes``, ``nocodesections``, ``norules``, ``noalternatives``, ``nofollowup``, ``nofindings``: ablations
  of the coding-rule features (none of them; not keyed by history/impression; without the ``rule|``
  features; without the alternatives status; without the ``fu`` status; without the codebook's
  radiological findings). ``nocodes`` is the method of features version 1 (with the C grid).
- ``ngrams``: the same model on plain word uni/bigrams (no sections, no negation): the baseline.
- ``minilm``: all-MiniLM-L6-v2 embedding of each text column (concatenated) -> logistic regression
  (needs the [ml] extra).

``--errors`` prints the confusions of the first method (gold-only and predicted-only labels per report,
report ids only: the texts stay in the data set).
"""

from __future__ import annotations

import argparse
import csv
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.ml.features import FeatureExtractor, compose_report  # noqa: E402
from processors.ml.linear import TrainOptions, _folds, train, tune_thresholds  # noqa: E402
from processors.ml.metrics import evaluate  # noqa: E402

Feats = list[dict[str, float]]


def plain_ngrams(text: str) -> dict[str, float]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    out: Counter[str] = Counter(words)
    out.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    return {k: float(v) for k, v in out.items()}


def cv_linear(feats: Feats, gold: list[list[str]], opts: TrainOptions, k: int, seed: int) -> list[list[str]]:
    pred: list[list[str]] = [[] for _ in gold]
    for n, held in enumerate(_folds(len(gold), k, seed)):
        keep = np.setdiff1d(np.arange(len(gold)), held)
        model = train([feats[i] for i in keep], [gold[i] for i in keep], opts)
        for i in held:
            pred[i] = [lab for lab, _ in model.predict(feats[i])]
        fold = evaluate([gold[i] for i in held], [pred[i] for i in held])["micro"]
        print(f"  fold {n}: micro F1 {fold['f1']:.3f} (P {fold['precision']:.3f} R {fold['recall']:.3f}, "
              f"{len(held)} reports; chose C={model.meta['train']['c']:g}, "
              f"code weight {model.meta['train']['code_weight']:g})", flush=True)
    return pred


def cv_minilm(texts: list[str], gold: list[list[str]], c: float, k: int, seed: int) -> list[list[str]]:
    from sklearn.linear_model import LogisticRegression

    from processors.ml.embed import default_embedder

    x = default_embedder(threads=2).embed(texts)
    labels = sorted({lab for g in gold for lab in g})
    y = np.asarray([[lab in g for lab in labels] for g in gold], dtype=np.int64)

    def fit_predict(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        p = np.zeros((len(te), len(labels)))
        for j in range(len(labels)):
            if 0 < y[tr, j].sum() < len(tr):
                lr = LogisticRegression(C=c, max_iter=2000).fit(x[tr], y[tr, j])
                p[:, j] = lr.predict_proba(x[te])[:, 1]
        return p

    pred: list[list[str]] = [[] for _ in gold]
    for held in _folds(len(gold), k, seed):
        keep = np.setdiff1d(np.arange(len(gold)), held)
        oof = np.zeros((len(keep), len(labels)))
        for inner in _folds(len(keep), k, seed):
            rest = np.setdiff1d(np.arange(len(keep)), inner)
            oof[inner] = fit_predict(keep[rest], keep[inner])
        thr = tune_thresholds(oof, y[keep])
        for i, row in zip(held, fit_predict(keep, held), strict=True):
            picked = [j for j in range(len(labels)) if row[j] >= thr[j]] or [int(np.argmax(row))]
            pred[i] = [labels[j] for j in picked]
    return pred


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--text-columns", default="clinical_history,impression")
    ap.add_argument("--label-column", default="codes")
    ap.add_argument("--method", default="rules", help="rules | ngrams | minilm | all (comma-separated)")
    ap.add_argument("--c", type=float, default=None, help="fixed C (default: chosen from the grid per fold)")
    ap.add_argument("--code-weight", type=float, default=None,
                    help="fixed weight of the coding-rule features")
    ap.add_argument("--min-df", type=int, default=TrainOptions.min_df)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--errors", action="store_true")
    ap.add_argument("--per-label", action="store_true", help="per-label P/R/F1 of the first method")
    args = ap.parse_args(argv)

    with open(args.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = [c.strip() for c in args.text_columns.split(",")]
    texts = [compose_report(r, cols) for r in rows]
    gold = [[x.strip() for x in r[args.label_column].split(";") if x.strip()] for r in rows]
    methods = ["rules", "ngrams", "minilm"] if args.method == "all" else args.method.split(",")
    opts = TrainOptions(c=args.c, code_weight=args.code_weight, min_df=args.min_df, seed=args.seed)
    extract: dict[str, Callable[[str], Mapping[str, float]]] = {
        "rules": FeatureExtractor().features, "ngrams": plain_ngrams,
        "nocodes": FeatureExtractor(codes=False).features,
        "nocodesections": FeatureExtractor(code_sections=False).features,
        "norules": FeatureExtractor(coding_rules=False).features,
        "noalternatives": FeatureExtractor(alternatives=False).features,
        "nofollowup": FeatureExtractor(follow_up=False).features,
        "nofindings": FeatureExtractor(findings=False).features}
    first: list[list[str]] | None = None
    for m in methods:
        t0 = time.perf_counter()
        if m == "minilm":
            joined = [" ".join(r[c] for c in cols) for r in rows]
            pred = cv_minilm(joined, gold, args.c or 100.0, args.folds, args.seed)
        else:
            feats = [dict(extract[m](t)) for t in texts]
            pred = cv_linear(feats, gold, opts, args.folds, args.seed)
        s = evaluate(gold, pred)
        print(f"{m:7s} micro P/R/F1 {s['micro']['precision']:.3f}/{s['micro']['recall']:.3f}/"
              f"{s['micro']['f1']:.3f}  macro F1 {s['macro']['f1']:.3f}  ({time.perf_counter() - t0:.0f} s, "
              f"{args.folds}-fold, seed {args.seed})", flush=True)
        if args.per_label and first is None:
            print("  label    support  TP  FP  FN  P      R      F1")
            for lab, v in sorted(s["labels"].items(), key=lambda kv: (-kv[1]["support"], kv[0])):
                print(f"  {lab:8s} {v['support']:7d} {v['tp']:3d} {v['fp']:3d} {v['fn']:3d}  "
                      f"{v['precision']:.3f}  {v['recall']:.3f}  {v['f1']:.3f}")
        first = first or pred
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")
    if args.errors and first is not None:
        conf: Counter[tuple[str, str]] = Counter()
        for r, g, p in zip(rows, gold, first, strict=True):
            miss, extra = sorted(set(g) - set(p)), sorted(set(p) - set(g))
            if miss or extra:
                print(f"{r.get('report_id', '?')}: gold {';'.join(g)}  missed {';'.join(miss) or '-'}  "
                      f"extra {';'.join(extra) or '-'}")
                conf.update((a, b) for a in miss or ["-"] for b in extra or ["-"])
        print("most common (missed, predicted instead):", conf.most_common(15))


if __name__ == "__main__":
    main()
