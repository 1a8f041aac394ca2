"""End-to-end score on the shared dev set, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from radstream.cli.nlp import nlp

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


def _write_csv(path: Path) -> None:
    rows = [
        {
            "id": "a",
            "report": "FINDINGS: Moderate cardiomegaly. No effusion.",
            "Cardiomegaly": "1",
            "Effusion": "0",
            "mesh": "Cardiomegaly",
        },
        {
            "id": "b",
            "report": "FINDINGS: Small left pleural effusion.",
            "Cardiomegaly": "0",
            "Effusion": "1",
            "mesh": "Pleural Effusion",
        },
        {
            "id": "c",
            "report": "Lungs clear. Heart size normal.",
            "Cardiomegaly": "1",
            "Effusion": "0",
            "mesh": "Cardiomegaly",
        },
    ]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_eval_and_label_with_custom_columns(tmp_path: Path) -> None:
    src = tmp_path / "site.csv"
    _write_csv(src)
    res = CliRunner().invoke(
        nlp,
        [
            "eval",
            "chest14",
            str(src),
            "--id-column",
            "id",
            "--text-column",
            "report",
            "--labels",
            "Cardiomegaly,Effusion",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["labels"]["Cardiomegaly"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": 0.6667,
        "support": 2,
        "tp": 1,
        "fp": 0,
        "fn": 1,
    }
    assert data["labels"]["Effusion"]["f1"] == 1.0
    res = CliRunner().invoke(
        nlp, ["label", "chest14", str(src), "--id-column", "id", "--text-column", "report"]
    )
    assert res.exit_code == 0, res.output
    out = list(csv.DictReader(res.output.splitlines()))
    assert [r["Cardiomegaly"] for r in out] == ["1", "0", "0"]
    assert [r["Effusion"] for r in out] == ["0", "1", "0"]
    table = CliRunner().invoke(
        nlp,
        [
            "eval",
            "chest14",
            str(src),
            "--id-column",
            "id",
            "--text-column",
            "report",
            "--labels",
            "Cardiomegaly,Effusion",
        ],
    )
    assert "micro F1" in table.output


def test_analyze_and_assert_commands(tmp_path: Path) -> None:
    res = CliRunner().invoke(nlp, ["analyze", "-"], input="FINDINGS: No pneumothorax.")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["findings"][0]["negated"] is True
    lines = "\n".join(
        json.dumps(x)
        for x in (
            {"text": "Pneumonia cannot be excluded.", "term": "pneumonia"},
            {"text": "Family history of breast cancer.", "term": "breast cancer"},
            {"text": "no such term here", "term": "nodule"},
        )
    )
    res = CliRunner().invoke(nlp, ["assert", "-"], input=lines)
    assert res.exit_code == 0, res.output
    got = [json.loads(x) for x in res.output.splitlines()]
    assert got[0]["uncertain"] and not got[0]["negated"]
    assert got[1]["experiencer"] == "other"
    assert "error" in got[2]
