"""``radstream nlp analyze|assert|label|eval``: the NLP engine from the command line."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import click

from processors.nlp.chest import LABELS14

_LABEL_HELP = (
    "Gold label columns: LABEL=COLUMN pairs, comma separated (default: each of the 14 labels "
    "in a column of the same name). Labels missing from the file are skipped."
)


@click.group()
def nlp() -> None:
    """Radiology NLP: sections, findings with ConText, chest labels."""


@nlp.command("analyze")
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--exam", default=None, help="Procedure description (for exam normalisation).")
@click.option("--avro", is_flag=True, help="Print only the fields of the report_findings contract.")
@click.option("--indent", type=int, default=2, show_default=True)
def analyze_cmd(file: Any, exam: str | None, avro: bool, indent: int) -> None:
    """Analyse one report (FILE or - for stdin) and print JSON."""
    from processors.nlp import analyze
    from streams.findings_avro import analysis_to_avro

    result = analyze(file.read(), exam=exam)
    click.echo(json.dumps(analysis_to_avro(result) if avro else result.to_dict(), indent=indent or None))


@nlp.command("assert")
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
def assert_cmd(file: Any) -> None:
    """ConText status of your own terms: IN.jsonl lines {"text", "term"} (or "start"/"end") -> JSON lines."""
    from processors.nlp import assert_term

    for line in file:
        if not line.strip():
            continue
        item = json.loads(line)
        target: str | tuple[int, int] = (
            (int(item["start"]), int(item["end"])) if "start" in item and "end" in item else item["term"]
        )
        out: dict[str, Any] = {k: item[k] for k in ("id",) if k in item}
        try:
            res = assert_term(item["text"], target)
        except ValueError as exc:
            out.update(term=item.get("term"), error=str(exc))
        else:
            out.update(
                term=item.get("term"),
                negated=res.negated,
                uncertain=res.uncertain,
                historical=res.historical,
                hypothetical=res.hypothetical,
                experiencer=res.experiencer,
                certainty=res.certainty,
                triggers=res.triggers,
            )
        click.echo(json.dumps(out))


def _label_columns(spec: str | None) -> dict[str, str]:
    if not spec:
        return {}
    out = {}
    for pair in spec.split(","):
        label, _, col = pair.partition("=")
        out[label.strip()] = (col or label).strip()
    return out


def _csv_options(f: Any) -> Any:
    f = click.option("--id-column", default="report_id", show_default=True, help="Report id column.")(f)
    f = click.option(
        "--text-column",
        "text_columns",
        multiple=True,
        help="Text column(s), repeatable; several become sections headed by the column name "
        "(default: exam, indication, comparison, findings, impression if present, else text).",
    )(f)
    f = click.option(
        "--mapping",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Concept -> label mapping JSON (default: the Open-i convention mapping).",
    )(f)
    return f


@nlp.group("label")
def label() -> None:
    """Label reports with observation labels."""


@label.command("chest14")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_csv_options
@click.option("--states", is_flag=True, help="Write positive/negative/uncertain/absent instead of 1/0.")
@click.option(
    "--uncertain-as",
    type=click.Choice(["negative", "positive"]),
    default="negative",
    show_default=True,
    help="How an uncertain label is written as 0/1.",
)
def label_chest14(
    file: str,
    id_column: str,
    text_columns: tuple[str, ...],
    mapping: str | None,
    states: bool,
    uncertain_as: str,
) -> None:
    """Label IN.csv with the 14 ChestX-ray14 labels + normal; CSV to stdout."""
    from processors.nlp import analyze
    from processors.nlp.chest.evaluate import compose_report, predicted, read_rows, resolve_text_columns

    fh = sys.stdin if file == "-" else open(file, newline="", encoding="utf-8")  # noqa: SIM115
    try:
        rows = read_rows(fh)
        labels = [*LABELS14, "normal"]
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([id_column, *labels])
        cols: list[str] | None = None
        for row in rows:
            if cols is None:
                cols = resolve_text_columns(list(row), text_columns or None)
            chest = analyze(compose_report(row, cols), chest_mapping=mapping).chest_labels
            values = [
                chest.get(lab, "absent") if states else predicted(chest.get(lab, "absent"), uncertain_as)
                for lab in labels
            ]
            writer.writerow([row.get(id_column, ""), *values])
    finally:
        if fh is not sys.stdin:
            fh.close()


@nlp.group("eval")
def eval_() -> None:
    """Score the engine against labelled reports."""


@eval_.command("chest14")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_csv_options
@click.option("--labels", "label_spec", default=None, help=_LABEL_HELP)
@click.option(
    "--with-normal", is_flag=True, help="Also score the `normal` label (not part of micro/macro F1)."
)
@click.option(
    "--uncertain-as",
    type=click.Choice(["negative", "positive"]),
    default="negative",
    show_default=True,
    help="Score an uncertain label as 0 (default: hedged findings are not coded in Open-i) or 1.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option(
    "--errors",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the disagreements (id, label, gold, state) as JSON lines to this file.",
)
def eval_chest14(
    file: str,
    id_column: str,
    text_columns: tuple[str, ...],
    mapping: str | None,
    label_spec: str | None,
    with_normal: bool,
    uncertain_as: str,
    as_json: bool,
    errors: str | None,
) -> None:
    """Per-label precision/recall/F1/support and micro/macro F1 over the 14 labels of IN.csv.

    mesh/problems columns are blanked before labelling: the engine never sees the manual coding.
    """
    from processors.nlp.chest.evaluate import evaluate

    columns = _label_columns(label_spec)
    with open(file, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    labels = [lab for lab in (columns or LABELS14) if columns.get(lab, lab) in header]
    scores = evaluate(
        file,
        id_column=id_column,
        text_columns=text_columns or None,
        labels=labels,
        label_columns=columns,
        uncertain_as=uncertain_as,
        keep_errors=bool(errors),
        chest_mapping=mapping,
    )
    normal = None
    if with_normal and "normal" in header:
        normal = evaluate(
            file,
            id_column=id_column,
            text_columns=text_columns or None,
            labels=["normal"],
            uncertain_as=uncertain_as,
            chest_mapping=mapping,
        ).labels[0]
    if errors:
        with open(errors, "w", encoding="utf-8") as out:
            for e in scores.errors:
                out.write(json.dumps(e) + "\n")
    if as_json:
        data = scores.to_dict()
        if normal is not None:
            data["normal"] = {
                "precision": round(normal.precision, 4),
                "recall": round(normal.recall, 4),
                "f1": round(normal.f1, 4),
                "support": normal.support,
            }
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"chest14 on {file} ({scores.n_reports} reports, uncertain as {uncertain_as})")
    for col in ("label", "precision", "recall", "F1", "support", "TP", "FP", "FN"):
        table.add_column(col, justify="left" if col == "label" else "right")
    rows = list(scores.labels) + ([normal] if normal is not None else [])
    for s in rows:
        table.add_row(
            s.label,
            f"{s.precision:.3f}",
            f"{s.recall:.3f}",
            f"{s.f1:.3f}",
            str(s.support),
            str(s.tp),
            str(s.fp),
            str(s.fn),
        )
    table.add_section()
    table.add_row("micro F1", "", "", f"{scores.micro_f1:.4f}", str(sum(s.support for s in scores.labels)))
    table.add_row("macro F1", "", "", f"{scores.macro_f1:.4f}", "")
    Console().print(table)
