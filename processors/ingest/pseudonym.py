"""Research pseudonyms: the patient id replaced by a keyed HMAC-SHA256 (``psn-`` + 32 hex digits).

Applied by every front door (``streams.ingest.publish.Publisher`` and the backfill workers) before an
event is encoded, so a real patient id never reaches a topic or a table when a key is configured
(``settings.ingest.pseudonym_key`` or the file named by ``pseudonym_key_file``). The key is never
logged or put into an event. Same patient + same site -> same pseudonym.

The other keyed identifiers (accession and other numbers, UIDs) are here too, so that report events
(``processors.ingest.research``) and de-identified images (``sinks.dicom.deid``) carry the same values.
What the analysts' data holds is documented in docs/analysts.md ("What analysts see").
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from processors.ingest.model import ReportEvent


class PseudonymKeyError(ValueError):
    pass


def load_key(key: str = "", key_file: str = "") -> bytes | None:
    """The HMAC key (None when pseudonymisation is off). ``key`` wins over ``key_file``."""
    if key:
        return key.encode("utf-8")
    if key_file:
        try:
            data = Path(key_file).read_bytes().strip()
        except OSError as exc:
            msg = f"cannot read the pseudonym key file {key_file}: {exc.strerror}"
            raise PseudonymKeyError(msg) from None
        if len(data) < 16:
            raise PseudonymKeyError(f"the pseudonym key in {key_file} is shorter than 16 bytes")
        return data
    return None


def pseudonym(key: bytes, site: str, patient_id: str) -> str:
    """Deterministic keyed pseudonym of one patient id at one site (hex, 32 chars)."""
    if not patient_id:
        return ""
    mac = hmac.new(key, f"{site}\x1f{patient_id}".encode(), hashlib.sha256)
    return "psn-" + mac.hexdigest()[:32]


def keyed_identifier(key: bytes, kind: str, value: str) -> str:
    """Keyed pseudonym of an identifier that is not the patient's, e.g. ``ACC-3F2A...`` (12 hex digits;
    at most 16 characters: fits DICOM SH and LO). Not site-scoped: the DICOM de-identifier computes the
    same value from the instance's Accession Number."""
    prefix = {"accession": "ACC", "patient": "PAT"}.get(kind, kind[:3].upper())
    mac = hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).digest()
    return f"{prefix}-{mac.hex()[:12].upper()}"


# a DICOM UID inside free text (PS3.5 9.1): root 0-2 and at least two more components (2.25.<uuid> has
# two); not part of a longer dotted number, and a full stop after it ends the sentence, not the UID
UID_IN_TEXT = re.compile(r"(?<![\d.])[0-2](?:\.(?:0|[1-9]\d*)){2,}(?!\d|\.\d)")


def keyed_uid(key: bytes, uid: str) -> str:
    """Keyed replacement of a DICOM UID: ``2.25.<128-bit integer>`` (PS3.5 B.2), the same in report
    events and in de-identified instances."""
    mac = hmac.new(key, f"uid:{uid}".encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(mac[:16], "big"))


def date_shift_days(key: bytes, patient_pseudonym: str) -> int:
    """Days (1..365) every date of one patient moves back, in images and in report text alike.

    Keyed on the research pseudonym, not the original id: the report stream only ever carries the
    pseudonym, and the image side derives the same pseudonym from the DICOM PatientID.
    """
    mac = hmac.new(key, ("date:" + patient_pseudonym).encode(), hashlib.sha256).digest()
    return 1 + int.from_bytes(mac[:4], "big") % 365


def pseudonymise(event: ReportEvent, key: bytes | None) -> ReportEvent:
    """The event with its patient id replaced by the pseudonym (unchanged when ``key`` is None)."""
    if key is None or event.patient_id_is_pseudonym:
        return event
    psn = pseudonym(key, event.site, event.patient_id)
    return event.replace(patient_id=psn, patient_id_is_pseudonym=True)
