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

from processors.nlp.types import Section

DATA = Path(__file__).with_name("headers.json")


class SectionSplitter:
    def __init__(self, data_file: Path = DATA):
        data = json.loads(data_file.read_text())
        self.name_of: dict[str, str] = {}
        for sec in data["sections"]:
            for title in sec["titles"]:
                self.name_of[_key(title)] = sec["name"]
        titles = sorted(self.name_of, key=len, reverse=True)
        alt = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in titles)
        self.regex = re.compile(
            r"(?:(?<=\n)|^)[ \t]*(?P<a>" + alt + r")[ \t]*(?:[:.\-](?![\w.])[ \t]*|(?=\r?\n|$))"
            r"|(?<=[.!?;])[ \t]+(?P<b>" + alt + r")[ \t]*:[ \t]*",
            re.IGNORECASE,
        )

    def split(self, text: str) -> list[Section]:
        heads: list[tuple[int, int, str, str]] = []
        for m in self.regex.finditer(text):
            title = m.group("a") or m.group("b")
            start = m.start("a") if m.group("a") else m.start("b")
            # a colon-less header at line start must be alone on its line or upper case ("FINDINGS No ...")
            heads.append((start, m.end(), title, self.name_of[_key(title)]))
        sections: list[Section] = []
        first = heads[0][0] if heads else len(text)
        if text[:first].strip():
            sections.append(Section("other", "", 0, _rstrip(text, 0, first), 0))
        for i, (start, body, title, name) in enumerate(heads):
            end = heads[i + 1][0] if i + 1 < len(heads) else len(text)
            sections.append(Section(name, title, start, _rstrip(text, body, end), body))
        return sections


def _key(title: str) -> str:
    return " ".join(title.lower().split())


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


@lru_cache(maxsize=1)
def default_splitter() -> SectionSplitter:
    return SectionSplitter()


def split_sections(text: str) -> list[Section]:
    return default_splitter().split(text)
