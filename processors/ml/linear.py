"""A site-trained multi-label linear classifier over assertion-aware features (:mod:`processors.ml.features`).

One logistic regression per label (one-vs-rest) on TF-IDF-weighted feature counts, a decision threshold
per label tuned on out-of-fold probabilities of the training set, and, when every training report has at
least one label (as in ICD-9-CM coding), the best-scoring label for a report that no threshold admits.
The regularisation C and the weight of the coding-rule features (``features.is_code_feature``: they are
few and strong, and the many word features would drown them after L2 normalisation) are chosen from small
grids by the same out-of-fold predictions (micro-F1), on the training reports only.

Training needs scikit-learn (the ``[train]`` extra). A trained model is plain data (``model.json`` +
``weights.npz``, no pickle), and applying it needs only numpy, so the worker runs it in the base install.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from processors.ml.features import FEATURES_VERSION, is_code_feature

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"
FORMAT = "radstream-linear/1"
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 19))  # 0.05 .. 0.90
MIN_POSITIVES_FOR_OWN_THRESHOLD = 5


class LinearModelError(ValueError):
    pass


@dataclass
class TrainOptions:
    c: float | None = None          # inverse L2 strength of the logistic regressions (None: from c_grid)
    code_weight: float | None = None  # idf factor of the coding-rule features (None: from code_weight_grid)
    min_df: int = 1                 # features seen in fewer training reports are dropped
    folds: int = 5                  # out-of-fold probabilities for the thresholds and the grids
    seed: int = 0
    c_grid: tuple[float, ...] = (10.0, 30.0, 100.0)
    code_weight_grid: tuple[float, ...] = (2.0, 3.0, 4.0)


@dataclass
class LinearModel:
    labels: list[str]
    vocab: dict[str, int]
    idf: np.ndarray                 # (n_features,)
    coef: np.ndarray                # (n_labels, n_features)
    intercept: np.ndarray           # (n_labels,)
    thresholds: np.ndarray          # (n_labels,)
    min_labels: int = 0             # 1: a report gets at least its best label
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ applying
    def vector(self, feats: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Sparse TF-IDF vector (indices, values) of one report: (1 + ln tf) * idf, L2-normalised."""
        idx = [self.vocab[k] for k in feats if k in self.vocab]
        if not idx:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ii = np.asarray(idx, dtype=np.int64)
        tf = np.asarray([feats[k] for k in feats if k in self.vocab], dtype=np.float64)
        val = (1.0 + np.log(tf)) * self.idf[ii]
        return ii, val / np.linalg.norm(val)

    def probabilities(self, feats: Mapping[str, float]) -> np.ndarray:
        ii, val = self.vector(feats)
        z = self.coef[:, ii] @ val + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def decide(self, probs: np.ndarray) -> list[int]:
        """Label indices whose probability reaches their threshold (at least ``min_labels``)."""
        picked = [int(i) for i in np.flatnonzero(probs >= self.thresholds)]
        if len(picked) < self.min_labels and len(probs):
            picked = [int(np.argmax(probs))]
        return sorted(picked, key=lambda i: -probs[i])

    def predict(self, feats: Mapping[str, float]) -> list[tuple[str, float]]:
        probs = self.probabilities(feats)
        return [(self.labels[i], float(probs[i])) for i in self.decide(probs)]

    # ------------------------------------------------------------------ files
    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        names = sorted(self.vocab, key=self.vocab.__getitem__)
        np.savez_compressed(out / WEIGHTS_FILE, features=np.asarray(names, dtype=str), idf=self.idf,
                            coef=self.coef.astype(np.float32), intercept=self.intercept)
        doc = {"format": FORMAT, "features_version": FEATURES_VERSION, "labels": self.labels,
               "thresholds": [round(float(t), 4) for t in self.thresholds], "min_labels": self.min_labels,
               **self.meta}
        (out / MODEL_FILE).write_text(json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, model_dir: Path) -> LinearModel:
        path = model_dir / MODEL_FILE
        if not path.is_file() or not (model_dir / WEIGHTS_FILE).is_file():
            raise LinearModelError(f"no trained linear model in {model_dir} "
                                   f"(needs {MODEL_FILE}, {WEIGHTS_FILE})")
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT or doc.get("features_version") != FEATURES_VERSION:
            raise LinearModelError(f"{path}: format {doc.get('format')!r} / features "
                                   f"{doc.get('features_version')!r}; this radstream reads {FORMAT!r} / "
                                   f"{FEATURES_VERSION} (train the model again)")
        with np.load(model_dir / WEIGHTS_FILE, allow_pickle=False) as w:
            names = [str(n) for n in w["features"]]
            idf, coef, intercept = w["idf"], w["coef"].astype(np.float64), w["intercept"]
        labels = [str(x) for x in doc.pop("labels")]
        thresholds = np.asarray(doc.pop("thresholds"), dtype=np.float64)
        min_labels = int(doc.pop("min_labels"))
        if coef.shape != (len(labels), len(names)) or len(thresholds) != len(labels):
            raise LinearModelError(f"{model_dir}: weights do not match the labels / features")
        return cls(labels, {n: i for i, n in enumerate(names)}, idf, coef, intercept, thresholds,
                   min_labels, doc)


# ---------------------------------------------------------------------- training
def _matrix(feats: Sequence[Mapping[str, float]], vocab: Mapping[str, int], idf: np.ndarray) -> Any:
    from scipy.sparse import csr_matrix

    rows, cols, vals = [], [], []
    for r, f in enumerate(feats):
        ii = [vocab[k] for k in f if k in vocab]
        if not ii:
            continue
        v = (1.0 + np.log(np.asarray([f[k] for k in f if k in vocab]))) * idf[ii]
        v = v / np.linalg.norm(v)
        rows.extend([r] * len(ii))
        cols.extend(ii)
        vals.extend(v.tolist())
    return csr_matrix((vals, (rows, cols)), shape=(len(feats), len(vocab)))


def _fit(feats: Sequence[Mapping[str, float]], y: np.ndarray, c: float, code_weight: float, opts: TrainOptions
         ) -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray]:
    """Vocabulary, idf, coefficients, intercepts of the one-vs-rest logistic regressions."""
    from sklearn.linear_model import LogisticRegression

    df: dict[str, int] = {}
    for f in feats:
        for k in f:
            df[k] = df.get(k, 0) + 1
    names = sorted(k for k, n in df.items() if n >= opts.min_df)
    vocab = {k: i for i, k in enumerate(names)}
    n = len(feats)
    idf = np.asarray([(math.log((1 + n) / (1 + df[k])) + 1.0) * (code_weight if is_code_feature(k) else 1.0)
                      for k in names])
    x = _matrix(feats, vocab, idf)
    coef = np.zeros((y.shape[1], len(names)))
    intercept = np.full(y.shape[1], -30.0)  # a label never seen in training is never predicted
    for j in range(y.shape[1]):
        pos = int(y[:, j].sum())
        if pos == 0 or pos == n:
            if pos == n:
                intercept[j] = 30.0
            continue
        lr = LogisticRegression(C=c, solver="liblinear", random_state=opts.seed, max_iter=1000)
        lr.fit(x, y[:, j])
        coef[j] = lr.coef_[0]
        intercept[j] = float(lr.intercept_[0])
    return vocab, idf, coef, intercept


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def _best_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, int, int, int]:
    """(threshold, tp, fp, fn) with the best F1 of one label; ties go to the threshold nearest 0.5."""
    best: tuple[float, float, int, int, int] | None = None
    for t in THRESHOLD_GRID:
        pred = p >= t
        tp = int((pred & y).sum())
        fp = int((pred & ~y).sum())
        fn = int((~pred & y).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        key = (f1, -abs(t - 0.5))
        if best is None or key > (best[0], -abs(best[1] - 0.5)):
            best = (f1, t, tp, fp, fn)
    assert best is not None
    return best[1], best[2], best[3], best[4]


def tune_thresholds(oof: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-label thresholds on out-of-fold probabilities; labels with few positives share one global
    threshold (the one with the best micro-F1 over those labels), so a rare label is not fitted to
    one or two reports."""
    yb = y.astype(bool)
    thr = np.full(y.shape[1], 0.5)
    rare = [j for j in range(y.shape[1]) if yb[:, j].sum() < MIN_POSITIVES_FOR_OWN_THRESHOLD]
    for j in range(y.shape[1]):
        if j not in rare:
            thr[j] = _best_threshold(oof[:, j], yb[:, j])[0]
    if rare:
        thr[rare] = _best_threshold(oof[:, rare].ravel(), yb[:, rare].ravel())[0]
    return thr


def _micro_f1(oof: np.ndarray, y: np.ndarray, thresholds: np.ndarray, min_labels: int) -> float:
    tp = fp = fn = 0
    for p, g in zip(oof, y.astype(bool), strict=True):
        picked = p >= thresholds
        if min_labels and not picked.any():
            picked[int(np.argmax(p))] = True
        tp += int((picked & g).sum())
        fp += int((picked & ~g).sum())
        fn += int((~picked & g).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def train(feats: Sequence[Mapping[str, float]], label_sets: Sequence[Sequence[str]],
          opts: TrainOptions | None = None, meta: Mapping[str, Any] | None = None) -> LinearModel:
    """Fit on all reports; C, the code-feature weight and the thresholds come from ``opts.folds``-fold
    out-of-fold probabilities of these reports (nothing else is seen)."""
    opts = opts or TrainOptions()
    if len(feats) != len(label_sets) or not feats:
        raise LinearModelError("need the same number (> 0) of reports and label sets")
    labels = sorted({lab for ls in label_sets for lab in ls})
    if not labels:
        raise LinearModelError("no labels in the training data")
    col = {lab: j for j, lab in enumerate(labels)}
    y = np.zeros((len(feats), len(labels)), dtype=np.int64)
    for i, ls in enumerate(label_sets):
        for lab in ls:
            y[i, col[lab]] = 1
    min_labels = 1 if all(len(ls) > 0 for ls in label_sets) else 0
    grid = [(c, w) for c in ((opts.c,) if opts.c is not None else opts.c_grid)
            for w in ((opts.code_weight,) if opts.code_weight is not None else opts.code_weight_grid)]
    thresholds = np.full(len(labels), 0.5)
    c, w = grid[0]
    k = min(opts.folds, len(feats))
    scores: dict[str, float] = {}
    if k >= 2:
        best = -1.0
        folds = _folds(len(feats), k, opts.seed)
        for gc, gw in grid:
            oof = np.zeros(y.shape)
            for held in folds:
                keep = np.setdiff1d(np.arange(len(feats)), held)
                part = LinearModel(labels, *_fit([feats[i] for i in keep], y[keep], gc, gw, opts), thresholds)
                for i in held:
                    oof[i] = part.probabilities(feats[i])
            thr = tune_thresholds(oof, y)
            f1 = _micro_f1(oof, y, thr, min_labels)
            scores[f"C={gc:g},code_weight={gw:g}"] = round(f1, 4)
            if f1 > best + 1e-9:  # ties keep the earlier (stronger regularised, lighter) setting
                best, c, w, thresholds = f1, gc, gw, thr
    vocab, idf, coef, intercept = _fit(feats, y, c, w, opts)
    info = {"train": {"reports": len(feats), "features": len(vocab), "c": c, "code_weight": w,
                      "min_df": opts.min_df, "folds": opts.folds, "seed": opts.seed,
                      "oof_micro_f1": scores,
                      "positives": {lab: int(y[:, j].sum()) for j, lab in enumerate(labels)}},
            **(meta or {})}
    return LinearModel(labels, vocab, idf, coef, intercept, thresholds, min_labels, info)
