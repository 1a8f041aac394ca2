"""The installation's research key and the text de-identification set-up: options from ``[text_deid]``;
the key from the ingest section, or (private by default, when no pseudonym key is configured) a random
key kept in ``<state_dir>/text_deid.key`` (created on first use, mode 0600). The one key keys report text,
the analysts' identifiers and study references (the DICOM worker of this state dir takes it from here),
so dates and identifiers agree across them. Processes on other hosts need the same key configured
(``ingest.pseudonym_key_file``). The de-identified images are not keyed with the generated key: the
research SCP takes the configured key only and, without one, refuses instances of de-identified projects
(their pseudonyms would join nothing on another host)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from processors.ingest.pseudonym import load_key
from radstream.config import Settings
from streams.handlers import TextDeid

LOCAL_KEY_FILE = "text_deid.key"


def research_key(settings: Settings) -> bytes:
    key = load_key(settings.ingest.pseudonym_key, settings.ingest.pseudonym_key_file)
    if key is not None:
        return key
    path = Path(settings.state_dir) / LOCAL_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    found = load_key(key_file=str(path))
    if found is None:  # load_key with a file name returns a key or raises
        raise RuntimeError(f"no text de-identification key in {path}")
    return found


def text_deid(settings: Settings) -> TextDeid:
    """What the NLP agent and the backfill de-identify report text with."""
    return TextDeid.of(research_key(settings), settings.text_deid)
