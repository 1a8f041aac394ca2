"""``radstream nlp analyze|assert|label|eval`` (radstream/cli/nlp.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from processors.nlp.chest import HERE as CHEST_DIR
from radstream.cli.nlp import nlp


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
    columns = ["chest14", str(src), "--id-column", "id", "--text-column", "report"]
    scored = ["eval", *columns, "--labels", "Cardiomegaly,Effusion"]
    res = CliRunner().invoke(nlp, [*scored, "--json"])
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
    res = CliRunner().invoke(nlp, ["label", *columns])
    assert res.exit_code == 0, res.output
    out = list(csv.DictReader(res.output.splitlines()))
    assert [r["Cardiomegaly"] for r in out] == ["1", "0", "0"]
    assert [r["Effusion"] for r in out] == ["0", "1", "0"]
    table = CliRunner().invoke(nlp, scored)
    assert "micro F1" in table.output


def test_analyze_and_assert_commands(tmp_path: Path) -> None:
    res = CliRunner().invoke(nlp, ["analyze", "-"], input="FINDINGS: No pneumothorax.")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["findings"][0]["negated"] is True
    res = CliRunner().invoke(nlp, ["analyze", "--avro", "-"], input="FINDINGS: No pneumothorax.")
    avro = json.loads(res.output)
    assert avro["findings"][0]["negated"] is True and "sentences" not in avro  # the contract's fields only
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


def test_mapping_option_is_passed_to_the_engine(tmp_path: Path) -> None:
    # the clinical mapping codes hiatal hernia as Hernia, the default (Open-i) mapping does not
    src = tmp_path / "hernia.csv"
    src.write_text("id,report,Hernia\nh,FINDINGS: Large hiatal hernia. Lungs are clear.,1\n")
    clinical = str(CHEST_DIR / "mapping_clinical.json")
    args = ["label", "chest14", str(src), "--id-column", "id", "--text-column", "report"]
    default = CliRunner().invoke(nlp, args)
    mapped = CliRunner().invoke(nlp, [*args, "--mapping", clinical])
    assert default.exit_code == 0 and mapped.exit_code == 0, default.output + mapped.output
    assert [r["Hernia"] for r in csv.DictReader(default.output.splitlines())] == ["0"]
    assert [r["Hernia"] for r in csv.DictReader(mapped.output.splitlines())] == ["1"]
    scores = CliRunner().invoke(
        nlp,
        ["eval", *args[1:], "--labels", "Hernia", "--json", "--mapping", clinical],
    )
    assert json.loads(scores.output)["labels"]["Hernia"]["tp"] == 1, scores.output
