"""Section splitting: radiology headers kept as data (``headers.json``).

A header is a known title at the start of a line followed by ``:`` / ``.`` / ``-`` or alone on its
line (optionally set off with asterisks: ``***ADDENDUM***``), or a known title with a colon mid-line
right after a sentence end ("... normal. IMPRESSION: ..."). Titles of a ``qualified`` section may carry
a number, date or parenthesised note at the start of a line ("ADDENDUM #2:", "ADDENDUM (12/01/2026):").
Text before the first header (or a report without headers) is the section ``other``.
"""

from __future__ import annotations

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
        end = r"[ \t]*\**[ \t]*(?:[:.\-](?![\w.])\**[ \t]*|(?=\r?\n|$))"
        self.regex = re.compile(
            r"(?m)^[ \t]*\**[ \t]*(?:(?P<q>" + trie_pattern(qualified) + r")(?P<n>" + _QUALIFIER + r")"
            r"|(?P<a>" + alt + r"))" + end
            + r"|(?<=[.!?;])[ \t]+(?P<b>" + alt + r")[ \t]*:[ \t]*"
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
            group = next(g for g in ("q", "a", "b") if m.start(g) >= 0)
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
        sections: list[Section] = []
        first = heads[0][0] if heads else len(text)
        if text[:first].strip():
            sections.append(Section("other", "", 0, _rstrip(text, 0, first), 0))
        for i, (start, body, title, name) in enumerate(heads):
            end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
            sections.append(Section(name, title, start, _rstrip(text, body, end), body))
        return sections


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
