"""``radstream model train|eval|predict``: a multi-label classifier trained on a site's labelled reports.

The trained directory is also a site classifier for the worker: ``<DIR>/classifier.json`` is the
config to list in ``ml.classifiers`` (``"task": "linear"``; see docs/ml.md).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import click

CONFIG_FILE = "classifier.json"
_CSV = click.Path(exists=True, dir_okay=False, path_type=Path)
_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _need(columns: list[str], wanted: list[str], path: Path) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise click.ClickException(f"{path}: no column {', '.join(missing)} (columns: {', '.join(columns)})")


def _labels(value: str | None, sep: str) -> list[str]:
    return sorted({x.strip() for x in (value or "").split(sep) if x.strip()})


def _load(model_dir: Path) -> Any:
    from processors.ml.linear import LinearModel, LinearModelError

    try:
        return LinearModel.load(model_dir)
    except LinearModelError as exc:
        raise click.ClickException(str(exc)) from None


def _predict(model: Any, rows: list[dict[str, str]]) -> list[list[str]]:
    from processors.ml.features import FeatureExtractor, compose_report

    fx = FeatureExtractor()
    cols = model.meta["text_columns"]
    return [[lab for lab, _ in model.predict(fx.features(compose_report(r, cols)))] for r in rows]


@click.group()
def model() -> None:
    """Train, score and apply a site's multi-label report classifier."""


@model.command("train")
@click.option("--labels", "labels_csv", required=True, type=_CSV,
              help="CSV of labelled reports.")
@click.option("--text-columns", required=True,
              help="Comma-separated text columns, e.g. clinical_history,impression.")
@click.option("--label-column", required=True, help="Column with the labels, separated by --separator.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--id-column", default="report_id", show_default=True,
              help="Report id column (for predict).")
@click.option("--separator", default=";", show_default=True)
@click.option("--name", default=None,
              help="Classifier name (findings source model:<name>); default: the --out name.")
@click.option("--category", default="finding", show_default=True,
              help="Finding category of the labels.")
@click.option("--c", "c", type=float, default=None,
              help="Inverse L2 strength (default: chosen from 10, 30, 100 by inner CV).")
@click.option("--folds", type=int, default=5, show_default=True, help="Folds of the threshold tuning.")
@click.option("--seed", type=int, default=0, show_default=True)
def train_cmd(labels_csv: Path, text_columns: str, label_column: str, out: Path, id_column: str,
              separator: str, name: str | None, category: str, c: float | None, folds: int,
              seed: int) -> None:
    """Train on labelled reports; write the model and its site-classifier config to OUT."""
    if importlib.util.find_spec("sklearn") is None:
        raise click.ClickException("training needs scikit-learn: pip install 'radstream[train]' "
                                   "(applying a trained model needs only numpy)")
    from processors.ml.features import FeatureExtractor, compose_report
    from processors.ml.linear import LinearModelError, TrainOptions, train

    t0 = time.perf_counter()
    columns, rows = _read_csv(labels_csv)
    cols = [x.strip() for x in text_columns.split(",") if x.strip()]
    _need(columns, [*cols, label_column], labels_csv)
    fx = FeatureExtractor()
    feats = [fx.features(compose_report(r, cols)) for r in rows]
    gold = [_labels(r[label_column], separator) for r in rows]
    opts = TrainOptions(folds=folds, seed=seed) if c is None else TrainOptions(c=c, folds=folds, seed=seed)
    meta = {"text_columns": cols, "label_column": label_column, "id_column": id_column,
            "separator": separator}
    try:
        trained = train(feats, gold, opts, meta)
    except LinearModelError as exc:
        raise click.ClickException(str(exc)) from None
    trained.save(out)
    name = name or out.resolve().name
    config = {"name": name, "model_dir": ".", "task": "linear",
              "labels": {lab: {"concept": lab, "category": category} for lab in trained.labels}}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    click.echo(f"trained {name}: {len(rows)} reports, {len(trained.labels)} labels, "
               f"{len(trained.vocab)} features in {time.perf_counter() - t0:.1f} s (peak RSS {peak:.0f} MB); "
               f"site classifier config {out / CONFIG_FILE}", err=True)


@model.command("eval")
@click.option("--model", "model_dir", required=True, type=_DIR)
@click.argument("file", type=_CSV)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def eval_cmd(model_dir: Path, file: Path, as_json: bool) -> None:
    """Per-label and micro/macro precision, recall, F1 of the model on a labelled CSV."""
    from processors.ml.metrics import evaluate

    trained = _load(model_dir)
    columns, rows = _read_csv(file)
    label_column = trained.meta["label_column"]
    _need(columns, [*trained.meta["text_columns"], label_column], file)
    gold = [_labels(r[label_column], trained.meta["separator"]) for r in rows]
    scores = evaluate(gold, _predict(trained, rows))
    if as_json:
        click.echo(json.dumps(scores, indent=2))
        return
    click.echo(f"{'label':<16}{'support':>8}{'P':>8}{'R':>8}{'F1':>8}")
    for lab, s in scores["labels"].items():
        click.echo(f"{lab:<16}{s['support']:>8}{s['precision']:>8.3f}{s['recall']:>8.3f}{s['f1']:>8.3f}")
    mi, ma = scores["micro"], scores["macro"]
    click.echo(f"{'micro':<16}{mi['support']:>8}{mi['precision']:>8.3f}{mi['recall']:>8.3f}{mi['f1']:>8.3f}")
    click.echo(f"{'macro':<16}{'':>8}{ma['precision']:>8.3f}{ma['recall']:>8.3f}{ma['f1']:>8.3f}")
    click.echo(f"{scores['reports']} reports")


@model.command("predict")
@click.option("--model", "model_dir", required=True, type=_DIR)
@click.argument("file", type=_CSV)
def predict_cmd(model_dir: Path, file: Path) -> None:
    """Label the reports of a CSV (the label column may be absent); CSV with the id and label columns
    on stdout."""
    trained = _load(model_dir)
    columns, rows = _read_csv(file)
    id_column, label_column = trained.meta["id_column"], trained.meta["label_column"]
    _need(columns, [id_column, *trained.meta["text_columns"]], file)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow([id_column, label_column])
    for r, labels in zip(rows, _predict(trained, rows), strict=True):
        writer.writerow([r[id_column], trained.meta["separator"].join(labels)])
