"""HL7 v2 ORU^R01 (radiology results) -> report events, and the ACK for the sender.

Parsing is done by python-hl7 (``hl7.parse``, ``Message.unescape``); this module adds the
radiology meaning:

- MSH: separators, control id (MSH-10), message time (MSH-7), version (MSH-12) and the
  character set (MSH-18), which decides how the bytes are decoded (a message whose bytes do not
  decode in its declared charset is rejected with AR, never guessed).
- PID-3 patient id (the MR identifier when several are sent), PV1-2 patient class, PV1-19 visit.
- Each ORC/OBR group is one report: placer order number from OBR-2 (else ORC-2), filler order
  number from OBR-3 (else ORC-3; also the ``report_id``), accession from OBR-3 or OBR-18
  (``accession_field``), OBR-4 procedure, OBR-7 exam time, OBR-22 status-change time (the
  version), OBR-24 modality, OBR-25 result status (table 0123), OBR-32 interpreter, ZDS-1 / an
  OBX "113014" for the Study UID.
- OBX TX/FT/ST lines and NTE comments, in order, joined with line breaks; escapes (\\.br\\, \\F\\,
  \\S\\, \\T\\, \\R\\, \\E\\, \\Xhh\\) resolved. An OBX-11 ``B`` line makes the version an addendum, and
  so does a correction (OBR-25 ``C``) whose full text has an ``ADDENDUM`` line (``addendum_markers``).
- A group whose status carries no report (scheduled, in progress) is skipped, not an error.

Everything a sender can get wrong that is known here raises :class:`ParseError` (``code`` AR or AE).
Anything else that escapes :func:`parse_oru` is a bug (an ``OverflowError`` of a time at the edge of the
calendar was one): the MLLP listener answers it AE and dead-letters the message with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cache
from importlib import resources
from typing import Any

import hl7
import hl7.util

from processors.ingest.model import (
    NoReport,
    ParseError,
    ReportEvent,
    derive_version,
    map_status,
    now_utc,
    parse_time,
    status_rank,
)
from processors.ingest.records import Rejected

# python-hl7 logs the content of fields it cannot unescape: that would put report text (PHI) in logs.
hl7.util.logger.disabled = True

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
UNESCAPE_MAP = {".br": "\n", ".sp": "\n", ".ce": "\n", ".in": "", ".ti": "", ".fi": "", ".nf": "",
                "H": "", "N": ""}


@cache
def tables() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("processors.ingest").joinpath("hl7_tables.json").read_text("utf-8"))
    return data


@dataclass(frozen=True)
class MessageHeader:
    """What the ACK needs from MSH (read from the raw bytes, so even a rejected message gets one)."""

    field_sep: str = "|"
    encoding_chars: str = "^~\\&"
    sending_app: str = ""
    sending_facility: str = ""
    receiving_app: str = ""
    receiving_facility: str = ""
    message_time: str = ""
    message_type: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5"
    charset: str = ""


@dataclass(frozen=True)
class HL7Result:
    header: MessageHeader
    events: list[ReportEvent]
    skipped: list[str] = field(default_factory=list)  # groups without a report, with the reason


def _strip_frame(raw: bytes) -> bytes:
    return raw.strip(b"\x0b\x1c\r\n\t \x00")


def sniff_header(raw: bytes) -> MessageHeader:
    """MSH fields from the raw bytes (MSH is ASCII in every charset we accept). Raises ParseError AR."""
    data = _strip_frame(raw)
    if not data.startswith(b"MSH") or len(data) < 8:
        raise ParseError("not an HL7 v2 message: it does not start with an MSH segment",
                         code="AR", field="MSH")
    sep = chr(data[3])
    if sep.isalnum() or sep in "\r\n ":
        raise ParseError(f"invalid field separator {sep!r} in MSH-1", code="AR", field="MSH-1")
    end = min((i for i in (data.find(b"\r"), data.find(b"\n")) if i >= 0), default=len(data))
    parts = data[:end].decode("latin-1").split(sep)
    enc = parts[1] if len(parts) > 1 else ""
    if len(enc) < 4 or len(set(enc[:4])) < 4 or sep in enc or any(c.isalnum() for c in enc):
        raise ParseError(f"invalid encoding characters {enc!r} in MSH-2", code="AR", field="MSH-2")

    def f(n: int) -> str:  # MSH-n
        return parts[n - 1] if len(parts) >= n else ""

    return MessageHeader(
        field_sep=sep, encoding_chars=enc[:4], sending_app=f(3), sending_facility=f(4),
        receiving_app=f(5), receiving_facility=f(6), message_time=f(7), message_type=f(9),
        control_id=f(10).split(enc[0])[0], processing_id=(f(11) or "P").split(enc[0])[0],
        version=(f(12) or "2.5").split(enc[0])[0], charset=f(18).split(enc[1])[0].strip(),
    )


def codec_of(header: MessageHeader, default_charset: str = "utf-8") -> str:
    if not header.charset:
        return default_charset
    codec = tables()["charsets"].get(header.charset.upper())
    if codec is None:
        raise ParseError(f"unsupported character set {header.charset!r} in MSH-18", code="AR", field="MSH-18")
    return str(codec)


def decode_message(raw: bytes, default_charset: str = "utf-8") -> tuple[MessageHeader, str]:
    """Header and text of one message; segments normalised to CR, continuation lines folded in."""
    header = sniff_header(raw)
    codec = codec_of(header, default_charset)
    data = _strip_frame(raw)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        declared = f"MSH-18 {header.charset!r}" if header.charset else "no MSH-18"
        raise ParseError(f"message bytes are not valid {codec} ({declared}): byte 0x{data[exc.start]:02X} "
                         f"at offset {exc.start}", code="AR", field="MSH-18") from None
    if "\x00" in text:
        raise ParseError("message contains NUL characters", code="AR")
    sep = header.field_sep
    segments: list[str] = []
    for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        sid = line[:3]
        if SEGMENT_ID.match(sid) and (len(line) == 3 or line[3] == sep):
            segments.append(line)
        elif segments and line.strip():
            # a line break inside a field (senders that put raw newlines into OBX-5/NTE-3)
            segments[-1] += "\n" + line
    return header, "\r".join(segments)


def _get(seg: Any, n: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """Value of SEG-n.rep.comp.sub as a string ("" when absent), never raising."""
    try:
        value: Any = seg(n)
        for idx in (rep, comp, sub):
            if isinstance(value, str):
                return value if idx == 1 else ""
            value = value(idx)
        return str(value).strip()
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        return ""


def _raw(seg: Any, n: int) -> str:
    try:
        return str(seg(n))
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        return ""


def _sid(seg: Any) -> str:
    try:
        return str(seg[0]).strip()
    except (IndexError, TypeError):
        return ""


def _unescape(msg: Any, text: str) -> str:
    if "\\" not in text and msg.esc not in text:
        return text
    try:
        return str(msg.unescape(text, UNESCAPE_MAP))
    except Exception:  # python-hl7 fails on malformed sequences such as \.spX\
        return text


def _lines(msg: Any, raw: str, rep_sep: str) -> list[str]:
    """Text lines of a TX/FT/ST field: repetitions are lines; escapes resolved."""
    out: list[str] = []
    for rep in raw.split(rep_sep):
        out.extend(_unescape(msg, rep).replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return [line.rstrip() for line in out]


@dataclass
class _Group:
    index: int
    obr: Any
    orc: Any
    pid: Any
    pv1: Any
    items: list[tuple[str, Any]] = field(default_factory=list)
    zds: Any = None


def _time(value: str, where: str, tz: tzinfo) -> datetime | None:
    try:
        return parse_time(value.split("^")[0], tz)
    except ParseError as exc:
        raise ParseError(f"{where}: {exc.reason}", field=where) from None


def parse_oru(raw: bytes, *, site: str, accession_field: str = "OBR-3", received_time: datetime | None = None,
              default_charset: str = "utf-8", default_tz: tzinfo = UTC,
              max_bytes: int = MAX_MESSAGE_BYTES) -> HL7Result:
    """One ORU^R01 message -> one event per OBR group that carries a report.

    Raises ParseError (``code`` AR: unusable message; AE: content not acceptable).
    """
    if len(raw) > max_bytes:
        raise ParseError(f"message of {len(raw)} bytes exceeds the limit of {max_bytes} bytes", code="AR")
    header, text = decode_message(raw, default_charset)
    mtype = "^".join(header.message_type.split(header.encoding_chars[0])[:2])
    if mtype not in tables()["message_types"]:
        raise ParseError(f"unsupported message type {mtype or '(empty)'!r} in MSH-9; expected ORU^R01",
                         code="AR", field="MSH-9")
    try:
        msg = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises assorted errors on malformed input
        raise ParseError(f"malformed HL7: {type(exc).__name__}: {exc}", code="AR") from None
    received = received_time or now_utc()
    msg_time = _time(header.message_time, "MSH-7", default_tz)
    rep_sep = header.encoding_chars[1]

    groups: list[_Group] = []
    pid = pv1 = orc = None
    for seg in msg:
        sid = _sid(seg)
        if sid == "PID":
            pid, pv1 = seg, None
        elif sid == "PV1":
            pv1 = seg
        elif sid == "ORC":
            orc = seg
        elif sid == "OBR":
            groups.append(_Group(len(groups) + 1, seg, orc, pid, pv1))
            orc = None
        elif sid in ("OBX", "NTE"):
            if groups:
                groups[-1].items.append((sid, seg))
            elif sid == "OBX":
                raise ParseError("OBX segment before any OBR", field="OBX")
        elif sid == "ZDS" and groups:
            groups[-1].zds = seg
    if not groups:
        raise ParseError("no OBR segment: an ORU^R01 needs one OBR per report", field="OBR")

    events: list[ReportEvent] = []
    skipped: list[str] = []
    for g in groups:
        try:
            ev = _group_event(msg, g, header, site=site, accession_field=accession_field, received=received,
                              msg_time=msg_time, tz=default_tz, rep_sep=rep_sep, several=len(groups) > 1)
        except NoReport as exc:
            skipped.append(f"OBR #{g.index}: {exc.reason}")
            continue
        except ParseError as exc:
            prefix = f"OBR #{g.index}: " if len(groups) > 1 else ""
            raise ParseError(prefix + exc.reason, code=exc.code, field=exc.field) from None
        events.append(ev)
    if not events:
        raise NoReport("no report in message (" + "; ".join(skipped) + ")", field="OBR-25")
    return HL7Result(header, events, skipped)


def _group_event(msg: Any, g: _Group, header: MessageHeader, *, site: str, accession_field: str,
                 received: datetime, msg_time: datetime | None, tz: tzinfo, rep_sep: str,
                 several: bool) -> ReportEvent:
    obr, orc = g.obr, g.orc
    if g.pid is None:
        raise ParseError("no PID segment before the OBR", field="PID")
    patient_id = _patient_id(g.pid)
    if not patient_id:
        raise ParseError("PID-3 patient identifier is empty", field="PID-3")

    seg_name, _, num = accession_field.upper().partition("-")
    source = {"OBR": obr, "ORC": orc}.get(seg_name)
    if not num.isdigit() or seg_name not in ("OBR", "ORC"):
        raise ValueError(f"accession_field must be like OBR-3, OBR-18 or ORC-3, not {accession_field!r}")
    accession = _unescape(msg, _get(source, int(num))) if source is not None else ""
    if not accession:
        raise ParseError(f"no accession number in {accession_field.upper()}", field=accession_field.upper())

    lines: list[str] = []
    obx_status: list[str] = []
    study_uid = _get(g.zds, 1) if g.zds is not None else ""
    uid_ids = tables()["study_uid_observation_ids"]
    text_types = tables()["text_value_types"]
    for sid, seg in g.items:
        if sid == "NTE":
            lines.extend(_lines(msg, _raw(seg, 3), rep_sep))
            continue
        obs_id = _get(seg, 3).upper()
        obs_text = _get(seg, 3, 1, 2).lower()
        if obs_id in uid_ids or "study instance uid" in obs_text:
            study_uid = study_uid or _get(seg, 5)
            continue
        if _get(seg, 2).upper() not in text_types:
            continue
        lines.extend(_lines(msg, _raw(seg, 5), rep_sep))
        st = _get(seg, 11).upper()
        if st:
            obx_status.append(st)
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    text = "\n".join(lines)

    result_status = _get(obr, 25).upper()
    if result_status:
        status = map_status("hl7_0123", result_status)
    elif obx_status:
        mapped = []
        for s in obx_status:
            try:
                mapped.append(map_status("hl7_0085", s))
            except NoReport:
                continue
        if not mapped:
            raise NoReport(f"OBX-11 statuses {sorted(set(obx_status))} carry no report", field="OBX-11")
        status = max(mapped, key=status_rank)
    else:
        raise ParseError("no result status in OBR-25 or OBX-11", field="OBR-25")
    appended = status in ("final", "corrected") and "B" in obx_status
    if appended or (status == "corrected" and _has_addendum_marker(lines)):
        status = "addendum"
    if obx_status and all(s in ("W", "D") for s in obx_status) and status not in ("cancelled",):
        status = "entered_in_error"

    obs_time = _time(_get(obr, 7), "OBR-7", tz)
    status_time = _time(_get(obr, 22), "OBR-22", tz)
    modality = _get(obr, 24).upper()
    modalities = tables()["modalities"]
    given, family, ident = _get(obr, 32, 1, 1, 3), _get(obr, 32, 1, 1, 2), _get(obr, 32, 1, 1, 1)
    author = " ".join(p for p in (given, family) if p) or ident
    pclass_raw = _get(g.pv1, 2).upper() if g.pv1 is not None else ""
    pclass = tables()["patient_class_0004"].get(pclass_raw, pclass_raw.lower() or None)
    placer = _unescape(msg, _get(obr, 2) or (_get(orc, 2) if orc is not None else ""))
    filler = _unescape(msg, _get(obr, 3) or (_get(orc, 3) if orc is not None else ""))
    return ReportEvent(
        site=site,
        accession=accession,
        report_id=filler or accession,
        version=derive_version(status, status_time, msg_time, obs_time),
        status=status,
        patient_id=patient_id,
        text=text,
        source_format="hl7v2",
        received_time=received,
        visit_number=(_get(g.pv1, 19) or None) if g.pv1 is not None else None,
        patient_class=pclass,
        modality=modality if modality in modalities else None,
        procedure_code=_unescape(msg, _get(obr, 4)) or None,
        procedure_description=_unescape(msg, _get(obr, 4, 1, 2) or _get(obr, 4, 1, 5)) or None,
        study_instance_uid=study_uid or None,
        observation_time=obs_time,
        status_time=status_time,
        author=_unescape(msg, author) or None,
        source_message_id=(header.control_id + (f"#{g.index}" if several else "")) or None,
        placer_order_number=placer or None,
        filler_order_number=filler or None,
    )


def _has_addendum_marker(lines: list[str]) -> bool:
    markers = tuple(tables()["addendum_markers"])
    return any(line.lstrip().upper().startswith(markers) for line in lines)


def _patient_id(pid: Any) -> str:
    """PID-3: the repetition typed MR (medical record number), else the first one."""
    first = ""
    for rep in range(1, 10):
        ident = _get(pid, 3, rep, 1)
        if not ident:
            if rep > 1 and not _get(pid, 3, rep, 5):
                break
            continue
        first = first or ident
        if _get(pid, 3, rep, 5).upper() == "MR":
            return ident
    return first or _get(pid, 2)


# --- ACKs -----------------------------------------------------------------------------------------

def _escape(text: str, header: MessageHeader) -> str:
    enc = header.encoding_chars
    comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
    out = text.replace(esc, f"{esc}E{esc}").replace(header.field_sep, f"{esc}F{esc}")
    out = out.replace(comp, f"{esc}S{esc}").replace(rep, f"{esc}R{esc}").replace(sub, f"{esc}T{esc}")
    return out.replace("\r", " ").replace("\n", " ")


def build_ack(header: MessageHeader | None, code: str, text: str = "", error: ParseError | None = None,
              *, app: str = "RADSTREAM", facility: str = "", control_id: str | None = None,
              charset_codec: str = "ascii") -> bytes:
    """An original-mode ACK (MSH + MSA [+ ERR]) for ``header`` (a blank header when MSH was unreadable)."""
    h = header or MessageHeader()
    s, c = h.field_sep, h.encoding_chars[0]
    trigger = h.message_type.split(c)[1] if c in h.message_type else "R01"
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    ack_id = control_id or hl7.util.generate_message_control_id()
    msh = s.join(["MSH", h.encoding_chars, app, facility, h.sending_app, h.sending_facility, now, "",
                  f"ACK{c}{trigger}{c}ACK", ack_id, h.processing_id or "P", h.version or "2.5"])
    if h.charset:
        msh += s * 6 + h.charset
    segs = [msh, s.join(["MSA", code, h.control_id, _escape(text[:200], h)])]
    if error is not None:
        table = tables()["ack_error_codes_0357"]
        where = error.field or ""
        if where == "MSH-9":
            kind = "type"
        elif error.code == "AR":
            kind = "datatype"
        elif where in ("OBR-25", "OBX-11", "status"):
            kind = "table"
        elif error.reason.startswith(("no ", "empty ")) or "empty" in error.reason[:30]:
            kind = "required"
        else:
            kind = "internal"
        location = where.replace("-", c) if re.match(r"^[A-Z][A-Z0-9]{2}-\d+$", where) else ""
        segs.append(s.join(["ERR", "", location, f"{table[kind]}{c}{_escape(error.reason[:80], h)}{c}HL70357",
                            "E", "", "", "", _escape(error.reason[:400], h)]))
    return ("\r".join(segs) + "\r").encode(charset_codec, errors="replace")


def parse_ack(raw: bytes) -> tuple[str, str, str]:
    """(MSA-1 code, MSA-2 control id, MSA-3 text) of an ACK (for the demo client and tests)."""
    text = _strip_frame(raw).decode("utf-8", errors="replace").replace("\n", "\r")
    for seg in text.split("\r"):
        if seg.startswith("MSA"):
            parts = seg.split(seg[3]) + ["", "", ""]
            return parts[1], parts[2], parts[3]
    raise ParseError("no MSA segment in ACK", code="AR")


# --- batch files ---------------------------------------------------------------------------------

def split_batch(data: bytes) -> list[bytes]:
    """Messages of an HL7 batch file (FHS/BHS/.../BTS/FTS, MLLP frames or bare MSH ... MSH ...)."""
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"\r")
    messages: list[bytes] = []
    current: list[bytes] = []
    for seg in re.split(rb"\r\n|\r|\n", data):
        sid = seg[:3]
        if sid in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        if sid == b"MSH":
            if current:
                messages.append(b"\r".join(current))
            current = [seg]
        elif current:
            current.append(seg)
        elif seg.strip():
            messages.append(seg)  # junk before the first MSH: reported as a reject
    if current:
        messages.append(b"\r".join(current))
    return messages


def iter_hl7_batch(data: bytes, *, site: str, accession_field: str = "OBR-3", name: str = "<hl7>",
                   received_time: datetime | None = None, skip: int = 0, default_charset: str = "utf-8",
                   default_tz: tzinfo = UTC) -> Iterator[tuple[int, ReportEvent | Rejected]]:
    """(message number, event or reject) for each message of a batch file; messages <= skip not parsed."""
    for no, raw in enumerate(split_batch(data), 1):
        if no <= skip:
            continue
        try:
            result = parse_oru(raw, site=site, accession_field=accession_field, received_time=received_time,
                               default_charset=default_charset, default_tz=default_tz)
        except ParseError as exc:
            yield no, Rejected(f"{name}:{no}", exc.reason, raw)
            continue
        for ev in result.events:
            yield no, ev
