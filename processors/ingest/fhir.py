"""FHIR R4 DiagnosticReport (single resource or Bundle) -> report events.

Validation uses fhir.resources' R4B models (fhir.resources 8 ships R5 at the top level and R4B as a
subpackage; R4B's DiagnosticReport, ServiceRequest, ImagingStudy, Patient, Encounter and Bundle are
structurally the R4 ones, so an R4 resource that validates here is a valid R4 resource for our
purposes). Mapping:

- status: partial/preliminary -> preliminary, final, amended/corrected -> corrected,
  appended -> addendum, cancelled, entered-in-error (retractions); ``registered`` (nothing available
  yet), and ``partial`` without text, are skipped with a note, as HL7's OBR-25 O/I/S are (a Bundle's
  other reports go on); ``unknown`` is refused (business rule);
- text (``_report_text``): every ``presentedForm`` with contentType text/plain, in order (base64
  ``data``, charset honoured; an appended or amended report's addendum is a further attachment), else
  every text/html one as text (line breaks at <br>, <p>, <li>, ...; struck-out <s>/<del>/<strike>
  dropped, and a resource whose struck-out element has no matching close tag refused: ``html_text``),
  else the ``result``
  Observations as ``<code>: <valueString>`` in order (plus ``conclusion`` when none of them holds
  it), else ``conclusion``, else
  the narrative ``text.div`` as text. ``conclusion`` is not added to a presentedForm (FHIR: the
  presentedForm is the entire report as issued). A report whose text is only in other forms
  (application/pdf, ...) is refused with that reason (not-supported);
- Bundles: ``batch`` entries are independent (a bad report is refused alone, the others go on);
  any other type is accepted whole or refused whole (``transaction``: all or nothing, FHIR);
- accession: an identifier typed ACSN (v2-0203) on the DiagnosticReport, on its ``basedOn``
  ServiceRequest, or on its ImagingStudy (contained, or in the same Bundle);
- placer / filler order numbers: an identifier typed PLAC / FILL (v2-0203) on the DiagnosticReport,
  else on its ``basedOn`` ServiceRequest (where orders carry them);
- Study Instance UID: the ImagingStudy identifier with system ``urn:dicom:uid``; modality from it;
- patient: the subject Patient's MR identifier (else its logical id); encounter class -> patient
  class (IMP/AMB/EMER ...), encounter identifier -> visit number;
- version: ``issued`` (else ``meta.lastUpdated``) in microseconds.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

from processors.ingest.model import (
    RETRACTING,
    NoReport,
    ParseError,
    ReportEvent,
    derive_version,
    map_status,
    now_utc,
    parse_time,
)
from processors.ingest.records import Rejected

MAX_RESOURCE_BYTES = 8 * 1024 * 1024
# statuses of a report with nothing to store yet (HL7's OBR-25 O/I/S): skipped with a note, not refused
NOT_YET = frozenset({"registered", "partial"})
ENCOUNTER_CLASS = {"IMP": "inpatient", "ACUTE": "inpatient", "NONAC": "inpatient", "AMB": "outpatient",
                   "EMER": "emergency", "OBSENC": "observation", "PRENC": "preadmit", "HH": "home_health",
                   "SS": "short_stay", "VR": "virtual", "FLD": "field"}


def _validate(obj: dict[str, Any]) -> None:
    """Validate against the R4B models (raises ParseError with the first problems)."""
    from pydantic import ValidationError

    rtype = obj.get("resourceType")
    try:
        if rtype == "Bundle":
            from fhir.resources.R4B.bundle import Bundle

            Bundle.model_validate(obj)
        elif rtype == "DiagnosticReport":
            from fhir.resources.R4B.diagnosticreport import DiagnosticReport

            DiagnosticReport.model_validate(obj)
        else:
            raise ParseError(f"expected a DiagnosticReport or a Bundle, got resourceType {rtype!r}",
                             code="not-supported")
    except ParseError:
        raise
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{loc}: {err.get('msg', '')}" if loc else str(err.get("msg", "")))
        more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        raise ParseError(f"invalid FHIR {rtype}: " + "; ".join(problems) + more, code="structure") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # odd shapes that trip the models
        raise ParseError(f"invalid FHIR {rtype}: {type(exc).__name__}: {exc}", code="structure") from None


def load_json(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_RESOURCE_BYTES:
        raise ParseError(f"resource of {len(raw)} bytes exceeds the limit of {MAX_RESOURCE_BYTES} bytes",
                         code="too-costly")
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        msg = f"body is not UTF-8 JSON: {exc.reason} at byte {exc.start}"
        raise ParseError(msg, code="structure") from None
    except ValueError as exc:
        raise ParseError(f"body is not JSON: {exc}", code="structure") from None
    if not isinstance(obj, dict):
        raise ParseError("a FHIR resource must be a JSON object", code="structure")
    return obj


class NoReportYet(NoReport):
    """A DiagnosticReport with nothing to store yet (``registered``, or ``partial`` without text):
    skipped with a note, like HL7's OBR-25 O/I/S, never refused (a Bundle's other reports go on)."""


class _Index:
    """Resources reachable by reference: the Bundle's entries (fullUrl and Type/id) and contained ones."""

    def __init__(self, resources: Iterable[tuple[str | None, dict[str, Any]]]) -> None:
        self.by_ref: dict[str, dict[str, Any]] = {}
        for full_url, res in resources:
            rid, rtype = res.get("id"), res.get("resourceType")
            if full_url:
                self.by_ref[full_url] = res
            if rid and rtype:
                self.by_ref.setdefault(f"{rtype}/{rid}", res)

    def resolve(self, ref: Any, container: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(ref, dict):
            return None
        target = ref.get("reference")
        if not isinstance(target, str) or not target:
            return None
        if target.startswith("#"):
            for res in container.get("contained") or []:
                if isinstance(res, dict) and res.get("id") == target[1:]:
                    return res
            return None
        if target in self.by_ref:
            return self.by_ref[target]
        parts = target.rstrip("/").split("/")
        if len(parts) >= 2:  # absolute URL of a Type/id
            return self.by_ref.get("/".join(parts[-2:]))
        return None


def _typed_identifier(res: dict[str, Any] | None, code: str) -> str:
    for ident in (res or {}).get("identifier") or []:
        for coding in (ident.get("type") or {}).get("coding") or []:
            if str(coding.get("code", "")).upper() == code and ident.get("value"):
                return str(ident["value"])
    return ""


def _study_uid(study: dict[str, Any] | None) -> str:
    for ident in (study or {}).get("identifier") or []:
        if ident.get("system") == "urn:dicom:uid" and ident.get("value"):
            return str(ident["value"]).removeprefix("urn:oid:")
    return ""


def _modality(study: dict[str, Any] | None) -> str:
    for coding in (study or {}).get("modality") or []:
        if coding.get("code"):
            return str(coding["code"]).upper()
    for series in (study or {}).get("series") or []:
        code = (series.get("modality") or {}).get("code")
        if code:
            return str(code).upper()
    return ""


BLOCK_TAGS = frozenset({"br", "p", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5",
                        "h6", "pre", "blockquote", "hr", "section", "article", "header", "footer", "dl", "dt",
                        "dd"})
HIDDEN_TAGS = frozenset({"script", "style", "head", "title"})
# struck-out text (track changes, a corrected word): not part of the report as it reads now
DELETED_TAGS = frozenset({"del", "s", "strike"})
# elements that enclose a struck-out span (not the void <br>, <hr>)
CONTAINER_TAGS = (BLOCK_TAGS - {"br", "hr"}) | {"td", "th"}


class _Text(HTMLParser):
    """HTML -> plain text: whitespace in the source is one space (as a browser shows it) except in
    <pre>; block elements (<p>, <div>, <li>, <tr>, headings) and <br> make line breaks; table cells are
    separated by a space; script/style and struck-out text (<del>, <s>, <strike>) are dropped;
    ``<sup>`` is written ``^`` + its text (``10<sup>9</sup>`` -> ``10^9``, not the number 109);
    ``<sub>`` and ``<ins>`` are inline, as a browser shows them (``SpO<sub>2</sub>`` -> ``SpO2``,
    ``hemor<ins>r</ins>hage`` -> ``hemorrhage``); ``<ol>`` items are numbered (``1. ``), so "see 2."
    still resolves.

    A struck-out span that its own close tag does not end (the end of its block, a close tag of another
    struck-out element, or the end of the text comes first) is recorded in ``unclosed``: where the author
    meant the strike-out to end cannot be told, and both guesses change the report (dropping to the end
    of the block lost "0.05 noted." of ``p<s>0.05 noted.</p>``; keeping it would keep struck-out words
    such as "no"). :func:`html_text` refuses such text; the span still ends with its block here, so the
    rest of the text is never hidden."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.hidden_at = ("", (0, 0))  # the outermost open <script>/<style>/...: tag, (line, column)
        self.pre = 0
        self.lists: list[int | None] = []  # per open list: the last <ol> item number, None for <ul>
        self.depth = 0  # open block elements (a struck-out span ends with the block it opened in)
        # per open <del>/<s>/<strike>: its tag, the block depth it opened at, and where (line, column)
        self.deleted: list[tuple[str, int, tuple[int, int]]] = []
        self.unclosed: list[str] = []  # struck-out spans not ended by their own close tag: "<s> at 1:20"
        self.head = False  # a <head> is open (HTML lets its close tag out: <body> or content ends it)

    def handle_data(self, data: str) -> None:
        if self.hidden or self.deleted:
            return
        data = data.replace("\x00", "")
        if self.pre:  # a plain-text report wrapped in <pre>: its line breaks are the report's
            self.parts.append(data.replace("\r\n", "\n").replace("\r", "\n"))
        else:
            self.parts.append(re.sub(r"\s+", " ", data))  # \s includes the no-break space of &nbsp;

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if self.head and self.hidden == 1 and (tag == "body" or tag in BLOCK_TAGS or tag in CONTAINER_TAGS):
            self.head, self.hidden = False, 0  # </head> left out, as HTML allows
        if tag in CONTAINER_TAGS:
            self.depth += 1
        if tag in DELETED_TAGS:
            self.deleted.append((tag, self.depth, self.getpos()))
        elif tag in HIDDEN_TAGS:
            if not self.hidden:
                self.hidden_at = (tag, self.getpos())
            self.hidden += 1
            self.head = self.head or tag == "head"
        elif self.hidden or self.deleted:
            return
        elif tag == "sup":
            self.parts.append("^")
        elif tag in BLOCK_TAGS:
            self.pre += tag == "pre"
            self.parts.append("\n")
            if tag == "ol":
                start = dict(attrs).get("start") or ""
                self.lists.append(int(start) - 1 if start.strip().lstrip("-").isdigit() else 0)
            elif tag == "ul":
                self.lists.append(None)
            elif tag == "li" and self.lists and self.lists[-1] is not None:
                number = self.lists[-1] + 1
                self.lists[-1] = number
                self.parts.append(f"{number}. ")

    def handle_endtag(self, tag: str) -> None:
        if tag in CONTAINER_TAGS:
            self.depth = max(0, self.depth - 1)
            # an unclosed <s>/<del> (a stray tag, "p<s>0.05" written raw) ends with its block: it hid
            # the whole rest of the report
            while self.deleted and self.deleted[-1][1] > self.depth:
                self._unclosed()
        if tag in DELETED_TAGS:
            if any(t == tag for t, _, _ in self.deleted):
                while self.deleted[-1][0] != tag:  # <s>..<del>..</s>: the <del> was never closed
                    self._unclosed()
                self.deleted.pop()
            # else a stray close tag: it hides nothing
        elif tag in HIDDEN_TAGS:
            if tag == "head" and not self.head:
                return  # its <head> was ended by <body> already
            self.hidden = max(0, self.hidden - 1)
            self.head = self.head and tag != "head"
        elif self.hidden or self.deleted:
            return
        elif tag in BLOCK_TAGS:
            self.pre = max(0, self.pre - (tag == "pre"))
            self.parts.append("\n")
            if tag in ("ol", "ul") and self.lists:
                self.lists.pop()
        elif tag in ("td", "th"):
            self.parts.append(" ")


    def _unclosed(self) -> None:
        tag, _, (line, col) = self.deleted.pop()
        self.unclosed.append(f"struck-out <{tag}> at line {line}, column {col + 1}")

    def close(self) -> None:
        super().close()
        while self.deleted:
            self._unclosed()
        if self.hidden:  # an unclosed <style>/<script>/<title>/<head> hid everything after it
            tag, (line, col) = self.hidden_at
            self.unclosed.append(f"hidden <{tag}> at line {line}, column {col + 1}")


def html_text(html: str) -> str:
    """Visible text of an HTML fragment, one line per block or <br> (empty lines dropped).

    Raises ParseError (``value``) when a struck-out element is not ended by its own close tag (see
    :class:`_Text`), or a <script>/<style>/<title>/<head> is never closed (it hid the rest of the text):
    the resource is refused with that reason (dead letter), never read with text lost or with struck-out
    words kept."""
    p = _Text()
    p.feed(html)
    p.close()
    if p.unclosed:
        raise ParseError(f"HTML text: {', '.join(p.unclosed[:3])} has no matching close tag (a struck-out"
                         " one: within its block), so what it hides cannot be told; the text is not read",
                         code="value")
    text = "".join(p.parts)
    lines = [" ".join(ln.split()) for ln in text.split("\n")]
    return "\n".join(ln for ln in lines if ln)


def _charset(ctype: str) -> str:
    for param in ctype.split(";")[1:]:
        key, _, val = param.strip().partition("=")
        if key.strip() == "charset" and val:
            return val.strip().strip('"')
    return "utf-8"


def _attachment_text(att: dict[str, Any], ctype: str) -> str:
    charset = _charset(ctype)
    kind = ctype.split(";")[0].strip()
    try:
        data = base64.b64decode(att["data"], validate=True)
        text = data.decode(charset)
    except (binascii.Error, ValueError, LookupError) as exc:
        raise ParseError(f"presentedForm {kind} is not decodable ({charset}): {exc}", code="value") from None
    if kind == "text/html":
        try:
            return html_text(text)
        except ParseError as exc:
            raise ParseError(f"presentedForm {kind}: {exc.reason}", code=exc.code,
                             field="presentedForm") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _form_texts(dr: dict[str, Any], kind: str) -> list[str]:
    # every presentedForm of this kind in order: an appended (or amended) report adds its addendum as a
    # further attachment, and the report a radiologist reads is all of them
    parts: list[str] = []
    for att in dr.get("presentedForm") or []:
        ctype = str(att.get("contentType", "")).lower()
        if ctype.split(";")[0].strip() != kind or not att.get("data"):
            continue
        part = _attachment_text(att, ctype)
        if part and part not in parts:
            parts.append(part)
    return parts


def _code_label(obs: dict[str, Any]) -> str:
    """What an Observation is about: ``code.text``, else the first coding's display."""
    code = obs.get("code") or {}
    label = code.get("text") if isinstance(code, dict) else None
    if not (isinstance(label, str) and label.strip()) and isinstance(code, dict):
        codings = code.get("coding") or []
        label = codings[0].get("display") if codings and isinstance(codings[0], dict) else None
    return " ".join(label.split()) if isinstance(label, str) else ""


def _obs_value(obs: dict[str, Any]) -> str | None:
    """An Observation's value as text: ``valueString``; ``valueQuantity`` as "<comparator><value> <unit>"
    ("8 mm"); ``valueCodeableConcept`` as its text, else its first coding's display ("4B"). Other
    value types give None (they were dropped silently, and a nodule size is part of the report)."""
    if isinstance(obs.get("valueString"), str):
        return str(obs["valueString"])
    qty = obs.get("valueQuantity")
    if isinstance(qty, dict) and isinstance(qty.get("value"), int | float) and not isinstance(
            qty.get("value"), bool):
        unit = qty.get("unit") or qty.get("code") or ""
        comparator = qty.get("comparator") or ""
        return f"{comparator}{qty['value']} {unit}".strip() if isinstance(unit, str) else None
    concept = obs.get("valueCodeableConcept")
    if isinstance(concept, dict):
        text = concept.get("text")
        if isinstance(text, str) and text.strip():
            return text
        for coding in concept.get("coding") or []:
            display = coding.get("display") if isinstance(coding, dict) else None
            if isinstance(display, str) and display.strip():
                return display
    return None


def _result_texts(dr: dict[str, Any], index: _Index) -> list[str]:
    """One part per ``result`` Observation (contained or in the Bundle), in ``result`` order, written
    ``<code>: <value>`` (:func:`_obs_value`): the value alone ("Normal.") does not say which organ it is
    about. A part is dropped only when the same (code, value) came before (a repeated reference), never
    for an equal value of another code (right and left kidney both "Normal.")."""
    parts: list[str] = []
    seen: set[tuple[str, str]] = set()
    for ref in dr.get("result") or []:
        obs = index.resolve(ref, dr) or {}
        value = _obs_value(obs) if obs.get("resourceType") == "Observation" else None
        if not (isinstance(value, str) and value.strip()):
            continue
        value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
        label = _code_label(obs)
        if (label.casefold(), value) in seen:
            continue
        seen.add((label.casefold(), value))
        # a value that already starts with its label ("Impression: ...") is not labelled twice
        labelled = bool(label) and not value.casefold().startswith(label.casefold())
        parts.append(f"{label}: {value}" if labelled else value)
    return parts


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def _report_text(dr: dict[str, Any], index: _Index | None = None) -> str:
    """The report text, from the first source that has some:

    1. every text/plain presentedForm (in order);
    2. else every text/html presentedForm, as text;
    3. else the ``result`` Observations as ``<code>: <valueString>`` (in order), then ``conclusion``
       unless one of them already holds it;
    4. else ``conclusion``;
    5. else the narrative ``text.div``.

    ``conclusion`` is not added to a presentedForm: FHIR defines presentedForm as the entire report as
    issued, and the conclusion as a summary of it (usually the impression in other words), so adding it
    would double the impression for most senders.
    """
    for kind in ("text/plain", "text/html"):
        parts = _form_texts(dr, kind)
        if parts:
            return "\n\n".join(parts)
    conclusion = str(dr.get("conclusion") or "").strip()
    parts = _result_texts(dr, index or _Index([]))
    if parts:
        if conclusion and not any(_squash(conclusion) in _squash(p) for p in parts):
            parts.append(conclusion)
        return "\n\n".join(parts)
    if conclusion:
        return conclusion
    div = (dr.get("text") or {}).get("div")
    if div:
        try:
            return html_text(str(div))
        except ParseError as exc:
            raise ParseError(f"text.div: {exc.reason}", code=exc.code, field="text.div") from None
    return ""


def _no_text_reason(dr: dict[str, Any]) -> str | None:
    """Why a report without text has none, when it carries its text only in a form we do not read."""
    labels: list[str] = []
    for att in dr.get("presentedForm") or []:
        kind = str(att.get("contentType", "")).lower().split(";")[0].strip() or "an attachment"
        label = kind if att.get("data") else f"{kind} by url" if att.get("url") else ""
        if label and label not in labels:
            labels.append(label)
    if labels:
        return f"report text only as {', '.join(labels)}: not supported (send text/plain or text/html data)"
    return None


def _display(ref: Any, index: _Index, container: dict[str, Any]) -> str:
    if not isinstance(ref, dict):
        return ""
    if ref.get("display"):
        return str(ref["display"])
    res = index.resolve(ref, container)
    for name in (res or {}).get("name") or []:
        if name.get("text"):
            return str(name["text"])
        given = " ".join(name.get("given") or [])
        return f"{given} {name.get('family', '')}".strip()
    return ""


def report_event(dr: dict[str, Any], index: _Index, *, site: str, received_time: datetime | None = None,
                 message_id: str | None = None) -> ReportEvent:
    """One (validated) DiagnosticReport dict -> ReportEvent (raises ParseError; NoReportYet for a report
    that has nothing to store yet: ``registered``, or ``partial`` without text)."""
    try:
        status = map_status("fhir", dr.get("status"))
    except NoReport as exc:
        if str(dr.get("status") or "").strip().lower() in NOT_YET:
            raise NoReportYet(exc.reason, field="status") from None
        raise
    text = _report_text(dr, index)
    if not text.strip() and status not in RETRACTING:
        if str(dr.get("status") or "").strip().lower() == "partial":
            raise NoReportYet("status 'partial' without report text: nothing to store yet", field="status")
        why = _no_text_reason(dr)
        if why:
            raise ParseError(why, code="not-supported", field="presentedForm")
    requests = [index.resolve(r, dr) for r in dr.get("basedOn") or []]
    studies = [index.resolve(r, dr) for r in dr.get("imagingStudy") or []]
    accession = _typed_identifier(dr, "ACSN")
    for res in [*requests, *studies]:
        accession = accession or _typed_identifier(res, "ACSN")
    if not accession:
        raise ParseError("no accession: no identifier of type ACSN on the DiagnosticReport, its basedOn "
                         "ServiceRequest or its ImagingStudy", code="required")
    placer, filler = _typed_identifier(dr, "PLAC"), _typed_identifier(dr, "FILL")
    for res in requests:
        placer = placer or _typed_identifier(res, "PLAC")
        filler = filler or _typed_identifier(res, "FILL")
    study = next((s for s in studies if s), None)
    patient = index.resolve(dr.get("subject"), dr)
    patient_id = _typed_identifier(patient, "MR") or str((patient or {}).get("id") or "")
    if not patient_id:
        ref = (dr.get("subject") or {}).get("reference") or ""
        patient_id = ref.rsplit("/", 1)[-1] if "/" in ref else ""
    if not patient_id:
        for ident in (patient or {}).get("identifier") or []:
            patient_id = patient_id or str(ident.get("value") or "")
    if not patient_id:
        raise ParseError("no patient: DiagnosticReport.subject does not identify a Patient", code="required")
    encounter = index.resolve(dr.get("encounter"), dr)
    enc_class = str(((encounter or {}).get("class") or {}).get("code") or "").upper()
    visit = next((str(i["value"]) for i in (encounter or {}).get("identifier") or [] if i.get("value")), None)
    code = dr.get("code") or {}
    coding: dict[str, Any] = next(iter(code.get("coding") or []), {})
    obs = parse_time(dr.get("effectiveDateTime") or (dr.get("effectivePeriod") or {}).get("start"))
    issued = parse_time(dr.get("issued"))
    updated = parse_time((dr.get("meta") or {}).get("lastUpdated"))
    author = ""
    for ref in [*(dr.get("resultsInterpreter") or []), *(dr.get("performer") or [])]:
        author = author or _display(ref, index, dr)
    return ReportEvent(
        site=site,
        accession=accession,
        report_id=str(dr.get("id") or next((i.get("value") for i in dr.get("identifier") or []
                                             if i.get("value")), "") or accession),
        version=derive_version(status, issued, updated, obs),
        status=status,
        patient_id=patient_id,
        text=text,
        source_format="fhir",
        received_time=received_time or now_utc(),
        visit_number=visit,
        patient_class=ENCOUNTER_CLASS.get(enc_class, enc_class.lower() or None),
        modality=_modality(study) or None,
        procedure_code=str(coding.get("code") or "") or None,
        procedure_description=str(code.get("text") or coding.get("display") or "") or None,
        study_instance_uid=_study_uid(study) or None,
        observation_time=obs,
        status_time=issued or updated,
        author=author or None,
        source_message_id=message_id or (str(dr["id"]) if dr.get("id") else None),
        placer_order_number=placer or None,
        filler_order_number=filler or None,
    )


@dataclass
class Refused:
    """A DiagnosticReport of a batch Bundle that was refused (the batch's other entries go on)."""

    where: str  # "Bundle.entry[3]"
    error: ParseError


@dataclass
class FhirResult:
    """What one body gave: events, reports skipped with a note (nothing to store yet) and, for a batch
    Bundle only, entries refused on their own."""

    events: list[ReportEvent] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def parse_fhir_result(raw: bytes | dict[str, Any], *, site: str, received_time: datetime | None = None,
                      validate: bool = True) -> FhirResult:
    """A DiagnosticReport or a Bundle (JSON bytes or dict) -> events, one per DiagnosticReport that has a
    report; a ``registered`` report (or ``partial`` without text) is skipped with a note.

    Raises ParseError (``code`` is the OperationOutcome issue type) for a bad body or a bad report.
    A ``batch`` Bundle's entries are independent requests (FHIR): a bad report is refused on its own
    (``refused``) and the others go on. Any other Bundle (``transaction``: all or nothing by FHIR's
    definition; ``collection``, ``message``, ...: one submission) is refused whole for one bad report.
    """
    obj = load_json(raw) if isinstance(raw, bytes) else raw
    if validate:
        _validate(obj)
    try:
        return _map(obj, site, received_time or now_utc())
    except ParseError:
        raise
    except (TypeError, AttributeError, ValueError, KeyError) as exc:  # unvalidated input of odd shape
        raise ParseError(f"malformed FHIR resource: {type(exc).__name__}: {exc}", code="structure") from None


def parse_fhir(raw: bytes | dict[str, Any], *, site: str, received_time: datetime | None = None,
               validate: bool = True) -> list[ReportEvent]:
    """The events of :func:`parse_fhir_result`; a refused entry of a batch Bundle refuses the body here
    (callers that keep per-entry rejects use :func:`parse_fhir_result`)."""
    result = parse_fhir_result(raw, site=site, received_time=received_time, validate=validate)
    if result.refused:
        first = result.refused[0].error
        raise ParseError("; ".join(r.error.reason for r in result.refused), code=first.code,
                         field=first.field)
    return result.events


def _map(obj: dict[str, Any], site: str, received: datetime) -> FhirResult:
    out = FhirResult()
    if obj.get("resourceType") == "DiagnosticReport":
        try:
            out.events.append(_event(obj, _Index([]), site, received, None))
        except NoReportYet as exc:
            out.skipped.append(_label(obj, None) + exc.reason)
        return out
    entries = [(k, e) for k, e in enumerate(obj.get("entry") or [])
               if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    index = _Index((e.get("fullUrl"), e["resource"]) for _, e in entries)
    reports = [(k, e["resource"]) for k, e in entries
               if e["resource"].get("resourceType") == "DiagnosticReport"]
    if not reports:
        raise ParseError("the Bundle contains no DiagnosticReport", code="required")
    batch = obj.get("type") == "batch"
    bundle_id = obj.get("id")
    for i, (k, dr) in enumerate(reports, 1):
        msg_id = f"{bundle_id}#{i}" if bundle_id and len(reports) > 1 else (dr.get("id") or bundle_id)
        try:
            out.events.append(_event(dr, index, site, received, msg_id))
        except NoReportYet as exc:
            out.skipped.append(_label(dr, i) + exc.reason)
        except ParseError as exc:
            where = f"DiagnosticReport {dr.get('id') or '#' + str(i)}: " if len(reports) > 1 else ""
            err = ParseError(where + exc.reason, code=exc.code, field=exc.field)
            if not batch:
                raise err from None
            out.refused.append(Refused(f"Bundle.entry[{k}]", err))
    return out


def _label(dr: dict[str, Any], i: int | None) -> str:
    """"DiagnosticReport <id> (<accession>): " for the note of a skipped report."""
    words = ["DiagnosticReport"]
    if dr.get("id") or i:
        words.append(str(dr.get("id") or f"#{i}"))
    accession = _typed_identifier(dr, "ACSN")
    if accession:
        words.append(f"({accession})")
    return " ".join(words) + ": "


def _event(dr: dict[str, Any], index: _Index, site: str, received: datetime,
           msg_id: str | None) -> ReportEvent:
    try:
        return report_event(dr, index, site=site, received_time=received, message_id=msg_id)
    except NoReportYet:
        raise
    except NoReport as exc:
        raise ParseError(exc.reason, code="business-rule", field="status") from None
    except ParseError as exc:
        if exc.field == "status":
            raise ParseError(exc.reason, code="code-invalid", field="status") from None
        if exc.field in ("text", "accession"):
            raise ParseError(exc.reason, code="required", field=exc.field) from None
        if exc.field == "time":
            raise ParseError(exc.reason, code="value", field=exc.field) from None
        raise


def operation_outcome(severity: str, code: str, diagnostics: str, expression: str | None = None
                      ) -> dict[str, Any]:
    """A minimal FHIR OperationOutcome resource (dict)."""
    return outcome_of([issue(severity, code, diagnostics, expression)])


def issue(severity: str, code: str, diagnostics: str, expression: str | None = None) -> dict[str, Any]:
    """One OperationOutcome issue (dict)."""
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        out["expression"] = [expression]
    return out


def outcome_of(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": issues}


def iter_fhir_ndjson(lines: Iterable[bytes], *, site: str, name: str = "<ndjson>",
                     received_time: datetime | None = None) -> Iterator[tuple[int, ReportEvent | Rejected]]:
    """(line number, event or reject) per line of a FHIR NDJSON export (DiagnosticReports or Bundles).

    A report with nothing to store yet (``registered``) gives nothing; a refused entry of a batch Bundle
    is a reject of its own (the line's other reports still give their events)."""
    for no, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            result = parse_fhir_result(bytes(raw), site=site, received_time=received_time)
        except ParseError as exc:
            yield no, Rejected(f"{name}:{no}", exc.reason, bytes(raw))
            continue
        for ev in result.events:
            yield no, ev
        for ref in result.refused:
            yield no, Rejected(f"{name}:{no}", f"{ref.where}: {ref.error.reason}", bytes(raw))
