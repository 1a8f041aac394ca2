"""Section splitting: radiology headers kept as data (``headers.json``).

A header is a known title at the start of a line followed by ``:`` / ``.`` / ``-`` or alone on its
line, or a known title with a colon mid-line right after a sentence end ("... normal. IMPRESSION: ...").
Text before the first header (or a report without headers) is the section ``other``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from processors.nlp.matching import lower_same_length, normalize, trie_pattern
from processors.nlp.types import Section

DATA = Path(__file__).with_name("headers.json")


class SectionSplitter:
    def __init__(self, data_file: Path = DATA):
        data = json.loads(data_file.read_text())
        self.name_of: dict[str, str] = {}
        for sec in data["sections"]:
            for title in sec["titles"]:
                self.name_of[normalize(title)] = sec["name"]
        alt = trie_pattern(self.name_of)  # matched on lower-cased text
        self.regex = re.compile(
            r"(?m)^[ \t]*(?P<a>" + alt + r")[ \t]*(?:[:.\-](?![\w.])[ \t]*|(?=\r?\n|$))"
            r"|(?<=[.!?;])[ \t]+(?P<b>" + alt + r")[ \t]*:[ \t]*"
        )

    def split(self, text: str, low: str | None = None) -> list[Section]:
        """Sections of ``text`` (``low``: its lower-cased copy, if the caller has one)."""
        low = lower_same_length(text) if low is None else low
        heads: list[tuple[int, int, str, str]] = []
        for m in self.regex.finditer(low):
            group = "a" if m.start("a") >= 0 else "b"
            start, stop = m.span(group)
            heads.append((start, m.end(), text[start:stop], self.name_of[normalize(low[start:stop])]))
        sections: list[Section] = []
        first = heads[0][0] if heads else len(text)
        if text[:first].strip():
            sections.append(Section("other", "", 0, _rstrip(text, 0, first), 0))
        for i, (start, body, title, name) in enumerate(heads):
            end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
            sections.append(Section(name, title, start, _rstrip(text, body, end), body))
        return sections


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


@lru_cache(maxsize=1)
def default_splitter() -> SectionSplitter:
    return SectionSplitter()


def split_sections(text: str) -> list[Section]:
    return default_splitter().split(text)
