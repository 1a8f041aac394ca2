"""``radstream ingest file|hl7-listener|fhir-server|hl7-send``: report events into Kafka."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from radstream.cli import checked_settings, settings_of

if TYPE_CHECKING:
    from streams.config import IngestConfig, KafkaConfig, TopicsConfig
    from streams.ingest.publish import Publisher

FORMATS = ("jsonl", "csv", "hl7", "fhir")


def _front_door(ctx: click.Context) -> tuple[KafkaConfig, TopicsConfig, IngestConfig]:
    settings = checked_settings(ctx)
    return settings.kafka, settings.topics, settings.ingest


def check_topics(pub: Publisher, *names: str) -> None:
    """Fail early and clearly when Kafka is unreachable or a topic is missing (we never auto-create)."""
    from confluent_kafka import KafkaException

    try:
        topics = pub.producer.list_topics(timeout=10).topics
    except KafkaException as exc:
        raise click.ClickException(f"Kafka not reachable: {exc}") from None
    missing = [n for n in names if n not in topics]
    if missing:
        raise click.ClickException(f"topic(s) {', '.join(missing)} missing: run `radstream topics create`")


@click.group()
def ingest() -> None:
    """Report events from the RIS (HL7 v2 over MLLP, FHIR over HTTP, files) into Kafka."""


@ingest.command("file")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Input format (default: from the name: .csv, .hl7, .json or *fhir* -> fhir, else jsonl).")
@click.option("--map", "maps", multiple=True, metavar="COL=FIELD",
              help="Column COL fills event field FIELD (repeatable; several columns may fill 'text').")
@click.option("--site", default=None, help="Site of the reports (default: settings.ingest.site).")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write reject lines (where<TAB>reason) here instead of stderr.")
@click.pass_context
def file_(ctx: click.Context, path: Path, fmt: str | None, maps: tuple[str, ...], site: str | None,
          rejects: Path | None) -> None:
    """Produce one report event per record of PATH; bad records go to the dead-letter topic."""
    from processors.ingest.model import ReportEvent
    from processors.ingest.records import ColumnMapping, Rejected
    from streams.ingest.files import guess_format, iter_file
    from streams.ingest.publish import Counts, Publisher

    settings = settings_of(ctx)
    try:
        mapping = ColumnMapping.parse(maps)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--map") from None
    fmt = fmt or guess_format(path)
    site = site or settings.ingest.site
    pub = Publisher(settings.kafka, settings.topics, settings.ingest, stage="ingest-file")
    check_topics(pub, settings.topics.reports, settings.topics.dead_letter)
    counts = Counts()
    read = 0
    out = rejects.open("w", encoding="utf-8") if rejects else sys.stderr
    try:
        events: list[ReportEvent] = []
        items = iter_file(path, fmt, mapping, site=site, accession_field=settings.ingest.accession_field)
        for _no, item in items:
            read += 1
            if isinstance(item, Rejected):
                counts.rejected += 1
                print(item.line(), file=out)
                pub.dead_letter_counted(item.raw, item.reason, item.where, counts)
                continue
            events.append(item)
            if len(events) >= 1000:
                pub.publish_all(events, counts)
                events.clear()
        pub.publish_all(events, counts)
        left = pub.flush(120.0)
    finally:
        if rejects:
            out.close()
    # ``left``: events and dead letters still unconfirmed; a rejected record whose dead letter failed is lost
    click.echo(f"{path}: read {read}, produced {counts.produced}, rejected {counts.rejected}, "
               f"failed {counts.failed + left}, dead letters failed {counts.dead_letter_failed} "
               f"-> {settings.topics.reports}")
    if counts.failed or left or counts.dead_letter_failed:
        for err in counts.errors:
            click.echo(f"delivery failed: {err}", err=True)
        ctx.exit(1)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log_level_option = click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
                                default="INFO", show_default=True, help="Log level (logs go to stderr).")


def _setup_logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@ingest.command("hl7-listener")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2575, show_default=True, type=int, help="MLLP port (0: a free one).")
@click.option("--metrics-port", type=int, default=None,
              help="Port of /metrics, /health, /ready (default: metrics.hl7_port; 0: a free one; -1: none).")
@log_level_option
@click.pass_context
def hl7_listener(ctx: click.Context, host: str, port: int, metrics_port: int | None, log_level: str) -> None:
    """MLLP listener for HL7 v2 ORU^R01: ACK AA after Kafka confirmed, AE/AR with a reason otherwise.

    Runs until SIGINT/SIGTERM, then stops accepting, waits for Kafka to confirm what it queued and
    exits 0.
    """
    import asyncio

    from radstream.monitoring import serve_ops
    from streams.ingest.mllp import serve_forever

    _setup_logging(log_level)
    settings = checked_settings(ctx)  # before anything (the metrics page included) starts
    port_ = settings.metrics.hl7_port if metrics_port is None else metrics_port
    ops = serve_ops(settings, "hl7-listener", port_) if port_ >= 0 else None
    try:
        asyncio.run(serve_forever(*_front_door(ctx), host, port))
    finally:
        if ops is not None:
            ops.stop()


@ingest.command("fhir-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8180, show_default=True, type=int, help="HTTP port (0: a free one).")
@log_level_option
@click.pass_context
def fhir_server(ctx: click.Context, host: str, port: int, log_level: str) -> None:
    """FHIR R4 endpoint: POST /fhir/DiagnosticReport, POST /fhir/Bundle (OperationOutcome on errors).

    Runs until SIGINT/SIGTERM, then stops accepting, flushes the producer and exits 0.
    """
    import asyncio

    from radstream import access
    from streams.ingest.fhir_server import serve_forever

    _setup_logging(log_level)
    settings = checked_settings(ctx)
    asyncio.run(serve_forever(*_front_door(ctx), host, port, gate=access.gate(settings, "fhir"),
                              tls=access.tls(settings)))


@ingest.command("hl7-send")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2575, show_default=True, type=int)
@click.option("--timeout", default=60.0, show_default=True, type=float, help="Seconds to wait for each ACK.")
def hl7_send(paths: tuple[Path, ...], host: str, port: int, timeout: float) -> None:
    """Send the HL7 messages of PATHS (single messages or batch files) over MLLP; print each ACK."""
    import asyncio

    from processors.ingest.hl7v2 import parse_ack, split_batch
    from streams.ingest.mllp import send_messages

    messages = [m for p in paths for m in split_batch(p.read_bytes())]
    acks = asyncio.run(send_messages(host, port, messages, timeout))
    bad = 0
    for ack in acks:
        code, control_id, text = parse_ack(ack)
        bad += code != "AA"
        click.echo(f"{code}\t{control_id}\t{text}")
    click.echo(f"sent {len(messages)}, AA {len(acks) - bad}, other {bad}", err=True)
