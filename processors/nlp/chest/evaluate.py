"""Label and score CSV files of reports with 0/1 gold columns (Open-i layout by default).

A report's text is built from its text columns, each as a section headed by the column name
("INDICATION: ...", "FINDINGS: ..."), so the engine's section rules apply. Columns that must never
reach the engine (``mesh``, ``problems``: the manual coding the gold is derived from) are blanked.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from processors.nlp.chest import LABELS14

DEFAULT_TEXT_COLUMNS = ("exam", "indication", "comparison", "findings", "impression")
BLANKED_COLUMNS = ("mesh", "problems")
HEADER_OF = {
    "exam": "EXAM",
    "indication": "INDICATION",
    "comparison": "COMPARISON",
    "findings": "FINDINGS",
    "impression": "IMPRESSION",
    "history": "HISTORY",
    "technique": "TECHNIQUE",
    "recommendation": "RECOMMENDATION",
    "addendum": "ADDENDUM",
}


def compose_report(row: dict[str, str], text_columns: Sequence[str]) -> str:
    """One report text from its columns: a single column is used as is, several become sections."""
    if len(text_columns) == 1:
        return row.get(text_columns[0]) or ""
    parts = []
    for col in text_columns:
        value = (row.get(col) or "").strip()
        if value:
            parts.append(f"{HEADER_OF.get(col.lower(), col.upper())}: {value}")
    return "\n".join(parts)


def read_rows(fh: TextIO, blank: Iterable[str] = BLANKED_COLUMNS) -> Iterator[dict[str, str]]:
    for row in csv.DictReader(fh):
        for col in blank:
            if col in row:
                row[col] = ""
        yield row


def resolve_text_columns(fieldnames: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    if wanted:
        missing = [c for c in wanted if c not in fieldnames]
        if missing:
            raise ValueError(f"text columns not in the file: {missing}")
        return list(wanted)
    present = [c for c in DEFAULT_TEXT_COLUMNS if c in fieldnames]
    if present:
        return present
    if "text" in fieldnames:
        return ["text"]
    raise ValueError("no text column found: pass --text-column")


@dataclass
class LabelScore:
    label: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    support: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Scores:
    labels: list[LabelScore]
    n_reports: int
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def micro_f1(self) -> float:
        tp = sum(s.tp for s in self.labels)
        fp = sum(s.fp for s in self.labels)
        fn = sum(s.fn for s in self.labels)
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    @property
    def macro_f1(self) -> float:
        scored = [s for s in self.labels if s.support or s.fp]
        return sum(s.f1 for s in scored) / len(scored) if scored else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reports": self.n_reports,
            "micro_f1": round(self.micro_f1, 4),
            "macro_f1": round(self.macro_f1, 4),
            "labels": {
                s.label: {
                    "precision": round(s.precision, 4),
                    "recall": round(s.recall, 4),
                    "f1": round(s.f1, 4),
                    "support": s.support,
                    "tp": s.tp,
                    "fp": s.fp,
                    "fn": s.fn,
                }
                for s in self.labels
            },
        }


def predicted(state: str, uncertain_as: str = "negative") -> int:
    return 1 if state == "positive" or (state == "uncertain" and uncertain_as == "positive") else 0


def evaluate(
    path: Path | str,
    *,
    id_column: str = "report_id",
    text_columns: Sequence[str] | None = None,
    labels: Sequence[str] = LABELS14,
    label_columns: dict[str, str] | None = None,
    uncertain_as: str = "negative",
    keep_errors: bool = False,
    chest_mapping: str | None = None,
) -> Scores:
    """Label every report of ``path`` and score against its gold columns (label -> column name);
    ``chest_mapping``: the label mapping file (None: the default)."""
    from processors.nlp import analyze

    columns = {lab: (label_columns or {}).get(lab, lab) for lab in labels}
    scores = {lab: LabelScore(lab) for lab in labels}
    errors: list[dict[str, Any]] = []
    n = 0
    with open(path, newline="", encoding="utf-8") as fh:
        rows = read_rows(fh)
        first = next(rows, None)
        if first is None:
            return Scores(list(scores.values()), 0)
        cols = resolve_text_columns(list(first), text_columns)
        missing = [c for c in columns.values() if c not in first]
        if missing:
            raise ValueError(f"label columns not in the file: {missing}")
        for row in _chain(first, rows):
            n += 1
            chest = analyze(compose_report(row, cols), chest_mapping=chest_mapping).chest_labels
            for lab, col in columns.items():
                gold = 1 if (row.get(col) or "0").strip() in ("1", "1.0", "true", "True") else 0
                pred = predicted(chest.get(lab, "absent"), uncertain_as)
                s = scores[lab]
                s.support += gold
                if pred and gold:
                    s.tp += 1
                elif pred:
                    s.fp += 1
                elif gold:
                    s.fn += 1
                if keep_errors and pred != gold:
                    errors.append(
                        {
                            "id": row.get(id_column, str(n)),
                            "label": lab,
                            "gold": gold,
                            "state": chest.get(lab, "absent"),
                        }
                    )
    return Scores(list(scores.values()), n, errors)


def _chain(first: dict[str, str], rest: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
    yield first
    yield from rest
