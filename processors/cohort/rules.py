"""Cohort rules (data) and their evaluation against a ReportFindings record (a dict)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

_KEYS = {"name", "modality", "body_region", "status", "finding", "assessment", "after", "before"}
_FINDING_KEYS = {"concept", "min_size_mm", "sections", "allow_uncertain"}
_ASSESSMENT_KEYS = {"system", "categories"}
DEFAULT_STATUS = ("final", "corrected", "addendum")


class RuleError(ValueError):
    """A rule file that is not a valid cohort rule."""


@dataclass(frozen=True)
class FindingCriterion:
    concepts: frozenset[str]
    min_size_mm: float | None = None
    sections: frozenset[str] = frozenset()
    allow_uncertain: bool = False


@dataclass(frozen=True)
class AssessmentCriterion:
    system: str
    categories: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CohortRule:
    name: str
    modality: frozenset[str] = frozenset()
    body_region: frozenset[str] = frozenset()
    status: frozenset[str] = frozenset(DEFAULT_STATUS)
    finding: FindingCriterion | None = None
    assessment: AssessmentCriterion | None = None
    after: date | None = None
    before: date | None = None


def _set(value: Any, key: str, upper: bool = False) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(i, str) for i in items):
        raise RuleError(f"{key!r} must be a string or a list of strings")
    return frozenset(i.upper() if upper else i.lower() for i in items)


def _date(value: Any, key: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise RuleError(f"{key!r} must be an ISO date (YYYY-MM-DD), got {value!r}") from exc


def _check_keys(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise RuleError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")


def parse_rule(obj: Mapping[str, Any]) -> CohortRule:
    if not isinstance(obj, Mapping):
        raise RuleError("a rule is a JSON object")
    _check_keys(obj, _KEYS, "rule")
    finding = None
    if "finding" in obj:
        f = obj["finding"]
        if not isinstance(f, Mapping) or "concept" not in f:
            raise RuleError("'finding' needs at least a 'concept'")
        _check_keys(f, _FINDING_KEYS, "finding")
        size = f.get("min_size_mm")
        if size is not None and not isinstance(size, int | float):
            raise RuleError("'min_size_mm' must be a number")
        finding = FindingCriterion(
            concepts=_set(f["concept"], "concept"),
            min_size_mm=None if size is None else float(size),
            sections=_set(f.get("sections", []), "sections"),
            allow_uncertain=bool(f.get("allow_uncertain", False)),
        )
    assessment = None
    if "assessment" in obj:
        a = obj["assessment"]
        if not isinstance(a, Mapping) or "system" not in a:
            raise RuleError("'assessment' needs a 'system'")
        _check_keys(a, _ASSESSMENT_KEYS, "assessment")
        assessment = AssessmentCriterion(str(a["system"]).lower(),
                                         _set(a.get("categories", []), "categories", upper=True))
    rule = CohortRule(
        name=str(obj.get("name", "rule")),
        modality=_set(obj.get("modality", []), "modality", upper=True),
        body_region=_set(obj.get("body_region", []), "body_region"),
        status=_set(obj.get("status", list(DEFAULT_STATUS)), "status"),
        finding=finding,
        assessment=assessment,
        after=_date(obj.get("after"), "after"),
        before=_date(obj.get("before"), "before"),
    )
    if not (rule.modality or rule.body_region or rule.finding or rule.assessment):
        raise RuleError("a rule needs at least one of modality, body_region, finding, assessment")
    return rule


def load_rule(path: str | Path) -> CohortRule:
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RuleError(f"cannot read rule file {path}: {exc}") from exc
    return parse_rule(obj)


def _present(f: Mapping[str, Any], allow_uncertain: bool) -> bool:
    return not (f.get("negated") or f.get("hypothetical") or f.get("historical")
                or f.get("experiencer", "patient") != "patient"
                or (f.get("uncertain") and not allow_uncertain))


def _finding_matches(c: FindingCriterion, f: Mapping[str, Any]) -> bool:
    if str(f.get("concept", "")).lower() not in c.concepts or not _present(f, c.allow_uncertain):
        return False
    if c.sections and str(f.get("section", "")).lower() not in c.sections:
        return False
    if c.min_size_mm is not None:
        size = f.get("size_mm")
        return size is not None and float(size) >= c.min_size_mm
    return True


def _when(record: Mapping[str, Any]) -> date | None:
    t = record.get("observation_time") or record.get("processed_time")
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).date()
    return None


def matches(rule: CohortRule, record: Mapping[str, Any]) -> bool:
    """True when the ReportFindings ``record`` (one report version) meets every criterion of ``rule``."""
    if str(record.get("status", "")).lower() not in rule.status:
        return False
    if rule.modality and str(record.get("modality") or "").upper() not in rule.modality:
        return False
    if rule.body_region and str(record.get("body_region") or "").lower() not in rule.body_region:
        return False
    when = _when(record)
    if rule.after and (when is None or when < rule.after):
        return False
    if rule.before and (when is None or when > rule.before):
        return False
    if rule.finding and not any(_finding_matches(rule.finding, f) for f in record.get("findings", [])):
        return False
    if rule.assessment:
        a = rule.assessment
        return any(str(x.get("system", "")).lower() == a.system
                   and (not a.categories or str(x.get("category", "")).upper() in a.categories)
                   for x in record.get("assessments", []))
    return True
