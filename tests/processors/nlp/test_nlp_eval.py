"""End-to-end score on the shared dev set (processors/nlp/chest/evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DEV = next(
    (
        p
        for p in (
            REPO.parent / "shared" / "eval" / "openi_chest_xray_dev.csv",
            Path("/work/shared/eval/openi_chest_xray_dev.csv"),
        )
        if p.exists()
    ),
    None,
)


@pytest.mark.skipif(
    DEV is None, reason="dev set <repo>/../shared/eval/openi_chest_xray_dev.csv is not present"
)
def test_dev_set_micro_f1() -> None:
    from processors.nlp.chest.evaluate import evaluate

    assert DEV is not None
    scores = evaluate(DEV)
    assert scores.n_reports > 3000
    assert scores.micro_f1 >= 0.96, scores.to_dict()
