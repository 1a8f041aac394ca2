"""Rule-based sentence splitting with offsets into the original text.

Splits after ``.``/``!``/``?`` followed by white space and a word, digit or bullet,
unless the period ends a known abbreviation (``abbreviations.json``), an initial, or a list
number ("1." starting a line or a sentence); at blank lines; at a single line break when the next
line starts with a capital, digit or bullet (a wrapped line starting lower-case continues); before
inline list numbers ("... lungs. 2. Stable ..." splits before "2.", "... biopsy 2) Large ..." before
"2)"); before a capitalised sentence opener ("No", "There", "Heart", ... in ``abbreviations.json``)
right after a lower-case word or number in a long sentence, and, in a section where no full stop ends a
sentence, before any capitalised word right after an all-lower-case word that is no function word ("...
no edema Patchy atelectasis"; not "history of Hodgkin disease"), in a dictated text that lost its full
stops. Semicolons stay inside the sentence (ConText treats them as scope terminators instead).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).with_name("abbreviations.json")

_BASE = (
    # sentence-final punctuation, then white space, then a capital, digit or bullet
    r"[.!?]+[\"')\]]*(?P<ws>[ \t]*\r?\n[ \t]*(?:\r?\n\s*)*|[ \t]+)(?=[\"'(\[]?[A-Za-z0-9\-*\u2022])"
    r"|(?P<blank>[ \t]*\r?\n(?:[ \t]*\r?\n)+\s*)"  # blank line
    r"|(?P<nl>[ \t]*\r?\n\s*)(?=[A-Z0-9\-*\u2022(])"  # line break
)
_CANDIDATE = re.compile(_BASE)
# inline list items "... biopsy 2) Large": tried at every blank, so only in texts that have a ")"
_CANDIDATE_ITEMS = re.compile(_BASE + r"|(?<=[\w,;:.])(?P<item>[ \t]+)(?=\d{1,2}\)[ \t]+[A-Za-z])")
# where a _CANDIDATE match can start: sentence-final punctuation, or the blanks before a line break. re
# tries an alternation at every position of the text; this one-character class it skips to in C
_TRIGGER = re.compile(r"[.!?\n]")
# a blank between a lower-case letter or digit and a capital or digit: where a sentence opener may follow
_GAP = re.compile(r"[a-z0-9]( +)[A-Z0-9]")
# only a sentence longer than this (characters) is looked at for lost full stops: one that ran on
_RUN_ON = 100
# the blanks where _TITLE may follow (led by the blank, a literal that re skips to in C; the word before
# it is tested in Python)
_TITLE_GAP = re.compile(r" +(?=[A-Z][a-z]|A +[a-z0-9]|\d{1,2} +[A-Z][a-z])")
# a capitalised word ("Patchy", not "COPD" or "McKay"), the article "A", or a list number before one
_TITLE = re.compile(r"(?:\d{1,2} +)?(?P<w>[A-Z][a-z]+(?![A-Za-z])|A(?= +[a-z0-9]))")


def _candidates(text: str, start: int, end: int) -> Iterator[re.Match[str]]:
    """The matches of ``_CANDIDATE.finditer(text, start, end)``, found by trying ``_CANDIDATE`` only
    where a match can start (same matches, a fraction of the cost on prose)."""
    pos = start
    while pos < end:
        t = _TRIGGER.search(text, pos, end)
        if t is None:
            return
        i = t.start()
        c = i
        if text[i] == "\n":  # the blank/line-break branches start at the blanks before the break
            if c - 1 >= pos and text[c - 1] == "\r":
                c -= 1
            while c - 1 >= pos and text[c - 1] in " \t":
                c -= 1
        m = _CANDIDATE.match(text, c, end)
        if m is None:
            pos = i + 1
            continue
        yield m
        pos = m.end()


class SentenceSplitter:
    def __init__(self, data_file: Path = DATA):
        data = json.loads(data_file.read_text())
        self.abbreviations = frozenset(data["abbreviations"])
        # "No. 2" (number) but "Pneumothorax: no. Effusion: small." (an answer that ends its sentence)
        self.before_numbers = frozenset(data.get("before_numbers", []))
        self.units = frozenset(data["units"])
        # "Pneumothorax? No.": a question answered right after it is one sentence (the answer reads back)
        answers = "|".join(re.escape(a).replace(r"\ ", r"[ \t]+") for a in data.get("answers", []))
        self.answer = re.compile(rf"(?i:{answers})(?![\w-])[ \t]*(?:[.;,!]|\r?\n|$)") if answers else None
        # a dictated report that lost its full stops: a capitalised sentence opener right after a
        # lower-case word or number ("... silhouette No pneumothorax ...") starts a new sentence
        # or a list number before a capitalised word ("... volumes 2 Borderline heart size")
        words = "|".join(map(re.escape, data["openers"]))
        self.openers = re.compile(r"(?:" + words + r")\b|\d{1,2} +[A-Z][a-z]")
        # at any length: a capitalised word after an all-lower-case word that is no function word
        title = data.get("title_case", {})
        self.not_after = frozenset(title.get("not_after", []))
        self.not_before = frozenset(title.get("not_before", []))

    def keep_after(self, words: Iterable[str]) -> None:
        """Never end a sentence at a capitalised word right after one of ``words`` (the last words of
        the ConText triggers that read forward: "no Pneumothorax", "rule out Pneumonia" is one sentence)."""
        self.not_after = self.not_after | {w.lower() for w in words}

    def split(self, text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
        """(start, end) of each sentence of ``text[start:end]``, stripped of surrounding white space."""
        end = len(text) if end is None else end
        spans: list[tuple[int, int]] = []
        sent_start = start
        if text.find(")", start, end) >= 0:
            matches: Iterable[re.Match[str]] = _CANDIDATE_ITEMS.finditer(text, start, end)
        else:
            matches = _candidates(text, start, end)
        stops = False  # whether a full stop (or ! ?) ended a sentence here
        for m in matches:
            if m.lastgroup == "ws":  # each branch has one group: the one that matched
                cut = m.start("ws")
                if not self._ends_sentence(
                    text, sent_start, cut, text[m.end()].islower(), text[m.end()].isdigit()
                ) or (text[cut - 1] == "?" and self._answered(text, m.end(), end)):
                    continue
                nxt = m.end()
                stops = True
            else:  # a blank line, a line break or an inline list item
                cut, nxt = m.start(), m.end()
            _add(spans, text, sent_start, cut)
            sent_start = nxt
        _add(spans, text, sent_start, end)
        # a text whose sentences end with full stops has not lost them: a capital inside one is a name
        title = (
            self._title_cuts(text, start, end) if not stops and _TITLE_GAP.search(text, start, end) else []
        )
        for i in range(len(spans) - 1, -1, -1):  # few sentences run on: test the length first
            a, b = spans[i]
            cuts = [c for c in title if a < c[0] and c[1] < b] if title else []
            if b - a > _RUN_ON:
                cuts = sorted(set(cuts + self._opener_cuts(text, a, b)))
            if cuts:
                spans[i : i + 1] = _split_at(text, a, b, cuts)
        return spans

    def _title_cuts(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """The blanks between an all-lower-case word and a capitalised word ("no edema Patchy
        atelectasis", "... seen A nodule", "... process 2 Mild"), unless the first is a function word
        ("history of Hodgkin") or the second a name."""
        cuts = []
        for m in _TITLE_GAP.finditer(text, start, end):
            gap = m.start()
            if gap == start or not ("a" <= text[gap - 1] <= "z"):
                continue
            nxt = _TITLE.match(text, m.end())
            if nxt is None or nxt.group("w") in self.not_before:
                continue
            w = gap
            while w > start and text[w - 1].isalpha():
                w -= 1
            prev = text[w:gap]
            if (
                len(prev) > 1
                and prev.islower()
                and (w == start or not (text[w - 1].isalnum() or text[w - 1] in "-'/"))
                and prev not in self.not_after
            ):
                cuts.append((gap, m.end()))
        return cuts

    def _opener_cuts(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """The blanks between a lower-case word or number and a capitalised opener. A blank after a
        lower-case letter before a capital or digit is rare in prose, so few candidates reach the word
        test (one pass of a one-class-per-side regex in C)."""
        cuts = []
        for m in _GAP.finditer(text, start, end):
            if self.openers.match(text, m.end(1)):
                cuts.append((m.start(1), m.end(1)))
        return cuts

    def _answered(self, text: str, pos: int, end: int) -> bool:
        """Whether an answer that ends its clause starts at ``pos`` ("Pneumothorax? No.")."""
        return self.answer is not None and self.answer.match(text, pos, end) is not None

    def _ends_sentence(
        self, text: str, sent_start: int, cut: int, lower_next: bool = False, digit_next: bool = False
    ) -> bool:
        if text[cut - 1] in "?!":
            return not lower_next  # "? pneumonia" in an indication is a question mark, not an end
        if text[cut - 1] != "." and text[cut - 1] not in "\"')]":
            return True
        # the token before the final punctuation
        end = cut
        while end > sent_start and text[end - 1] in "\"')].!?":
            end -= 1
        begin = end
        while begin > sent_start and (text[begin - 1].isalnum() or text[begin - 1] in "./_"):
            begin -= 1
        tok = text[begin:end]
        if not tok:
            return True
        low = tok.lower().rstrip(".")
        if low in self.abbreviations:
            return False
        if low in self.before_numbers:
            return not digit_next
        if len(tok) == 1 and tok.isalpha():  # an initial: "J. Smith"
            return False
        if lower_next and (low in self.units or low.replace(".", "").isdigit()):
            return False  # "4 mm. nodule": a unit or number before a lower-case word
        # a list number "1." at a sentence start
        return not (tok.isdigit() and len(tok) <= 2 and not text[sent_start:begin].strip())


def _split_at(text: str, a: int, b: int, cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for x, y in cuts:
        if a <= x and y <= b:
            _add(out, text, a, x)
            a = y
    _add(out, text, a, b)
    return out


def _add(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))


@lru_cache(maxsize=1)
def default_splitter() -> SentenceSplitter:
    return SentenceSplitter()


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    return default_splitter().split(text, start, end)
