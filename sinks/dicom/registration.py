"""What makes a ``project_registration`` record one the registries apply: shared by the registries
(``sinks.dicom.projects.ProjectRegistry``) and the ClickHouse sink, so the warehouse's ``projects`` table
and its audit trail never show as registered what the DICOM side ignores. Light on purpose (no pydicom):
the sink imports it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sinks.dicom.paths import is_project_id


def registration_problem(rec: Mapping[str, Any]) -> str | None:
    """Why every registry ignores this (decoded) registration record, or None when they apply it."""
    pid = str(rec.get("project_id") or "")
    if not is_project_id(pid):
        return f"invalid project id {pid[:80]!r}"
    if rec.get("identified") and not str(rec.get("irb_reference") or "").strip():
        return "identified without an IRB reference"
    return None
