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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TOKEN_RE = re.compile(r"\w+|[^\w\s-]")
WORD_RE = re.compile(r"\w+")
_WORD_SEP = r"(?:\s*-\s*|\s+)"
_PUNCT_SEP = r"\s*"


def normalize(phrase: str) -> str:
    """The lookup key of a phrase or of a matched span: lower-case tokens joined by one space."""
    return " ".join(TOKEN_RE.findall(phrase.lower()))


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
_ATOM_RE = {_SEP_W: _WORD_SEP, _SEP_P: _PUNCT_SEP, _END_W: r"(?!\w)", _END_P: ""}


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _atoms(tokens: list[str]) -> list[str]:
    """A phrase as a sequence of trie atoms: its characters, separators between tokens, an end mark."""
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if i:
            out.append(_SEP_W if _is_word(tokens[i - 1][-1]) and _is_word(tok[0]) else _SEP_P)
        out.extend(tok)
    out.append(_END_W if _is_word(tokens[-1][-1]) else _END_P)
    return out


_Trie = dict[str, "_Trie"]


def _branch(node: _Trie) -> str:
    # ends last, so that a longer phrase is preferred; separators before characters
    keys = sorted(node, key=lambda a: (a in (_END_W, _END_P), a not in (_SEP_W, _SEP_P), a))
    alts = [_ATOM_RE.get(a, re.escape(a)) + _branch(node[a]) for a in keys]
    if not alts:
        return ""
    if len(alts) == 1:
        return alts[0]
    return "(?:" + "|".join(alts) + ")"


def starts_with_word(phrase: str) -> bool:
    toks = TOKEN_RE.findall(phrase.lower())
    return bool(toks) and _is_word(toks[0][0])


def trie_pattern(phrases: Iterable[str], word_start: bool = True) -> str:
    """A regex matching any of ``phrases`` (token-wise, longest first) on lower-cased text.

    The trie is built over characters, so at each position the engine tests at most one branch per
    possible next character instead of one per phrase.
    """
    root: _Trie = {}
    for phrase in phrases:
        toks = TOKEN_RE.findall(phrase.lower())
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

    def _payloads(self, raw: str) -> list[Any]:
        found = self._seen.get(raw)
        if found is None:
            found = self.lookup.get(normalize(raw), [])
            if len(self._seen) < 100_000:
                self._seen[raw] = found
        return found

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
