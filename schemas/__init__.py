"""Avro contracts of radstream's topics.

``schemas/<name>.avsc`` is the current version of each contract; every released
earlier version is kept as ``schemas/history/<name>.v<N>.avsc`` so readers can
resolve old bytes and a test can prove each change is backward compatible.
"""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMA_DIR / "history"

NAMES = (
    "report_finalized",
    "report_findings",
    "retrieval_requested",
    "retrieval_status",
    "received_instance",
    "dead_letter",
    "cohort_watch",
    "project_registration",
    "received_original",
    "quarantine_event",
    "audit_event",
    "dicom_expectation",
)
