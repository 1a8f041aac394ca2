"""Section splitting: radiology headers kept as data (``headers.json``).

A header is a known title at the start of a line followed by ``:`` / ``.`` / ``-`` or alone on its
line (optionally set off with asterisks: ``***ADDENDUM***``), or a known title with a colon mid-line
right after a sentence end ("... normal. IMPRESSION: ..."). Titles of a ``qualified`` section may carry
a number, date or parenthesised note at the start of a line ("ADDENDUM #2:", "ADDENDUM (12/01/2026):").
A header inside a line that lost its line breaks ("INDICATION: cough  FINDINGS: clear") is a known title
in capitals right before a colon. Text before the first header (or a report without headers) is the section
``other``.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from processors.nlp.matching import lower_same_length, normalize, trie_pattern
from processors.nlp.types import Section

DATA = Path(__file__).with_name("headers.json")


class SectionSplitter:
    def __init__(self, data_file: Path = DATA):
        data = json.loads(data_file.read_text())
        self.name_of: dict[str, str] = {}
        qualified: list[str] = []
        for sec in data["sections"]:
            for title in sec["titles"]:
                self.name_of[normalize(title)] = sec["name"]
                if sec.get("qualified"):
                    qualified.append(title)
        self._names: dict[str, str] = {}  # a matched title as written -> its section name
        alt = trie_pattern(self.name_of)  # matched on lower-cased text
        # a title ending right at a colon, tried from a word start (a header inside a flattened line)
        self.inline = re.compile("(?:" + alt + r")[ \t]*:")
        end = r"[ \t]*\**[ \t]*(?:[:.\-](?![\w.])\**[ \t]*|(?=\r?\n|$))"
        self.regex = re.compile(
            r"(?m)^[ \t]*\**[ \t]*(?:(?P<q>" + trie_pattern(qualified) + r")(?P<n>" + _QUALIFIER + r")"
            r"|(?P<a>" + alt + r"))" + end + r"|(?<=[.!?;])[ \t]+(?P<b>" + alt + r")[ \t]*:[ \t]*"
        )

    def _matches(self, low: str) -> Iterator[re.Match[str]]:
        """The matches of ``self.regex.finditer(low)``, trying the regex only where one can start (re
        would try its alternation at every position)."""
        cand = 0
        while True:
            m = self.regex.match(low, cand)  # "^" and the look-behind see the text before ``cand``
            if m is not None:
                yield m
            # the next position after a trigger, where the search goes on (matches are never empty)
            t = _TRIGGER.search(low, m.end() - 1 if m is not None else cand)
            if t is None:
                return
            cand = t.start() + 1

    def split(self, text: str, low: str | None = None) -> list[Section]:
        """Sections of ``text`` (``low``: its lower-cased copy, if the caller has one)."""
        low = lower_same_length(text) if low is None else low
        heads: list[tuple[int, int, str, str]] = []
        for m in self._matches(low):
            group = _GROUP[m.lastgroup or ""]  # the branch that matched
            start, stop = m.span(group)
            raw = low[start:stop]
            name = self._names.get(raw)
            if name is None:
                name = self.name_of[normalize(raw)]
                if len(self._names) < 10_000:
                    self._names[raw] = name
            title_end = m.end("n") if group == "q" else stop
            head = m.start()  # the header with its asterisks, without the blanks before it
            while low[head] in " \t":
                head += 1
            heads.append((head, m.end(), text[start:title_end], name))
        # a colon that no header found so far holds
        if low.count(":") > sum(low.count(":", h[0], h[1]) for h in heads):
            self._inline_heads(text, low, heads)
        sections: list[Section] = []
        first = heads[0][0] if heads else len(text)
        if text[:first].strip():
            sections.append(Section("other", "", 0, _rstrip(text, 0, first), 0))
        for i, (start, body, title, name) in enumerate(heads):
            end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
            sections.append(Section(name, title, start, _rstrip(text, body, end), body))
        return sections

    def _inline_head(
        self, text: str, low: str, colon: int, heads: list[tuple[int, int, str, str]], taken: set[int]
    ) -> bool:
        """Add the header that ends at ``colon`` inside a line, if there is one."""
        line = low.rfind("\n", 0, colon) + 1
        # word starts before the colon, farthest first (the longest title wins)
        for m in _WORD.finditer(low, max(line, colon - _TITLE_CHARS), colon):
            st = m.start()
            if st == line or low[st - 1] not in " \t" or not low[line:st].strip():
                continue
            if self.inline.fullmatch(low, st, colon + 1) is None:
                continue
            raw = text[st:colon].rstrip()
            if not raw.isupper():
                continue
            body = colon + 1
            while body < len(low) and low[body] in " \t":
                body += 1
            name = self.name_of[normalize(low[st:colon])]
            before = max((h for h in heads if h[0] < st), default=None)
            # the preamble (exam, history, comparison, ...) comes before the findings: a title of it after
            # them is more likely running text than a header ("... CHEST  COMPARISON: THERE IS A MASS" in
            # a report in capitals)
            late = before is not None and before[3] in _BODY and name in _PREAMBLE
            if body in taken or late:
                return False
            heads.append((st, body, raw, name))
            return True
        return False

    def _inline_heads(self, text: str, low: str, heads: list[tuple[int, int, str, str]]) -> None:
        """Add the headers inside a line that lost its line breaks ("INDICATION: cough  FINDINGS: clear"):
        a known title in capitals right before a colon, after a blank ("FINDINGS:"). A capitalised title
        inside a line ("... Comparison: there is ...") is not taken: a wrong header there would move
        findings into a section that is not read for them. The headers the line-start pattern found stay."""
        taken = {h[1] for h in heads}
        starts = [h[0] for h in heads]  # in text order, as the line-start pattern found them
        colon = low.find(":")
        added = False
        while colon >= 0:
            k = bisect.bisect_right(starts, colon) - 1
            last = colon - 1
            while last >= 0 and text[last] in " \t":
                last -= 1
            # not the colon of a header found already, and a title in capitals right before it
            if (k < 0 or heads[k][1] <= colon) and last >= 0 and "A" <= text[last] <= "Z":
                added = self._inline_head(text, low, colon, heads, taken) or added
            colon = low.find(":", colon + 1)
        if added:
            heads.sort()


_WORD = re.compile(r"\w+")
# the last group a match closes -> its branch's title group (a qualified title closes "n" after "q")
_GROUP = {"n": "q", "a": "a", "b": "b"}
_BODY = frozenset({"findings", "impression"})
_PREAMBLE = frozenset({"exam", "history", "past_history", "family_history", "technique", "comparison"})
_TITLE_CHARS = 48  # the longest title with its blanks ("past medical and surgical history")


# a header match starts at the text start, after a line break, or right after sentence-final punctuation
_TRIGGER = re.compile(r"[\n.!?;]")


# after a qualified title: " #2", " 2", " 12/01/2026", " (12/01/2026 by Dr. A)"
_QUALIFIER = r"[ \t]*(?:#[ \t]*\d{1,3}|\d{1,4}(?:[/.\-]\d{1,4}){0,2}|\([^()\n]{1,60}\))"


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


@lru_cache(maxsize=1)
def default_splitter() -> SectionSplitter:
    return SectionSplitter()


def split_sections(text: str) -> list[Section]:
    return default_splitter().split(text)


def is_bare_title(title: str, name: str) -> bool:
    """``title`` is a bare header word of section ``name`` in the vocabulary ("FINDINGS", "Impression"),
    not a qualified header ("ADDENDUM (01/17/2024 by Dr. A)") that may carry dates and names."""
    return default_splitter().name_of.get(normalize(title)) == name
