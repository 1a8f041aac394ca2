"""ChestX-ray14 labels (+ ``normal``) derived from findings through a mapping kept as data.

Each label is ``positive`` (a positive mention: definite or probable), ``uncertain`` (only possible
mentions), ``negative`` (only negated mentions) or ``absent`` (not mentioned). Only findings in the
sections of the mapping count (never the indication/history). For scoring against 0/1 gold,
positive = 1 and uncertain = 0 by default (hedged findings are not coded in the Open-i gold).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from processors.nlp.types import Finding

HERE = Path(__file__).resolve().parent
DEFAULT_MAPPING = HERE / "mapping.json"
LABELS14 = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
STATES = ("positive", "negative", "uncertain", "absent")


@dataclass(frozen=True)
class ChestMapping:
    labels: tuple[str, ...]
    label_of: dict[str, tuple[str, ...]]  # concept -> labels
    sections: frozenset[str]
    normal_ignore_categories: frozenset[str]
    normal_ignore_concepts: frozenset[str]

    @classmethod
    def load(cls, path: Path | str | None = None) -> ChestMapping:
        path = Path(path or DEFAULT_MAPPING)
        data = json.loads(path.read_text())
        label_of: dict[str, list[str]] = {}
        for label, concepts in data["map"].items():
            for c in concepts:
                label_of.setdefault(c, []).append(label)
        normal = data.get("normal", {})
        return cls(
            labels=tuple(data["labels"]),
            label_of={c: tuple(ls) for c, ls in label_of.items()},
            sections=frozenset(data["sections"]),
            normal_ignore_categories=frozenset(normal.get("ignore_categories", [])),
            normal_ignore_concepts=frozenset(normal.get("ignore_concepts", [])),
        )

    def label(self, findings: Iterable[Finding]) -> dict[str, str]:
        """label -> positive | negative | uncertain | absent, plus ``normal`` (positive | negative)."""
        rank = {"absent": 0, "negative": 1, "uncertain": 2, "positive": 3}
        out = dict.fromkeys(self.labels, "absent")
        abnormal = False
        for f in findings:
            if f.section not in self.sections:
                continue
            state = finding_state(f)
            if (
                state == "positive"
                and f.category not in self.normal_ignore_categories
                and f.concept not in self.normal_ignore_concepts
            ):
                abnormal = True
            for label in self.label_of.get(f.concept, ()):
                if rank[state] > rank[out[label]]:
                    out[label] = state
        out["normal"] = "negative" if abnormal else "positive"
        return out


def finding_state(f: Finding) -> str:
    if f.hypothetical or f.historical or f.experiencer != "patient":
        return "absent"
    if f.negated:
        return "negative"
    if f.certainty == "possible":
        return "uncertain"
    return "positive"
