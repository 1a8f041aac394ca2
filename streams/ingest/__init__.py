"""Ingest front doors: MLLP listener, FHIR HTTP endpoint and file loader, producing report events."""
