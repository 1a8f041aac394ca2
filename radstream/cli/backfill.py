"""``radstream backfill PATH...``: historical reports -> parse + NLP -> ClickHouse (or Kafka)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from radstream.cli import settings_of


@click.command()
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "hl7", "fhir"]), default=None,
              help="Input format of all PATHS (default: from each file name).")
@click.option("--map", "maps", multiple=True, metavar="COL=FIELD", help="Column mapping for JSONL/CSV.")
@click.option("--site", default=None, help="Site of the reports (default: settings.ingest.site).")
@click.option("--via-kafka", is_flag=True,
              help="Produce to the reports topic (the worker does NLP and sink).")
@click.option("--workers", type=int, default=None, help="Worker processes for parse+NLP (default: cores).")
@click.option("--chunk", "chunk_size", type=int, default=256, show_default=True, help="Records per chunk.")
@click.option("--write-batch", type=int, default=2000, show_default=True,
              help="Records collected before one ClickHouse insert per table (and a checkpoint).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file (default: <state_dir>/backfill/<hash of paths and options>.json).")
@click.option("--restart", is_flag=True, help="Ignore an existing checkpoint and load from the start.")
@click.option("--no-nlp", is_flag=True, help="Load reports only (no findings).")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append reject lines (file:record<TAB>reason) here (default: stderr).")
@click.option("--progress/--no-progress", default=None, help="Rich progress bar (default: on a terminal).")
@click.pass_context
def backfill(ctx: click.Context, paths: tuple[Path, ...], fmt: str | None, maps: tuple[str, ...],
             site: str | None, via_kafka: bool, workers: int | None, chunk_size: int, write_batch: int,
             checkpoint: Path | None,
             restart: bool, no_nlp: bool, rejects: Path | None, progress: bool | None) -> None:
    """Load report files (JSONL, CSV, HL7 batch, FHIR NDJSON); resumable; summary at the end."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from processors.ingest.records import ColumnMapping
    from radstream.backfill import run_backfill

    settings = settings_of(ctx)
    try:
        mapping = ColumnMapping.parse(maps)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--map") from None
    console = Console(stderr=True)
    show = console.is_terminal if progress is None else progress
    total = sum(p.stat().st_size for p in paths)
    out = rejects.open("a", encoding="utf-8") if rejects else sys.stderr
    bar = Progress(TextColumn("[bold]backfill"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                   TextColumn("{task.fields[records]} read, {task.fields[loaded]} loaded, "
                              "{task.fields[rate]}/s"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                   disable=not show)
    task = bar.add_task("backfill", total=total, records=0, loaded=0, rate="0")
    import time

    t0 = time.monotonic()

    def tick(done_bytes: int, records: int, loaded: int) -> None:
        rate = loaded / max(time.monotonic() - t0, 1e-6)
        bar.update(task, completed=done_bytes, records=records, loaded=loaded, rate=f"{rate:,.0f}")

    try:
        with bar:
            summary = run_backfill(settings, list(paths), fmt=fmt, mapping=mapping, site=site,
                                   via_kafka=via_kafka, workers=workers, chunk_size=chunk_size,
                                   checkpoint=checkpoint, restart=restart, nlp=not no_nlp, rejects=out,
                                   progress=tick, write_batch=write_batch)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if rejects:
            out.close()
    dest = settings.topics.reports if via_kafka else f"ClickHouse {settings.clickhouse.database}"
    click.echo(f"backfill {'resumed' if summary.resumed else 'done'}: {summary.files} file(s) -> {dest}")
    click.echo(f"  read {summary.read}, loaded {summary.loaded}, rejected {summary.rejected} "
               f"({summary.rows} table rows, {summary.seconds:.1f} s this run, "
               f"{summary.rate:,.0f} reports/s)")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1])[:15]:
        click.echo(f"  rejected {n:>7}  {reason}")
    click.echo(f"  checkpoint {summary.checkpoint}")
