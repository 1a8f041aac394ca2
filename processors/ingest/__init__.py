"""Pure parsers of RIS output into report events (HL7 v2 ORU^R01, FHIR R4 DiagnosticReport, JSONL/CSV).

No Kafka or ClickHouse here: bytes/text in, :class:`ReportEvent` (or :class:`ParseError`) out.
"""

from processors.ingest.model import RETRACTING, STATUSES, ParseError, ReportEvent

__all__ = ["RETRACTING", "STATUSES", "ParseError", "ReportEvent"]
