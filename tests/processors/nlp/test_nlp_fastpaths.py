"""The sentence and section splitters try their regex only where a match can start: the matches must be
exactly those of a plain ``finditer`` (the splitters' output, and so every NLP result, is unchanged)."""

from __future__ import annotations

import random

import pytest

from processors.nlp.sections import default_splitter
from processors.nlp.sentences import _CANDIDATE, _candidates

TEXTS = [
    "",
    "FINDINGS: No pneumothorax. Heart size normal.\nIMPRESSION: Normal chest.",
    "EXAM: CT CHEST\r\nHISTORY: cough.  \r\n\r\nFINDINGS:\n  Stable 4 mm. nodule.   \n\n\n"
    "IMPRESSION -\tNone.",
    "Lungs clear. IMPRESSION: no acute disease!  Dr. Smith was called at 3 p.m. ? pneumonia",
    "***ADDENDUM #2***\nSee above; IMPRESSION: unchanged.\n\t\n  1. Effusion. 2. Atelectasis.",
    "Wrapped line\ncontinues here.\nNext Line. \u2022 bullet item\n- dash item\n* star item",
]
ATOMS = [".", "!", "?", ";", ":", "\n", "\r\n", " ", "  ", "\t", "a", "B", "1", "-", "*", "(", '"', "Dr",
         "mm", "findings", "IMPRESSION", "History", "ADDENDUM #2", "\u2022", "The"]


def _random_texts(n: int) -> list[str]:
    rng = random.Random(14)
    return ["".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 30))) for _ in range(n)]


@pytest.mark.parametrize("text", TEXTS + _random_texts(3000))
def test_fast_candidate_search_finds_what_finditer_finds(text: str) -> None:
    spans = [(0, len(text)), (len(text) // 3, len(text)), (0, len(text) // 2)]
    for start, end in spans:
        want = [(m.span(), m.groupdict()) for m in _CANDIDATE.finditer(text, start, end)]
        assert [(m.span(), m.groupdict()) for m in _candidates(text, start, end)] == want
    sections = default_splitter()
    low = text.lower()
    want = [(m.span(), m.groupdict()) for m in sections.regex.finditer(low)]
    assert [(m.span(), m.groupdict()) for m in sections._matches(low)] == want
