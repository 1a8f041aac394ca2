"""``radstream model train|eval|predict`` round trip on a synthetic labelled CSV (tests/ml_labelled.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from radstream.cli import main
from tests.ml_labelled import TEST_PREFIXES, TRAIN_PREFIXES, rows, write_csv
from tests.ml_needs import NEEDS_SKLEARN

pytestmark = [NEEDS_SKLEARN]


def _train(tmp: Path, *extra: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    train = write_csv(tmp / "train.csv", rows(TRAIN_PREFIXES))
    out = tmp / "site-codes"
    res = CliRunner().invoke(main, ["model", "train", "--labels", str(train), "--text-columns",
                                    "clinical_history,impression", "--label-column", "codes",
                                    "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    assert "75 reports, 5 labels" in res.output and "peak RSS" in res.output
    return out


def test_train_eval_predict_round_trip(tmp_path: Path) -> None:
    out = _train(tmp_path)
    assert {p.name for p in out.iterdir()} == {"model.json", "weights.npz", "classifier.json"}
    config = json.loads((out / "classifier.json").read_text())
    assert config["task"] == "linear" and config["name"] == "site-codes" and config["model_dir"] == "."
    assert set(config["labels"]) == {"486", "599.0", "780.6", "786.07", "786.2"}

    test = rows(TEST_PREFIXES)
    res = CliRunner().invoke(main, ["model", "eval", "--model", str(out),
                                    str(write_csv(tmp_path / "test.csv", test))])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["label", "support", "P", "R", "F1"]
    micro = next(line.split() for line in lines if line.startswith("micro"))
    assert float(micro[-1]) >= 0.9, res.output  # unseen prefixes: the sentences carry the labels

    # predict on a CSV without the label column: report_id + the label column on stdout
    nolabel = write_csv(tmp_path / "in.csv", test, ["report_id", "clinical_history", "impression"])
    res = CliRunner().invoke(main, ["model", "predict", "--model", str(out), str(nolabel)])
    assert res.exit_code == 0, res.output
    got = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [list(r) for r in got[:1]] == [["report_id", "codes"]]
    assert [r["report_id"] for r in got] == [r["report_id"] for r in test]
    pred = {r["report_id"]: set(filter(None, r["codes"].split(";"))) for r in got}
    for r in test:
        if r["impression"] == "No pneumonia.":  # a negated diagnosis is not coded
            assert "486" not in pred[r["report_id"]]
        if r["impression"].startswith("Right lower lobe pneumonia"):
            assert "486" in pred[r["report_id"]]
    exact = sum(pred[r["report_id"]] == set(r["codes"].split(";")) for r in test)
    assert exact >= 0.9 * len(test)


def test_eval_json_shape(tmp_path: Path) -> None:
    out = _train(tmp_path)
    res = CliRunner().invoke(main, ["model", "eval", "--model", str(out), "--json",
                                    str(write_csv(tmp_path / "test.csv", rows(TEST_PREFIXES)))])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert set(doc) == {"reports", "labels", "micro", "macro"}
    assert doc["reports"] == 50
    assert set(doc["micro"]) == {"tp", "fp", "fn", "support", "precision", "recall", "f1"}
    assert set(doc["macro"]) == {"precision", "recall", "f1"}
    assert set(doc["labels"]) == {"486", "599.0", "780.6", "786.07", "786.2"}
    s486 = doc["labels"]["486"]
    assert s486["support"] == 20 and s486["tp"] + s486["fn"] == 20
    assert doc["micro"]["support"] == sum(s["support"] for s in doc["labels"].values())


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    out = _train(tmp_path)
    data = rows(TEST_PREFIXES)
    no_text = write_csv(tmp_path / "x.csv", data, ["report_id", "impression"])
    res = CliRunner().invoke(main, ["model", "predict", "--model", str(out), str(no_text)])
    assert res.exit_code != 0 and "no column clinical_history" in res.output
    res = CliRunner().invoke(main, ["model", "eval", "--model", str(tmp_path), str(no_text)])
    assert res.exit_code != 0 and "no trained linear model" in res.output
    bad = write_csv(tmp_path / "bad.csv", data, ["report_id", "clinical_history", "impression"])
    res = CliRunner().invoke(main, ["model", "train", "--labels", str(bad), "--text-columns", "impression",
                                    "--label-column", "codes", "--out", str(tmp_path / "m2")])
    assert res.exit_code != 0 and "no column codes" in res.output


@pytest.mark.parametrize("seed", [0, 7])
def test_training_is_deterministic(tmp_path: Path, seed: int) -> None:
    a = _train(tmp_path / "a", "--seed", str(seed))
    b = _train(tmp_path / "b", "--seed", str(seed))
    assert (a / "model.json").read_text() == (b / "model.json").read_text()
    import numpy as np

    with np.load(a / "weights.npz") as wa, np.load(b / "weights.npz") as wb:
        assert list(wa.keys()) == list(wb.keys())
        for k in wa:
            assert np.array_equal(wa[k], wb[k]), k
