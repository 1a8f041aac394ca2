"""HL7 v2 escape sequences in text fields, resolved leniently.

HL7 v2.x Chapter 2, section 2.7 "Use of escape sequences in text fields" (2.7.1 formatting codes
``\\H\\ \\N\\``, 2.7.2-2.7.3 ``\\.br\\ \\.sp n\\ \\.in n\\ \\.ti n\\ \\.sk n\\ \\.fi\\ \\.nf\\ \\.ce\\``
(FT), 2.7.4 the delimiters ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``, 2.7.5 ``\\Xhh..\\`` hexadecimal data,
2.7.6 ``\\Zdd..\\`` locally defined, 2.7.7-2.7.8 ``\\Cxxyy\\`` / ``\\Mxxyyzz\\`` character set switches).

Why not python-hl7's ``Message.unescape`` (0.4.5, which has no lenient mode, only an ``app_map``): it
removes every sequence it does not know and, for an escape character without a closing one, everything
up to the end of the field, so a backslash the sender did not escape (``C5\\C6 and L4\\L5``, measured:
``C5L5``; ``L4\\L5.`` -> ``L4``) silently changes the report. It also turns each ``\\Xhh\\`` byte into
its own character (UTF-8 ``\\XC3A4\\`` -> ``Ã¤``), and raises on ``\\.spX\\``, so a field with one bad
sequence kept all its good ones unresolved.

Rules here:

- a sequence is resolved only when it is well formed and known (below); text never disappears;
- any other escape character is kept as a literal character and scanning goes on right after it, so
  ``C5\\C6 and L4\\L5`` stays as sent, and an escape without a closing one keeps the rest of the field;
- highlighting (``\\H\\``, ``\\N\\``), the FT fill/indent commands and the character set switches
  (``\\Cxxyy\\``, ``\\Mxxyyzz\\``) only change how text looks or which code page a sender meant: the
  sequence is dropped, the text around it is kept (the message's MSH-18 charset still decodes it);
- a locally defined ``\\Zhh..\\`` (hex digits) has no meaning here: dropped, text kept;
- ``\\.br\\`` and ``\\.ce\\`` end the line, ``\\.sp n\\`` gives n line breaks, ``\\.sk n\\`` n spaces
  (n at most :data:`MAX_REPEAT`, so a sender's typo cannot make a huge report);
- ``\\Xhh..\\`` bytes (several sequences in a row are one byte string) are decoded with the message's
  codec (``decode``); bytes it refuses keep the sequence as sent (the HL7 parser's ``decode`` falls back
  to 8859/1, so there every byte decodes).
"""

from __future__ import annotations

import re
from collections.abc import Callable

MAX_REPEAT = 20
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_FORMAT = re.compile(r"\.(br|sp|in|ti|sk|fi|nf|ce)(?: ?([+-]?\d{1,6}))?")
_CHARSET = re.compile(r"C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?")
_LOCAL = re.compile(r"Z[0-9A-Fa-f]+")


def unescape(text: str, *, field_sep: str, comp: str, rep: str, esc: str, sub: str,
             decode: Callable[[bytes], str]) -> str:
    """``text`` (one field value, or one repetition) with well-formed escape sequences resolved.

    ``decode`` turns the bytes of ``\\Xhh..\\`` sequences into text (the message's charset); it raises
    ``UnicodeDecodeError`` (or ``ValueError``) for bytes that are not text in that charset.
    """
    if esc not in text:
        return text
    delimiters = {"F": field_sep, "S": comp, "R": rep, "E": esc, "T": sub}
    out: list[str] = []
    pending: list[tuple[bytes, str]] = []  # consecutive \X..\ sequences: (bytes, sequence as sent)
    i, n = 0, len(text)
    while i < n:
        j = text.find(esc, i)
        if j < 0:
            break
        if j > i:
            _flush(pending, out, decode)
            out.append(text[i:j])
        k = text.find(esc, j + 1)
        if k < 0:  # no closing escape character: the rest of the field is text
            i = j
            break
        seq = text[j + 1:k]
        if seq[:1] == "X" and _HEX.fullmatch(seq, 1):
            pending.append((bytes.fromhex(seq[1:]), text[j:k + 1]))
            i = k + 1
            continue
        resolved = _resolve(seq, delimiters)
        _flush(pending, out, decode)
        if resolved is None:  # not an escape sequence: the escape character is text
            out.append(esc)
            i = j + 1
        else:
            out.append(resolved)
            i = k + 1
    _flush(pending, out, decode)
    out.append(text[i:])
    return "".join(out)


def _resolve(seq: str, delimiters: dict[str, str]) -> str | None:
    """What a well-formed sequence (without its escape characters) stands for; None if it is not one."""
    if len(seq) == 1:
        if seq in delimiters:
            return delimiters[seq]
        return "" if seq in ("H", "N") else None
    if not seq:
        return None
    first = seq[0]
    if first == ".":
        m = _FORMAT.fullmatch(seq)
        if m is None:
            return None
        cmd, num = m.group(1), m.group(2)
        count = min(max(int(num), 0), MAX_REPEAT) if num is not None else 1
        if cmd == "br" or cmd == "ce":
            return "\n" if num is None else None  # these take no number
        if cmd == "sp":
            return "\n" * max(count, 1)
        if cmd == "sk":
            return " " * count
        return ""  # .in .ti .fi .nf: layout of FT text only
    if first in ("C", "M") and _CHARSET.fullmatch(seq):
        return ""
    if first == "Z" and _LOCAL.fullmatch(seq):
        return ""
    return None


def _flush(pending: list[tuple[bytes, str]], out: list[str], decode: Callable[[bytes], str]) -> None:
    if not pending:
        return
    try:
        out.append(decode(b"".join(b for b, _ in pending)))
    except (UnicodeDecodeError, ValueError):
        out.extend(s for _, s in pending)  # not text in this charset: kept as sent
    pending.clear()
