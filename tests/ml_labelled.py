"""A small synthetic labelled report CSV (our own sentences) for the site-trained classifier tests.

Labels are ICD-9-CM-like codes given by the sentences, under the coding rule the model has to learn
from the assertion-aware features: a negated or uncertain pneumonia is not coded.
"""

from __future__ import annotations

import csv
from pathlib import Path

HISTORIES = [
    ("fever since yesterday.", ["780.6"]),
    ("cough and fever.", ["786.2", "780.6"]),
    ("persistent cough for a week.", ["786.2"]),
    ("painful urination, positive urine culture.", ["599.0"]),
    ("wheezing at night.", ["786.07"]),
]
IMPRESSIONS = [
    ("Right lower lobe pneumonia.", ["486"]),
    ("No pneumonia.", []),
    ("Clear lungs.", []),
    ("Possible early pneumonia.", []),
    ("Left upper lobe pneumonia with a small effusion.", ["486"]),
]
TRAIN_PREFIXES = ["Two year old with", "Infant with", "Ten year old girl with"]
TEST_PREFIXES = ["Six month old boy with", "Teenager with"]
COLUMNS = ["report_id", "clinical_history", "impression", "codes"]


def rows(prefixes: list[str]) -> list[dict[str, str]]:
    out = []
    for p in prefixes:
        for h, hl in HISTORIES:
            for i, il in IMPRESSIONS:
                codes = sorted(set(hl) | set(il))
                out.append({"report_id": f"S{len(out) + 1:03d}-{len(p)}", "clinical_history": f"{p} {h}",
                            "impression": i, "codes": ";".join(codes)})
    return out


def write_csv(path: Path, data: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    cols = columns or COLUMNS
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(data)
    return path
