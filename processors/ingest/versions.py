"""Whole-report versions: the text a radiologist reads at a version of a report.

A report is the last non-addendum version (preliminary, final or corrected: a correction replaces the
report, earlier addenda included) followed by every addendum after it, in version order. Senders differ
in what an addendum message carries: some repeat the whole report with the addendum at its end (an HL7
OBR-25 ``C`` with an ``ADDENDUM`` line, a FHIR ``appended``/``amended`` DiagnosticReport whose
``presentedForm`` holds both), others send the addendum alone (HL7 OBX-11 ``B`` lines only). An
addendum that already holds the report text is taken whole; one that does not is appended to it.

``History`` is the state a stream keeps per report (``site|accession``): plain, JSON-friendly lists so
it can live in a changelogged table. Re-applying a version already in it changes nothing (at-least-once
delivery replays messages).
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.ingest.model import RETRACTING

# [version, status, text] per version seen, ascending by version
History = list[list[object]]

ADDENDUM_SEPARATOR = "\n\n"


def _norm(text: str) -> str:
    return " ".join(text.split())


def add_version(history: Sequence[Sequence[object]], version: int, status: str, text: str) -> History:
    """``history`` with this version (replacing an entry of the same version), pruned to what later
    versions can still need: entries from the last non-addendum, non-retracting version on."""
    entries = [list(e) for e in history if int(str(e[0])) != version]
    entries.append([version, status, text])
    entries.sort(key=lambda e: int(str(e[0])))
    base = 0
    for i, (_, st, _) in enumerate(entries):
        if st != "addendum" and st not in RETRACTING:
            base = i
    return entries[base:]


def whole_text(history: Sequence[Sequence[object]], version: int) -> str:
    """The whole text of ``version``: its report and the addenda after that report, up to ``version``."""
    text = ""
    for v, status, part in sorted(history, key=lambda e: int(str(e[0]))):
        if int(str(v)) > version:
            break
        status, part = str(status), str(part)
        if status in RETRACTING or not part.strip():
            continue
        if status != "addendum" or not text:
            text = part  # a new report (or a correction) replaces what came before
        elif _norm(text) in _norm(part):
            text = part  # the sender repeated the report with its addendum
        elif _norm(part) not in _norm(text):
            text = text.rstrip() + ADDENDUM_SEPARATOR + part.strip()
    return text
