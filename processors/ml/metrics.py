"""Multi-label scores of label sets: per-label and micro/macro precision, recall and F1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processors.nlp.chest.evaluate import LabelScore  # the chest labeller's counts and P/R/F1


def _scores(s: LabelScore) -> dict[str, Any]:
    return {"tp": s.tp, "fp": s.fp, "fn": s.fn, "support": s.tp + s.fn, "precision": round(s.precision, 4),
            "recall": round(s.recall, 4), "f1": round(s.f1, 4)}


def evaluate(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """``{"reports", "labels": {label: {tp, fp, fn, support, precision, recall, f1}}, "micro": {...},
    "macro": {precision, recall, f1}}``. Labels are every label of the gold or the predictions; macro
    averages over the labels present in the gold (a label only predicted still costs micro precision)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold label sets but {len(pred)} predictions")
    counts: dict[str, list[int]] = {}
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(g), set(p)
        for lab in gs | ps:
            c = counts.setdefault(lab, [0, 0, 0])
            c[0] += lab in gs and lab in ps
            c[1] += lab in ps and lab not in gs
            c[2] += lab in gs and lab not in ps
    per = {lab: LabelScore(lab, *counts[lab]) for lab in sorted(counts)}
    micro = LabelScore("micro", *(sum(s[i] for s in counts.values()) for i in range(3)))
    present = [s for s in per.values() if s.tp + s.fn > 0]
    n = len(present) or 1
    macro = {"precision": round(sum(s.precision for s in present) / n, 4),
             "recall": round(sum(s.recall for s in present) / n, 4),
             "f1": round(sum(s.f1 for s in present) / n, 4)}
    return {"reports": len(gold), "labels": {lab: _scores(s) for lab, s in per.items()},
            "micro": _scores(micro), "macro": macro}
