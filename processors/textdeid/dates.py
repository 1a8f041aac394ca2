"""Dates in report text: parse the formats of ``rules.json`` (format keys), shift, and write back in the
same format (zero padding, year width, month name style and case, ordinal suffix).

Ambiguous numeric dates are read month first (US), day first when the first number cannot be a month.
A date without a year is shifted as if in a leap year (2000) and written without one; a month and year
("March 2021", "3/2021") is shifted from the 15th of that month. Years alone are kept (Safe Harbor
allows the year, except one that gives an age over 89 away: a date of birth, year included, is not shifted
here but replaced whole, engine.py). Times of day are not identifiers and are kept.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_REF_YEAR = 2000  # leap: Feb 29 without a year stays a valid date


def month_number(word: str) -> int:
    w = word.lower().rstrip(".")
    for i, name in enumerate(_MONTHS, 1):
        if name.startswith(w[:3]):
            return i
    raise ValueError(word)


def _month_like(new: int, original: str) -> str:
    name = _MONTHS[new - 1]
    word = original.rstrip(".")
    if len(word) <= 4 and word.lower() not in ("june", "july"):
        name = name[:4] if word.lower() == "sept" and new == 9 else name[:3]
    if word.isupper() and len(word) > 1:
        return name.upper()
    if word.islower():
        return name
    return name.capitalize()


def _year(y: str) -> int:
    digits = y.lstrip("'")
    n = int(digits)
    if len(digits) == 2:
        return 2000 + n if n <= 50 else 1900 + n
    return n


def _fmt_year(new: int, original: str) -> str:
    if original.startswith("'"):
        return f"'{new % 100:02d}"
    return f"{new % 100:02d}" if len(original) == 2 else f"{new:04d}"


def _num(new: int, original: str, padded: bool = False) -> str:
    """``new`` written as ``original`` was: zero-padded if it was, or if the date's style is (``padded``)."""
    return f"{new:02d}" if padded or (original.startswith("0") and len(original) == 2) else str(new)


def _padded(*fields: str) -> bool:
    """A numeric date pads its fields if one of them is zero-padded or all have two digits."""
    return any(f.startswith("0") and len(f) == 2 for f in fields) or all(len(f) == 2 for f in fields)


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _replace_groups(m: re.Match[str], values: dict[int, str], source: str) -> str:
    """The match's text (in ``source``: the original, when matched on a lower-cased copy) with some
    groups replaced (by group number)."""
    out: list[str] = []
    pos = m.start()
    for g in sorted(values, key=m.start):
        if m.start(g) < 0:
            continue
        out.append(source[pos : m.start(g)])
        out.append(values[g])
        pos = m.end(g)
    out.append(source[pos : m.end()])
    return "".join(out)


def _fix_ordinal(s: str, day_text: str, new_day: int) -> str:
    return re.sub(
        rf"(?<!\d){re.escape(day_text)}(st|nd|rd|th)\b", f"{new_day}{_ordinal(new_day)}", s, count=1
    )


def shift_date(m: re.Match[str], fmt: str, group: int, days: int, source: str | None = None) -> str | None:
    """The matched date (``m.group(group)``) moved ``days`` back, in its own format; None when the text is
    not a valid date (the caller replaces it some other way). ``source``: the original text, when ``m``
    was matched on a lower-cased copy of it (month names keep their original case)."""
    delta = timedelta(days=days)
    src = m.string if source is None else source

    def orig(g: int) -> str:
        return src[m.start(g) : m.end(g)]

    try:
        if fmt == "mdy":
            a, b, y = int(m.group(1)), int(m.group(3)), m.group(4)
            month, day = (a, b) if a <= 12 else (b, a)
            new = date(_year(y), month, day) - delta
            na, nb = (new.month, new.day) if a <= 12 else (new.day, new.month)
            pad = _padded(m.group(1), m.group(3))
            return _replace_groups(
                m,
                {1: _num(na, m.group(1), pad), 3: _num(nb, m.group(3), pad), 4: _fmt_year(new.year, y)},
                src,
            )
        if fmt == "ymd":
            new = date(int(m.group(1)), int(m.group(3)), int(m.group(4))) - delta
            pad = _padded(m.group(3), m.group(4))
            return _replace_groups(
                m,
                {
                    1: f"{new.year:04d}",
                    3: _num(new.month, m.group(3), pad),
                    4: _num(new.day, m.group(4), pad),
                },
                src,
            )
        if fmt == "ymd_compact":
            new = date(int(m.group(1)), int(m.group(2)), int(m.group(3))) - delta
            return new.strftime("%Y%m%d")
        if fmt == "month_day":
            y = m.group(5)
            new = date(_year(y) if y else _REF_YEAR, month_number(m.group(1)), int(m.group(3))) - delta
            values = {1: _month_like(new.month, orig(1)), 3: str(new.day)}
            if y:
                values[5] = _fmt_year(new.year, y)
            return _fix_ordinal(_replace_groups(m, values, src), str(new.day), new.day)
        if fmt == "day_month":
            y = m.group(5)
            new = date(_year(y) if y else _REF_YEAR, month_number(m.group(3)), int(m.group(1))) - delta
            values = {1: _num(new.day, m.group(1)), 3: _month_like(new.month, orig(3))}
            if y:
                values[5] = _fmt_year(new.year, y)
            return _fix_ordinal(_replace_groups(m, values, src), str(new.day), new.day)
        if fmt == "month_year":
            new = date(_year(m.group(3)), month_number(m.group(1)), 15) - delta
            values = {1: _month_like(new.month, orig(1)), 3: _fmt_year(new.year, m.group(3))}
            return _replace_groups(m, values, src)
        if fmt == "my":
            new = date(int(m.group(3)), int(m.group(1)), 15) - delta
            return _replace_groups(m, {1: _num(new.month, m.group(1)), 3: f"{new.year:04d}"}, src)
        if fmt == "md":
            text = m.group(group)
            ms, _, ds = text.partition("/")
            new = date(_REF_YEAR, int(ms), int(ds)) - delta
            pad = _padded(ms, ds)
            return f"{_num(new.month, ms, pad)}/{_num(new.day, ds, pad)}"
    except ValueError:
        return None
    return None
