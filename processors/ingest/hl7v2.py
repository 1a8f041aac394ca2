"""HL7 v2 ORU^R01 (radiology results) -> report events, and the ACK for the sender.

Parsing is done by python-hl7 (``hl7.parse``; escapes by our own :mod:`processors.ingest.hl7_escape`,
see there why); this module adds the
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
- OBX TX/FT/ST lines and NTE comments, in order, joined with line breaks; well-formed escape sequences
  resolved by :mod:`processors.ingest.hl7_escape` (anything else kept as sent). An OBX-11 ``B`` line
  makes the version an addendum, and so does a correction (OBR-25 ``C``) whose full text has an
  ``ADDENDUM`` line (``addendum_markers``). OBX lines marked ``D`` (deleted) or ``W`` (wrong) are left
  out of the text; without OBR-25 the line statuses combine as described in :func:`_line_status`.
- A group whose status carries no report (scheduled, in progress) is skipped, not an error. A group
  without any OBX that is linked to one with text (same PID, same ORC-4 placer group or an OBR-29
  parent: one report for several orders) shares that text (:func:`_linked`).
- ED/RP OBX values (embedded PDFs, references) are not used: they are cut out before the size check
  and parsing, and the event notes the type and size in ``extra["attachments_not_kept"]``.
- Version: OBR-22, else MSH-7 (the message time), else OBR-7 plus the status rank (:func:`_version`).
  One kind of time orders all versions of a report; a resend with the same MSH-7 is the same event.

Everything a sender can get wrong that is known here raises :class:`ParseError` (``code`` AR or AE).
Anything else that escapes :func:`parse_oru` is a bug (an ``OverflowError`` of a time at the edge of the
calendar was one): the MLLP listener answers it AE and dead-letters the message with the reason.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from functools import cache
from importlib import resources
from typing import Any

import hl7
import hl7.util

from processors.ingest import hl7_escape
from processors.ingest.model import (
    NoReport,
    ParseError,
    ReportEvent,
    derive_version,
    map_status,
    now_utc,
    parse_time,
    status_rank,
    to_micros,
)
from processors.ingest.records import Rejected

log = logging.getLogger(__name__)

# python-hl7 logs the content of fields it cannot unescape: that would put report text (PHI) in logs.
hl7.util.logger.disabled = True

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # of the message without its ED/RP OBX values (attachments)
SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
UTF8_BOM = b"\xef\xbb\xbf"
# OBX-11 codes (HL7 table 0085) whose line is not part of the report any more: D deletes the OBX record,
# W posts the original as wrong (e.g. the wrong patient).
REMOVED_LINE_STATUSES = frozenset({"D", "W"})


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
    notes: list[str] = field(default_factory=list)  # for the ACK text: attachments not kept, linked exams


def _strip_frame(raw: bytes) -> bytes:
    data = raw.strip(b"\x0b\x1c\r\n\t \x00")
    if data.startswith(UTF8_BOM):  # some senders write one (a file saved as "UTF-8 with BOM")
        data = data[3:].lstrip(b"\r\n\t ")
    return data


def _is_utf16(data: bytes) -> bool:
    return data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:6] in (b"M\x00S\x00H\x00", b"\x00M\x00S\x00H")


def sniff_header(raw: bytes) -> MessageHeader:
    """MSH fields from the raw bytes (MSH is ASCII in every charset we accept). Raises ParseError AR."""
    data = _strip_frame(raw)
    if _is_utf16(data):
        # MLLP framing, segment ends and our byte-level checks are single bytes: UTF-16 is refused with a
        # clear reason rather than half-parsed (no sender of ours uses it; UTF-8 covers the same text).
        raise ParseError("UTF-16 encoded messages are not supported: send UTF-8 (MSH-18 UNICODE UTF-8)",
                         code="AR", field="MSH-18")
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
    if codec is None and "UTF-16" in header.charset.upper():
        raise ParseError(f"character set {header.charset!r} in MSH-18 is not supported: send UTF-8 "
                         "(UNICODE UTF-8)", code="AR", field="MSH-18")
    if codec is None:
        raise ParseError(f"unsupported character set {header.charset!r} in MSH-18", code="AR", field="MSH-18")
    return str(codec)


@cache
def _c1_as_cp1252() -> dict[int, str]:
    """C1 controls (U+0080-U+009F) -> the cp1252 character of the same byte, where cp1252 has one."""
    out: dict[int, str] = {}
    for b in range(0x80, 0xA0):
        try:
            out[b] = bytes([b]).decode("cp1252")
        except UnicodeDecodeError:  # 0x81 0x8D 0x8F 0x90 0x9D: kept as latin-1
            continue
    return out


def decode_text(data: bytes, codec: str) -> str:
    """``data`` in ``codec``; for the codecs in ``c1_as_cp1252`` (8859/1) the bytes 0x80-0x9F, C1 controls
    that are never text, are read as cp1252 (smart quotes, en dash): a common sender error (Windows
    text declared as 8859/1). Raises UnicodeDecodeError."""
    text = data.decode(codec)
    if codec in tables()["c1_as_cp1252"] and any(0x80 <= c < 0xA0 for c in data):
        text = text.translate(_c1_as_cp1252())
    return text


@cache
def _segment_ids() -> frozenset[str]:
    return frozenset(tables()["segment_ids"])


def _is_segment(line: str, sep: str, known_only: bool) -> bool:
    sid = line[:3]
    if not SEGMENT_ID.match(sid):
        return False
    if known_only and sid not in _segment_ids() and sid[0] != "Z":
        return False
    return (len(line) > 3 and line[3] == sep) or (len(line) == 3 and sid in _segment_ids())


_EOL = re.compile(rb"\r\n?|\n")


def _segment_end(data: bytes, lo: int = 0, hi: int | None = None) -> bytes:
    """The segment terminator, from the end of the first segment (MSH, or FHS of a batch) in
    ``data[lo:hi]``: ``b"\\r"`` (the standard, also for CRLF) or ``b"\\n"``. A CR anywhere else may be a
    line break inside a field (Windows text in an LF-segmented message), so it does not decide."""
    m = _EOL.search(data, lo, len(data) if hi is None else hi)
    return b"\n" if m is not None and m.group() == b"\n" else b"\r"


def _lf_segments(line: str, sep: str) -> list[str]:
    """One CR-ended line of a CR message, cut at each bare LF that a known segment ID (or Z..) and the
    field separator follow: a segment the sender ended with LF (an interface engine that appended an OBX
    with its own line end). Folded into the segment before it, that OBX's text was lost (review s15/r8).
    Any other LF stays: a line break of the report text (``NAD``, ``MRI``, ``OBX`` alone on a line)."""
    parts = line.split("\n")
    out = [parts[0]]
    for part in parts[1:]:
        if part[3:4] == sep and _is_segment(part, sep, known_only=True):
            out.append(part)
        else:
            out[-1] += "\n" + part
    return out


def decode_message(raw: bytes, default_charset: str = "utf-8") -> tuple[MessageHeader, str]:
    """Header and text of one message; segments normalised to CR, continuation lines folded in.

    With CR segment ends (the standard), a bare LF is a line break inside a field, unless a known segment ID
    and the field separator follow it (:func:`_lf_segments`). In an LF-only message
    a line starts a new segment only with a known segment ID (or Z..) and the field separator, so a report
    line such as ``NAD`` or ``MRI`` stays text.
    """
    header = sniff_header(raw)
    codec = codec_of(header, default_charset)
    data = _strip_frame(raw)
    try:
        text = decode_text(data, codec)
    except UnicodeDecodeError as exc:
        declared = f"MSH-18 {header.charset!r}" if header.charset else "no MSH-18"
        raise ParseError(f"message bytes are not valid {codec} ({declared}): byte 0x{data[exc.start]:02X} "
                         f"at offset {exc.start}", code="AR", field="MSH-18") from None
    if "\x00" in text:
        raise ParseError("message contains NUL characters", code="AR")
    sep = header.field_sep
    has_cr = _segment_end(data) == b"\r"
    if has_cr:
        lines = [p for line in text.replace("\r\n", "\r").split("\r") for p in _lf_segments(line, sep)]
    else:  # LF segment ends: a CR or CRLF is a line break inside a field (Windows dictation text)
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    segments: list[str] = []
    for line in lines:
        if _is_segment(line, sep, known_only=not has_cr):
            segments.append(line)
        elif segments and line.strip():
            # a line break inside a field (senders that put raw line breaks into OBX-5/NTE-3)
            segments[-1] += "\n" + line
    return header, "\r".join(segments)


_FRAME_CHARS = b"\x0b\x1c\r\n\t \x00"
_LEAD = re.compile(rb"[\x0b\x1c\r\n\t \x00]*")


@cache
def _lf_then_id(sep: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"\n(?=[A-Z][A-Z0-9]{2}" + re.escape(sep) + rb")")


def _lf_segment_start(raw: bytes, pos: int, end: int, sep: bytes) -> int:
    """The first LF in ``raw[pos:end]`` that :func:`_lf_segments` reads as a segment end, else ``end``."""
    first = raw.find(b"\n", pos, end)  # memchr: a base64 value without any LF costs next to nothing
    if first < 0:
        return end
    for m in _lf_then_id(sep).finditer(raw, first, end):
        if _is_segment(raw[m.start() + 1:m.start() + 5].decode("latin-1"), sep.decode("latin-1"), True):
            return m.start()
    return end


def strip_attachments(raw: bytes) -> tuple[bytes, list[str]]:
    """``raw`` without the OBX-5 values of ED/RP OBX segments (embedded documents, references, which no
    report event carries), and one note per value cut (``"ED Application/PDF, 4194304 bytes"``).

    Done on the bytes, before the size check and the decoding, so a report with a large PDF is taken on
    its text; the field is emptied, the segment kept (its OBX-11 and order stay as sent). The message is
    walked by offsets (``find`` with bounds) and only what is kept is copied: splitting the message,
    its segments and the ED field made four copies of a 30 MiB frame (123 MiB peak).
    """
    lead = _LEAD.match(raw)
    lo = lead.end() if lead else 0
    if raw.startswith(UTF8_BOM, lo):
        lead = _LEAD.match(raw, lo + 3)
        lo = lead.end() if lead else lo + 3
    hi = len(raw)
    while hi > lo and raw[hi - 1] in _FRAME_CHARS:
        hi -= 1
    if hi - lo < 8 or not raw.startswith(b"MSH", lo):
        return raw, []
    sep, comp = raw[lo + 3:lo + 4], raw[lo + 4:lo + 5]
    if raw.find(sep + b"ED", lo, hi) < 0 and raw.find(sep + b"RP", lo, hi) < 0:
        return raw, []
    term = _segment_end(raw, lo, hi)
    notes: list[str] = []
    pieces: list[bytes] = []
    kept = pos = lo
    while pos < hi:
        end = raw.find(term, pos, hi)
        end = hi if end < 0 else end
        if term == b"\r":  # a segment ended by a bare LF, as the decoder reads it (_lf_segments)
            end = _lf_segment_start(raw, pos, end, sep)
        start = pos
        while start < end and raw[start] in (0x0A, 0x0D):  # the rest of a CR LF or LF CR segment end
            start += 1
        pos = end + len(term)
        if not raw.startswith(b"OBX" + sep, start, end):
            continue
        seps = [start + 3]  # seps[k]: the separator before field k+1
        while len(seps) < 6:
            nxt = raw.find(sep, seps[-1] + 1, end)
            if nxt < 0:
                break
            seps.append(nxt)
        if len(seps) < 5:  # no OBX-5
            continue
        v0 = seps[4] + 1
        v1 = seps[5] if len(seps) > 5 else end
        vtype = raw[seps[1] + 1:seps[2]].split(comp)[0].strip().upper()
        if vtype not in (b"ED", b"RP"):
            continue
        # a raw CR or LF never belongs in base64 or a reference: the value ends there, and what follows
        # is read as the next segment (the decoder takes a bare CR in an LF message as a segment end)
        brk = min((i for i in (raw.find(b"\r", v0, v1), raw.find(b"\n", v0, v1)) if i >= 0), default=-1)
        if brk >= 0:
            v1 = brk
            pos = brk + 1
        kind = ""
        if vtype == b"ED":  # ED: source ^ type of data ^ subtype ^ encoding ^ data
            c1 = raw.find(comp, v0, v1)
            c2 = raw.find(comp, c1 + 1, v1) if c1 >= 0 else -1
            c3 = raw.find(comp, c2 + 1, v1) if c2 >= 0 else -1
            comps = []
            if c1 >= 0:
                comps.append(raw[c1 + 1:min(c2 if c2 >= 0 else v1, c1 + 21)])
            if c2 >= 0:
                comps.append(raw[c2 + 1:min(c3 if c3 >= 0 else v1, c2 + 21)])
            kind = "/".join(c.decode("ascii", "replace") for c in comps if c)
        notes.append(f"{vtype.decode('ascii')}{' ' + kind if kind else ''}, {v1 - v0} bytes")
        pieces.append(raw[kept:v0])
        kept = v1
    if not notes:
        return raw, []
    pieces.append(raw[kept:hi])
    return b"".join(pieces), notes


def _get(seg: Any, n: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """Value of SEG-n.rep.comp.sub as a string ("" when absent), never raising."""
    try:
        value: Any = seg(n)
        path = (rep, comp, sub)
        for i, idx in enumerate(path):
            if isinstance(value, str):
                # a plain value is the first repetition, component and subcomponent only (it was also
                # returned for SEG-n.1.1.2: an EIP's parent "PB1" read as namespace "PB1")
                return value if all(j == 1 for j in path[i:]) else ""
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


Unescape = Callable[[str], str]


def _unescaper(header: MessageHeader, codec: str) -> Unescape:
    """The escape resolver of one message (its delimiters, and its charset for ``\\Xhh\\`` bytes)."""
    enc = header.encoding_chars
    comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]

    def decode(data: bytes) -> str:
        try:
            return decode_text(data, codec)
        except UnicodeDecodeError:
            # \\Xhh\\ is how an ASCII (no MSH-18) message carries a non-ASCII byte, nearly always meant as
            # 8859/1 (python-hl7 did the same): read as 8859/1, C1 bytes as cp1252; every byte decodes
            return decode_text(data, "iso8859-1")

    def unescape(text: str) -> str:
        return hl7_escape.unescape(text, field_sep=header.field_sep, comp=comp, rep=rep, esc=esc, sub=sub,
                                   decode=decode)
    return unescape


def _lines(unescape: Unescape, raw: str, rep_sep: str) -> list[str]:
    """Text lines of a TX/FT/ST field: repetitions are lines; escapes resolved."""
    out: list[str] = []
    for rep in raw.split(rep_sep):
        out.extend(unescape(rep).replace("\r\n", "\n").replace("\r", "\n").split("\n"))
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
    text_from: int = 0  # linked exam: the index of the group whose OBX/NTE text this one shares
    borrowed: list[tuple[str, Any]] = field(default_factory=list)  # those OBX/NTE segments


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
    raw, attachments = strip_attachments(raw)
    if len(raw) > max_bytes:
        raise ParseError(f"message of {len(raw)} bytes exceeds the limit of {max_bytes} bytes", code="AR")
    header, text = decode_message(raw, default_charset)
    codec = codec_of(header, default_charset)
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
    _link_exams(groups)
    if attachments:
        # no PHI: value types and sizes only
        log.info("message %s: attachment(s) not kept: %s", header.control_id, "; ".join(attachments))

    unescape = _unescaper(header, codec)
    events: list[ReportEvent] = []
    skipped: list[str] = []
    for g in groups:
        try:
            ev = _group_event(unescape, g, header, site=site, accession_field=accession_field,
                              received=received, msg_time=msg_time, tz=default_tz, rep_sep=rep_sep,
                              several=len(groups) > 1)
        except NoReport as exc:
            skipped.append(f"OBR #{g.index}: {exc.reason}")
            continue
        except ParseError as exc:
            if exc.field == "text" and not _has_text_obx(g) and not g.borrowed:
                # an OBR without text that is not a linked exam of one with text: the whole message is
                # refused, as before linked exams were read (never another order's or patient's text)
                reason = f"OBR #{g.index} has no report text"
                if any(_has_text_obx(o) for o in groups):
                    reason += (" (not linked to another OBR's text: that needs the same PID and the same"
                               " ORC-4 placer group or an OBR-29 parent, each identifier compared whole:"
                               " entity id, namespace id, universal id and its type as sent)")
                if attachments:
                    reason += f" (attachment not read: {'; '.join(attachments)})"
                raise ParseError(reason, code=exc.code, field=exc.field) from None
            if exc.field == "text" and attachments:
                exc.reason += f" (attachment not read: {'; '.join(attachments)})"
            prefix = f"OBR #{g.index}: " if len(groups) > 1 else ""
            raise ParseError(prefix + exc.reason, code=exc.code, field=exc.field) from None
        if attachments:
            ev.extra["attachments_not_kept"] = "; ".join(attachments)
        events.append(ev)
    if not events:
        raise NoReport("no report in message (" + "; ".join(skipped) + ")", field="OBR-25")
    seen: set[tuple[str, int]] = set()
    for ev in events:
        # two OBRs of one accession with one version (same status, no OBR-22 to tell them apart): one
        # would silently replace the other downstream, so the sender is told instead
        if (ev.accession, ev.version) in seen:
            raise ParseError(f"two OBRs of one accession with status {ev.status} and the same"
                             " time (OBR-22, else MSH-7) in one message: send them in separate messages"
                             " or with OBR-22", field="OBR-22")
        seen.add((ev.accession, ev.version))
    notes = [f"attachment not kept: {a}" for a in attachments]
    notes += [f"OBR #{g.index} shares the text of OBR #{g.text_from}" for g in groups if g.text_from]
    return HL7Result(header, events, skipped, notes)


def _has_text_obx(g: _Group) -> bool:
    text_types = tables()["text_value_types"]
    return any(sid == "OBX" and _get(seg, 2).upper() in text_types for sid, seg in g.items)


def _link_exams(groups: list[_Group]) -> None:
    """Linked exams: one report for several orders (CT chest + abdomen under two accessions) is sent as
    several OBRs with the text OBX lines after the last one only. A group without text OBX shares the
    OBX/NTE lines of the next group with text that is demonstrably linked to it (:func:`_linked`); each
    accession gets its own event with the same text, and its own OBR-25 still decides its status. A
    cancelled (X) or no-report OBR never takes text, and never gives it either: its text (a cancel
    reason) is not the report of a linked order. Any other group without text is refused in
    :func:`parse_oru`: sharing by position alone gave one patient's text to another patient's exam."""
    if len(groups) < 2:
        return
    with_text = [g for g in groups if _has_text_obx(g)]
    givers = [g for g in with_text if _may_take_text(g)]
    for g in groups:
        if g in with_text or not _may_take_text(g):
            continue
        donor = next((d for d in givers if d.index > g.index and _linked(g, d)), None)
        if donor is not None:
            g.borrowed = [(sid, seg) for sid, seg in donor.items if sid in ("OBX", "NTE")]
            g.text_from = donor.index


def _may_take_text(g: _Group) -> bool:
    """A cancelled (X) or no-report (O, I, S, ...) OBR keeps no text: it is not a reported exam."""
    code = _get(g.obr, 25).upper()
    if not code:
        return True  # the status then comes from the shared OBX-11 lines of the same report
    try:
        return map_status("hl7_0123", code) != "cancelled"
    except ParseError:  # NoReport, or an unknown code (refused with its reason in _group_event)
        return False


EI = tuple[str, str, str, str]


def _ei(seg: Any, n: int, comp: int = 0) -> EI | None:
    """The EI in SEG-n, or in its ``comp``-th component (an EIP's two EIs are subcomponents), whole and
    normalised (HL7 v2.5.1 2.A.28: entity id ^ namespace id ^ universal id ^ universal id type); None
    without an entity id. The id alone names nothing: the assigning authority (namespace, and/or universal
    id and its type) is part of the identifier, so two systems' orders ``G1`` are different orders. Type
    codes (table 0301) are upper-cased; a DNS name, UUID or GUID is case-insensitive by its definition."""
    def value(k: int) -> str:
        return _get(seg, n, 1, comp, k) if comp else _get(seg, n, 1, k)

    ident = value(1).strip()
    if not ident:
        return None
    uid_type = value(4).strip().upper()
    uid = value(3).strip()
    if uid_type in ("DNS", "UUID", "GUID"):
        uid = uid.lower()
    return ident, value(2).strip(), uid, uid_type


def _linked(a: _Group, b: _Group) -> bool:
    """Whether two OBRs of one message report on one linked order set (HL7 v2.5 semantics).

    Both must be in the same PID group (an ORU's ORC/OBR groups belong to the PID above them; the PID
    segment object is compared, never its content, so nothing crosses a PID segment). Then:
    - the same ORC-4 placer group number: chapter 4 defines it as the id of a set of orders placed
      together, which is exactly what a RIS links under one report;
    - or OBR-29 (parent, EIP: placer ^ filler) of one names the other's placer (OBR-2/ORC-2) or filler
      (OBR-3/ORC-3) order number, or both name the same parent: a child order of the other.
    Every identifier is compared whole (:func:`_ei`: id, namespace, universal id and its type, as sent;
    one sent with its authority and one without are not the same), placer with placer, filler with filler.
    Not used: OBR-26 (parent result) points to an OBX of a reflex parent (lab), not to a shared text; a
    common filler number or exam time is no link (two accessions of one visit share neither by rule, and
    unrelated exams may share a time).
    """
    if a.pid is None or a.pid is not b.pid:
        return False

    def group(g: _Group) -> EI | None:
        return _ei(g.orc, 4) if g.orc is not None else None

    ga = group(a)
    if ga is not None and ga == group(b):
        return True

    def numbers(g: _Group) -> set[tuple[int, EI]]:
        """(1 placer / 2 filler, EI) of the order's own numbers: OBR-2/ORC-2, OBR-3/ORC-3."""
        out: set[tuple[int, EI | None]] = set()
        for role, n in ((1, 2), (2, 3)):
            out.add((role, _ei(g.obr, n)))
            if g.orc is not None:
                out.add((role, _ei(g.orc, n)))
        return {(role, ei) for role, ei in out if ei is not None}

    def parents(g: _Group) -> set[tuple[int, EI]]:
        """(1 placer / 2 filler, EI) of OBR-29 (EIP: each EI's components are subcomponents)."""
        out = {(role, _ei(g.obr, 29, role)) for role in (1, 2)}
        return {(role, ei) for role, ei in out if ei is not None}

    pa, pb = parents(a), parents(b)
    return bool(pa & numbers(b) or pb & numbers(a) or pa & pb)


def _group_event(unescape: Unescape, g: _Group, header: MessageHeader, *, site: str, accession_field: str,
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
    accession = unescape(_get(source, int(num))) if source is not None else ""
    if not accession:
        raise ParseError(f"no accession number in {accession_field.upper()}", field=accession_field.upper())

    lines: list[str] = []
    obx_status: list[str] = []
    study_uid = _get(g.zds, 1) if g.zds is not None else ""
    uid_ids = tables()["study_uid_observation_ids"]
    text_types = tables()["text_value_types"]
    own = len(g.items)
    for i, (sid, seg) in enumerate(g.items + g.borrowed):
        if sid == "NTE":
            lines.extend(_lines(unescape, _raw(seg, 3), rep_sep))
            continue
        obs_id = _get(seg, 3).upper()
        obs_text = _get(seg, 3, 1, 2).lower()
        if obs_id in uid_ids or "study instance uid" in obs_text:
            if i < own:  # a linked exam's study is its own, not the one of the group it shares text with
                study_uid = study_uid or _get(seg, 5)
            continue
        if _get(seg, 2).upper() not in text_types:
            continue
        st = _get(seg, 11).upper()
        if st:
            obx_status.append(st)
        if st in REMOVED_LINE_STATUSES:
            continue  # the sender deleted this line, or posted it as wrong: not in the report text
        lines.extend(_lines(unescape, _raw(seg, 5), rep_sep))
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    text = "\n".join(lines)

    result_status = _get(obr, 25).upper()
    if result_status:
        status = map_status("hl7_0123", result_status)
    elif obx_status:
        status = _line_status(obx_status)
    else:
        raise ParseError("no result status in OBR-25 or OBX-11", field="OBR-25")
    appended = status in ("final", "corrected") and "B" in obx_status
    if appended or (status == "corrected" and _has_addendum_marker(lines)):
        status = "addendum"
    if obx_status and all(s in REMOVED_LINE_STATUSES for s in obx_status) and status not in ("cancelled",):
        status = "entered_in_error"

    obs_time = _time(_get(obr, 7), "OBR-7", tz)
    status_time = _time(_get(obr, 22), "OBR-22", tz)
    modality = _get(obr, 24).upper()
    modalities = tables()["modalities"]
    given, family, ident = _get(obr, 32, 1, 1, 3), _get(obr, 32, 1, 1, 2), _get(obr, 32, 1, 1, 1)
    author = " ".join(p for p in (given, family) if p) or ident
    pclass_raw = _get(g.pv1, 2).upper() if g.pv1 is not None else ""
    pclass = tables()["patient_class_0004"].get(pclass_raw, pclass_raw.lower() or None)
    placer = unescape(_get(obr, 2) or (_get(orc, 2) if orc is not None else ""))
    filler = unescape(_get(obr, 3) or (_get(orc, 3) if orc is not None else ""))
    return ReportEvent(
        site=site,
        accession=accession,
        report_id=filler or accession,
        version=_version(status, status_time, obs_time, msg_time),
        status=status,
        patient_id=patient_id,
        text=text,
        source_format="hl7v2",
        received_time=received,
        visit_number=(_get(g.pv1, 19) or None) if g.pv1 is not None else None,
        patient_class=pclass,
        modality=modality if modality in modalities else None,
        procedure_code=unescape(_get(obr, 4)) or None,
        procedure_description=unescape(_get(obr, 4, 1, 2) or _get(obr, 4, 1, 5)) or None,
        study_instance_uid=study_uid or None,
        observation_time=obs_time,
        status_time=status_time,
        author=unescape(author) or None,
        source_message_id=(header.control_id + (f"#{g.index}" if several else "")) or None,
        placer_order_number=placer or None,
        filler_order_number=filler or None,
    )


def _line_status(obx_status: list[str]) -> str:
    """The report status from its OBX-11 line statuses (HL7 table 0085), used when OBR-25 is empty.

    A report is only as far as its least advanced line: one P (or R, S) line keeps it preliminary, not
    final. C (this line corrects a final one) and D/W (a line deleted, or posted as wrong) mean the report
    text changed after it was final: the report is corrected. All lines D/W retract it (the caller), all
    X (cannot be obtained) cancel it; a single D/W/X line among others never retracts the whole report.
    """
    mapped: list[str] = []
    for code in obx_status:
        if code in REMOVED_LINE_STATUSES:
            continue
        try:
            mapped.append(map_status("hl7_0085", code))
        except NoReport:  # I, N, O, U: no result on this line
            continue
    if mapped and all(m == "cancelled" for m in mapped):
        return "cancelled"
    mapped = [m for m in mapped if m != "cancelled"]
    if not mapped:
        if obx_status and all(c in REMOVED_LINE_STATUSES for c in obx_status):
            return "entered_in_error"
        raise NoReport(f"OBX-11 statuses {sorted(set(obx_status))} carry no report", field="OBX-11")
    status = min(mapped, key=status_rank)
    if status == "final" and ("corrected" in mapped or any(c in REMOVED_LINE_STATUSES for c in obx_status)):
        status = "corrected"
    return status


def _version(status: str, status_time: datetime | None, obs_time: datetime | None,
             msg_time: datetime | None) -> int:
    """The version (ordering key) of a group: one kind of time for every version of a report.

    - OBR-22 (results report / status change time): the time this status was reached.
    - Else MSH-7, the time the sending system created the message: each new status or text is a new
      message, so MSH-7 keeps their order whatever the sender fills elsewhere. Plus the status rank
      (1..6 microseconds): a final and its correction or addendum sent with the same MSH-7 (minute
      precision, or within one second) got one version, and the later one replaced the earlier. A resend
      of the same message (same MSH-7 and status) gets the same version and event_id: a duplicate.
    - Else OBR-7 (the exam time, the same for every version) plus the status rank (1..6 microseconds).
    OBX-19/OBX-14 are not used: a sender fills them on some messages and not on others (a correction
    with the times cleared), and a time from them compared with one from OBR-7 or MSH-7 put a
    correction below the final it corrects.
    """
    if status_time is None and msg_time is not None:
        return to_micros(msg_time) + status_rank(status)
    return derive_version(status, status_time, msg_time, obs_time)


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
    """Messages of an HL7 batch file (FHS/BHS/.../BTS/FTS, MLLP frames or bare MSH ... MSH ...).

    Lines are split as in :func:`decode_message`: a file with CR segment ends keeps a bare LF inside a
    field (a line break of the report) unless a header segment (MSH, FHS, BHS, BTS, FTS) follows it, an
    LF-only file is split on LF and its messages joined with LF.
    """
    if data.startswith(UTF8_BOM):
        data = data[3:]
    data = data.replace(b"\x0b", b"").replace(b"\x1c\r\n", b"\x1c").replace(b"\x1c\r", b"\x1c")
    term = _segment_end(data)
    data = data.replace(b"\x1c", term)
    messages: list[bytes] = []
    current: list[bytes] = []
    if term == b"\r":  # and a bare LF before a header segment: a message or batch header ended by LF
        sep = re.escape(data[3:4] or b"|")
        segs = re.split(rb"\r\n|\r|\n(?=(?:MSH|FHS|BHS|BTS|FTS)" + sep + rb")", data)
    else:
        segs = data.split(b"\n")
    for seg in segs:
        sid = seg[:3]
        if sid in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        if sid == b"MSH":
            if current:
                messages.append(term.join(current))
            current = [seg]
        elif current:
            current.append(seg)
        elif seg.strip():
            messages.append(seg)  # junk before the first MSH: reported as a reject
    if current:
        messages.append(term.join(current))
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
