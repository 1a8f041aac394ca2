"""Fast phrase matching: a trie of token sequences compiled into one regular expression.

Python's ``re`` tries the branches of an alternation one by one, so a plain ``a|b|c`` over a
thousand phrases is slow. Folding the phrases into a trie gives a pattern whose branches
start with distinct tokens, so one pass over a report finds every phrase (leftmost, longest).
Phrases are matched on lower-cased text, token by token: any run of white space or a hyphen
separates two word tokens ("plate-like" = "plate like"); punctuation tokens ("s/p", "r/o")
may be glued to their neighbours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

TOKEN_RE = re.compile(r"\w+|[^\w\s-]")
WORD_RE = re.compile(r"\w+")
_WORD_SEP = r"(?:\s*-\s*|\s+)"
_PUNCT_SEP = r"\s*"


def normalize(phrase: str) -> str:
    """The lookup key of a phrase or of a matched span: lower-case tokens joined by one space."""
    return " ".join(TOKEN_RE.findall(phrase.lower()))


def lower_same_length(text: str) -> str:
    """``text.lower()``, keeping every offset valid (a few Unicode letters change length)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _sep(prev: str, tok: str) -> str:
    if prev[-1].isalnum() or prev[-1] == "_":
        return _WORD_SEP if (tok[0].isalnum() or tok[0] == "_") else _PUNCT_SEP
    return _PUNCT_SEP


def _end(tok: str) -> str:
    return r"(?!\w)" if (tok[-1].isalnum() or tok[-1] == "_") else ""


_Trie = dict[str, "_Trie"]
_LEAF = ""


def _branch(node: _Trie, prev: str | None) -> str:
    alts: list[str] = []
    for tok in sorted((t for t in node if t != _LEAF), key=lambda t: (-len(t), t)):
        lead = "" if prev is None else _sep(prev, tok)
        alts.append(lead + re.escape(tok) + _branch(node[tok], tok))
    if _LEAF in node and prev is not None:
        alts.append(_end(prev))
    if len(alts) == 1:
        return alts[0]
    return "(?:" + "|".join(alts) + ")"


def trie_pattern(phrases: Iterable[str]) -> str:
    """A regex matching any of ``phrases`` (token-wise, longest first) on lower-cased text."""
    root: _Trie = {}
    for phrase in phrases:
        toks = TOKEN_RE.findall(phrase.lower())
        if not toks:
            continue
        node = root
        for tok in toks:
            node = node.setdefault(tok, {})
        node[_LEAF] = {}
    if not root:
        return r"(?!x)x"
    return r"(?<!\w)" + _branch(root, None)


class PhraseMatcher:
    """Find phrases (and optional extra regexes) in lower-cased text; map each hit to its payloads."""

    def __init__(self, phrases: dict[str, list[object]], patterns: list[tuple[str, object]] | None = None):
        self.lookup: dict[str, list[object]] = {}
        for phrase, payloads in phrases.items():
            self.lookup.setdefault(normalize(phrase), []).extend(payloads)
        self.regex = re.compile(trie_pattern(phrases))
        self.patterns = [(re.compile(p), payload) for p, payload in (patterns or [])]

    def finditer(self, low: str, pos: int = 0, endpos: int | None = None) -> Iterator[tuple[int, int, list[object]]]:
        """(start, end, payloads) of non-overlapping hits, leftmost-longest, in text order."""
        end = len(low) if endpos is None else endpos
        hits = [(m.start(), m.end(), self.lookup.get(normalize(m.group()), []))
                for m in self.regex.finditer(low, pos, end)]
        if self.patterns:
            for rx, payload in self.patterns:
                hits.extend((m.start(), m.end(), [payload]) for m in rx.finditer(low, pos, end))
            hits.sort(key=lambda h: (h[0], h[0] - h[1]))
            kept: list[tuple[int, int, list[object]]] = []
            last = -1
            for h in hits:
                if h[0] >= last:
                    kept.append(h)
                    last = h[1]
            hits = kept
        for h in hits:
            if h[2]:
                yield h


def word_count(low: str, start: int, end: int) -> int:
    """Number of word tokens in ``low[start:end]``."""
    if end <= start:
        return 0
    return len(WORD_RE.findall(low, start, end))
