"""Fast phrase matching: a trie of token sequences compiled into one regular expression.

Python's ``re`` tries the branches of an alternation one by one, so a plain ``a|b|c`` over a
thousand phrases is slow. Folding the phrases into a trie gives a pattern whose branches
start with distinct tokens, so one pass over a report finds every phrase (leftmost, longest).
Phrases are matched on lower-cased text, token by token: any run of white space or a hyphen
separates two word tokens ("plate-like" = "plate like"); punctuation tokens ("s/p", "r/o")
may be glued to their neighbours.

A phrase may hold a year placeholder, ``<year:1950-2029>``: one trie atom that matches any 4-digit year
of that range, so "in <year:1950-2029>" costs one phrase instead of eighty. A matched year is looked
up as the placeholder only where no phrase spells it out ("in 2003" listed on its own keeps its own
payloads), and a payload that names its phrase (a dataclass with a ``phrase`` field) gets the words
matched ("in 2003"), as if the phrase had been listed year by year.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TOKEN_RE = re.compile(r"\w+|[^\w\s-]")
WORD_RE = re.compile(r"\w+")
_WORD_SEP = r"(?:\s*-\s*|\s+)"
_PUNCT_SEP = r"\s*"


YEAR_RE = re.compile(r"<year:(\d{4})-(\d{4})>")


def year_placeholder(first: int, last: int) -> str:
    """The placeholder token for a 4-digit year from ``first`` to ``last`` (inclusive)."""
    if not 1000 <= first <= last <= 9999:
        raise ValueError(f"not a range of 4-digit years: {first}-{last}")
    return f"<year:{first}-{last}>"


def _tokens(low: str) -> list[str]:
    """The tokens of a lower-cased phrase; a year placeholder is one token."""
    if "<year:" not in low:
        return TOKEN_RE.findall(low)
    out: list[str] = []
    pos = 0
    for m in YEAR_RE.finditer(low):
        out += TOKEN_RE.findall(low, pos, m.start())
        out.append(m.group())
        pos = m.end()
    return out + TOKEN_RE.findall(low, pos)


def normalize(phrase: str) -> str:
    """The lookup key of a phrase or of a matched span: lower-case tokens joined by one space; a
    typographic apostrophe is the plain one ("can’t" is "can't")."""
    return " ".join(_tokens(phrase.lower().replace("\u2019", "'")))


def year_pattern(first: int, last: int) -> str:
    """A regex for the 4-digit years from ``first`` to ``last``: one class per decade, full decades of a
    century joined ("19[5-9][0-9]|20[0-2][0-9]" for 1950-2029)."""
    decades: dict[str, list[int]] = {}  # "195" -> its last digits
    for year in range(first, last + 1):
        decades.setdefault(str(year)[:3], []).append(year % 10)
    alts: list[str] = []
    full: dict[str, list[int]] = {}  # century "19" -> its decade digits whose ten years are all in
    for decade, digits in decades.items():
        if len(digits) == 10:
            full.setdefault(decade[:2], []).append(int(decade[2]))
        else:
            alts.append(decade + _digit_class(digits[0], digits[-1]))
    for century, tens in full.items():
        # the full decades of a century are contiguous: the range holds every year between them
        alts.append(century + _digit_class(tens[0], tens[-1]) + "[0-9]")  # not \d: ASCII digits only
    return "(?:" + "|".join(sorted(alts)) + ")"


def _digit_class(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def compile_ci(pattern: str) -> re.Pattern[str]:
    """Compile a case-insensitive pattern for use on lower-cased text (much faster than IGNORECASE):
    the pattern is lower-cased except escapes (``\\S`` stays ``\\S``) and ``(?P``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif pattern.startswith("(?P", i):
            out.append("(?P")
            i += 3
        else:
            out.append(pattern[i].lower())
            i += 1
    return re.compile("".join(out))


def lower_same_length(text: str) -> str:
    """``text.lower()``, keeping every offset valid (a few Unicode letters change length)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


_SEP_W, _SEP_P, _END_W, _END_P = "\x00", "\x01", "\x02", "\x03"
# an apostrophe of a phrase also matches the typographic one (U+2019) of word-processed text
_ATOM_RE = {_SEP_W: _WORD_SEP, _SEP_P: _PUNCT_SEP, _END_W: r"(?!\w)", _END_P: "", "'": "['\u2019]"}


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _atoms(tokens: list[str]) -> list[str]:
    """A phrase as a sequence of trie atoms: its characters (a year placeholder: itself, one atom),
    separators between tokens, an end mark."""
    out: list[str] = []
    for i, tok in enumerate(tokens):
        # a year placeholder is a word ("in <year:1950-2029>" must not match "in 1950s")
        year = tok.startswith("<year:")
        if i:
            out.append(_SEP_W if _ends_word(tokens[i - 1]) and (year or _is_word(tok[0])) else _SEP_P)
        if year:
            out.append(tok)
        else:
            out.extend(tok)
    out.append(_END_W if _ends_word(tokens[-1]) else _END_P)
    return out


def _ends_word(tok: str) -> bool:
    return _is_word(tok[-1]) or tok.startswith("<year:")


def _atom_re(atom: str) -> str:
    if len(atom) > 1:  # a year placeholder
        m = YEAR_RE.fullmatch(atom)
        assert m is not None
        return year_pattern(int(m.group(1)), int(m.group(2)))
    return _ATOM_RE[atom] if atom in _ATOM_RE else re.escape(atom)


_Trie = dict[str, "_Trie"]


def _branch(node: _Trie) -> str:
    # ends last, so that a longer phrase is preferred; separators before characters; a year placeholder
    # after the characters, so that a phrase spelling the year out ("in 2003 and") is tried first: a
    # character branch can only match a year as a whole token, hence at least as far as the placeholder
    keys = sorted(node, key=lambda a: (a in (_END_W, _END_P), a not in (_SEP_W, _SEP_P), len(a) > 1, a))
    alts = [_atom_re(a) + _branch(node[a]) for a in keys]
    if not alts:
        return ""
    if len(alts) == 1:
        return alts[0]
    return "(?:" + "|".join(alts) + ")"


def starts_with_word(phrase: str) -> bool:
    toks = _tokens(phrase.lower())
    return bool(toks) and _is_word(toks[0][0])


def trie_pattern(phrases: Iterable[str], word_start: bool = True) -> str:
    """A regex matching any of ``phrases`` (token-wise, longest first) on lower-cased text.

    The trie is built over characters, so at each position the engine tests at most one branch per
    possible next character instead of one per phrase.
    """
    root: _Trie = {}
    for phrase in phrases:
        toks = _tokens(phrase.lower())
        if not toks:
            continue
        node = root
        for atom in _atoms(toks):
            node = node.setdefault(atom, {})
    if not root:
        return r"(?!x)x"
    # a phrase that starts with a word must start a word; one that starts with punctuation (";", "?")
    # may follow a word directly ("effusion; pneumothorax"): give those to a pattern of their own
    # (``word_start=False``), since an alternation of both costs every position of the text
    return (r"(?<!\w)" if word_start else "") + _branch(root)


def substring_pattern(words: Iterable[str]) -> str:
    """A regex that matches where any of ``words`` starts, as plain substrings (no token rules): a
    character trie, so one ``search`` tests one branch per next character instead of one ``find`` per
    word over the whole text."""
    root: _Trie = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[_END_P] = {}  # a word ends here: the match may stop (only where it starts matters)
    return _branch(root) if root else r"(?!x)x"


@dataclass(frozen=True, slots=True)
class _Anchor:
    index: int


class PhraseMatcher:
    """Find phrases in lower-cased text and map each hit to its payloads.

    ``anchored`` adds phrasings with gaps ("heart is mildly enlarged"): (anchor phrases, regex, payload).
    The anchors go into the trie; the regex is only tried (``re.match``) where an anchor was found, so
    no extra pass over the text is needed (a regex scanning the whole text per pattern costs more than
    the trie itself).
    """

    def __init__(
        self, phrases: dict[str, list[Any]], anchored: list[tuple[list[str], str, Any]] | None = None
    ):
        merged: dict[str, list[Any]] = {p: list(v) for p, v in phrases.items()}
        self.anchored = [(re.compile(rx), payload) for _, rx, payload in (anchored or [])]
        for i, (anchors, _, _) in enumerate(anchored or []):
            for anchor in anchors:
                merged.setdefault(anchor, []).append(_Anchor(i))
        self.lookup: dict[str, list[Any]] = {}
        for phrase, payloads in merged.items():
            self.lookup.setdefault(normalize(phrase), []).extend(payloads)
        # a longer phrase starting with an anchor ("heart size" vs anchor "heart") tries its patterns too
        by_anchor: dict[str, list[_Anchor]] = {}
        for i, (anchors, _, _) in enumerate(anchored or []):
            for anchor in anchors:
                by_anchor.setdefault(normalize(anchor), []).append(_Anchor(i))
        if by_anchor:
            for key, payloads in self.lookup.items():
                toks = key.split(" ")
                for n in range(1, len(toks)):
                    for extra in by_anchor.get(" ".join(toks[:n]), []):
                        if extra not in payloads:
                            payloads.append(extra)
        self.regex = re.compile(trie_pattern(p for p in merged if starts_with_word(p)))
        punct = [p for p in merged if not starts_with_word(p) and TOKEN_RE.search(p)]
        self.punct_regex = re.compile(trie_pattern(punct, word_start=False)) if punct else None
        self._seen: dict[str, list[Any]] = {}
        self._index()

    def _index(self) -> None:
        # the payload lists that hold an anchor (by id: they live as long as the matcher) -> the same list
        # without its anchors; and one list per anchored payload. A hit gives one of these long-lived lists,
        # never a new one, so a caller can cache what it derives from a list by its id.
        self._unanchored = {
            id(v): [p for p in v if not isinstance(p, _Anchor)]
            for v in self.lookup.values()
            if any(isinstance(p, _Anchor) for p in v)
        }
        self._anchored_payloads = [[payload] for _, payload in self.anchored]
        # the year ranges of the placeholder phrases: a hit that is no phrase is looked up through them
        self._years = sorted(
            {(int(m[1]), int(m[2])) for key in self.lookup if "<year:" in key for m in YEAR_RE.finditer(key)}
        )

    def _payloads(self, raw: str) -> list[Any]:
        found = self._seen.get(raw)
        if found is None:
            key = normalize(raw)
            found = self.lookup.get(key)
            if found is None:
                found = self._dated(key) if self._years else []
            if len(self._seen) < 100_000:
                self._seen[raw] = found
        return found

    def _dated(self, key: str) -> list[Any]:
        """The payloads of a hit through a year placeholder ("in 2003" -> "in <year:1950-2029>"), with the
        words matched as their phrase; kept in ``lookup``, so that a hit gives a long-lived list."""
        toks = key.split(" ")
        for first, last in self._years:
            generic = [
                year_placeholder(first, last)
                if len(t) == 4 and t.isascii() and t.isdigit() and first <= int(t) <= last
                else t
                for t in toks
            ]
            generic_key = " ".join(generic)
            found = self.lookup.get(generic_key)
            if found is not None:
                out = [
                    dataclasses.replace(p, phrase=key)
                    if dataclasses.is_dataclass(p)
                    and not isinstance(p, type)
                    and normalize(str(getattr(p, "phrase", ""))) == generic_key
                    else p
                    for p in found
                ]
                self.lookup[key] = out
                return out
        return []

    def finditer(self, low: str, pos: int = 0, endpos: int | None = None) -> list[tuple[int, int, list[Any]]]:
        """(start, end, payloads) of non-overlapping hits, leftmost-longest, in text order."""
        end = len(low) if endpos is None else endpos
        payloads, seen = self._payloads, self._seen
        hits = [
            (m.start(), m.end(), seen.get(g := m.group()) or payloads(g))
            for m in self.regex.finditer(low, pos, end)
        ]
        if self.punct_regex is not None:
            extra = [
                (m.start(), m.end(), payloads(m.group())) for m in self.punct_regex.finditer(low, pos, end)
            ]
            if extra:
                hits = _merge(hits, extra)
        if not self.anchored:
            return [h for h in hits if h[2]]
        unanchored = self._unanchored
        out: list[tuple[int, int, list[Any]]] = []
        last = -1
        for start, stop, found in hits:
            if start < last:
                continue
            plain = unanchored.get(id(found))
            if plain is not None:
                best = None
                for p in found:
                    if isinstance(p, _Anchor):
                        rx, _ = self.anchored[p.index]
                        m = rx.match(low, start, end)
                        if m and m.end() > stop and (best is None or m.end() > best[1]):
                            best = (start, m.end(), self._anchored_payloads[p.index])
                if best is not None:
                    out.append(best)
                    last = best[1]
                    continue
                found = plain
            if found:
                out.append((start, stop, found))
                last = stop
        return out

    def hits_between(self, low: str, pos: int, stop: int) -> list[tuple[int, int, list[Any]]]:
        """The hits of ``finditer(low)`` that start in [pos, stop), for a ``pos`` that no hit of it runs
        over (the caller's guarantee): the scan starts at ``pos`` and ends at the first hit past ``stop``,
        so text outside the range costs nothing. (From a point that no hit runs over, the scan finds the
        same hits: each step takes the leftmost-longest hit from where the last one ended.)"""
        if self.punct_regex is not None or self.anchored:  # merged/anchored hits: no partial scan
            return [h for h in self.finditer(low) if pos <= h[0] < stop]
        payloads = self._payloads
        out = []
        for m in self.regex.finditer(low, pos):
            if m.start() >= stop:
                break
            found = payloads(m.group())
            if found:
                out.append((m.start(), m.end(), found))
        return out

    def matches_only_words(self) -> bool:
        """Whether every hit is made of word characters, white space and hyphens only (no punctuation
        token in any phrase): a hit then never holds any other character."""
        return self.punct_regex is None and all(
            WORD_RE.fullmatch(tok) for key in self.lookup for tok in key.split(" ")
        )

    def __getstate__(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in ("anchored", "lookup", "regex", "punct_regex")}
        state["_seen"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._index()


def _merge(
    a: list[tuple[int, int, list[Any]]], b: list[tuple[int, int, list[Any]]]
) -> list[tuple[int, int, list[Any]]]:
    """Two hit lists in text order as one, leftmost-longest, without overlaps."""
    out: list[tuple[int, int, list[Any]]] = []
    last = -1
    for hit in sorted(a + b, key=lambda h: (h[0], -h[1])):
        if hit[0] >= last:
            out.append(hit)
            last = hit[1]
    return out
