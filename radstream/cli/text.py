"""``radstream text deid [FILE|-]``: report-text de-identification from the command line.

JSON lines in: ``{"text": ..., "patient_id": ...}`` ("patient_id" optional: the research pseudonym, or an
original id that the configured key turns into one; it picks the date shift and the surrogates). JSON
lines out, one per input line, in order: ``{"text": ..., "spans": [{"start", "end", "type"}]}`` (offsets
into the de-identified text; "id" is copied when the input has one), or ``{"line": N, "error": ...}`` for a
line that cannot be de-identified (not UTF-8, not JSON, no "text", binary, too large). The exit status is 1
when any line failed, after all lines were processed.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

from radstream.cli import settings_of


def _fail(no: int, message: str) -> str:
    return json.dumps({"line": no, "error": message})


def deid_line(raw: bytes, no: int, deid: Any, max_bytes: int) -> tuple[str, bool]:
    """One input line -> (output JSON line, ok)."""
    from processors.textdeid import TextDeidError
    from streams.handlers import deidentify_report

    if len(raw) > max_bytes:
        return _fail(no, f"line is {len(raw)} bytes, more than the limit of {max_bytes}"), False
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _fail(no, f"not valid UTF-8 at byte {exc.start} (mixed encodings or binary data)"), False
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return _fail(no, f"not valid JSON: {exc.msg} at column {exc.colno}"), False
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        return _fail(no, 'expected a JSON object with a "text" string'), False
    patient = item.get("patient_id", item.get("patient", ""))
    report = {
        "text": item["text"],
        "patient_id": str(patient or ""),
        "patient_id_is_pseudonym": str(patient or "").startswith("psn-"),
        "site": item.get("site"),
    }
    try:
        _, result = deidentify_report(report, deid)
    except TextDeidError as exc:
        return _fail(no, str(exc)), False
    out: dict[str, Any] = {"id": item["id"]} if "id" in item else {}
    out.update(result.to_dict())
    return json.dumps(out, ensure_ascii=False), True


@click.group()
def text() -> None:
    """Report text: de-identification."""


@text.command("deid")
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "--mode",
    type=click.Choice(["surrogate", "tag"]),
    default=None,
    help="Surrogates (realistic stand-ins) or [TYPE] tags (default: text_deid.mode).",
)
@click.pass_context
def deid_cmd(ctx: click.Context, file: IO[bytes], mode: str | None) -> None:
    """De-identify report texts: JSON lines {"text": ...} in FILE (or - for stdin) -> JSON lines
    {"text": ..., "spans": [{"start", "end", "type"}]} on stdout."""
    import dataclasses

    from processors.textdeid.types import Mode
    from radstream.text_deid import text_deid

    settings = settings_of(ctx)
    deid = text_deid(settings)
    if mode:
        chosen: Mode = "tag" if mode == "tag" else "surrogate"
        deid = dataclasses.replace(deid, options=dataclasses.replace(deid.options, mode=chosen))
    max_bytes = 4 * deid.options.max_chars + 1024  # UTF-8: at most 4 bytes a character, plus the JSON
    failed = 0
    for no, raw in enumerate(file, 1):
        if not raw.strip():
            continue
        out, ok = deid_line(raw.rstrip(b"\r\n"), no, deid, max_bytes)
        failed += not ok
        sys.stdout.write(out + "\n")
    sys.stdout.flush()
    if failed:
        click.echo(f"{failed} line(s) could not be de-identified", err=True)
        ctx.exit(1)
