"""Multi-label scores: per-label and micro/macro precision, recall and F1 (no dependencies)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "support": self.tp + self.fn, "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4)}


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
    per = {lab: Score(*counts[lab]) for lab in sorted(counts)}
    micro = Score(*(sum(s[i] for s in counts.values()) for i in range(3)))
    present = [s for s in per.values() if s.tp + s.fn > 0]
    n = len(present) or 1
    macro = {"precision": round(sum(s.precision for s in present) / n, 4),
             "recall": round(sum(s.recall for s in present) / n, 4),
             "f1": round(sum(s.f1 for s in present) / n, 4)}
    return {"reports": len(gold), "labels": {lab: s.to_dict() for lab, s in per.items()},
            "micro": micro.to_dict(), "macro": macro}
