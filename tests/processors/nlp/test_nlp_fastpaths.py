"""The sentence and section splitters try their regex only where a match can start: the matches must be
exactly those of a plain ``finditer`` (the splitters' output, and so every NLP result, is unchanged)."""

from __future__ import annotations

import pickle
import random
import re

import pytest

from processors.nlp import analyze
from processors.nlp import context as ctx
from processors.nlp.assessments import extract_assessments
from processors.nlp.critical import find_communication
from processors.nlp.critical.extract import _VERB_KW
from processors.nlp.engine import get_engine
from processors.nlp.matching import lower_same_length, substring_pattern
from processors.nlp.measurements import extract_measurements
from processors.nlp.recommendations import extract_recommendations
from processors.nlp.recommendations.extract import _SENTENCE_KW
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


# ------------------------------------------------------------------ the speed work of issue 14, round 4
# Each shortcut must give what the plain code it replaced gives: these tests compare both on crafted and
# random texts (own sentences, no eval data).

KEYWORD_ATOMS = ["recommend", "be of ", "be ", "mo ", "month", "mos", "spoke", "spoken", "telephone",
                 "phone", "indicat", "contraindicated", "day", "today", " ", "  ", ".", "\n", "x", "m",
                 "o", "b", "e", "-", "follow-up", "year-old", "annual", "semi"]


def _keyword_texts(n: int) -> list[str]:
    rng = random.Random(41)
    return ["".join(rng.choice(KEYWORD_ATOMS) for _ in range(rng.randint(0, 25))) for _ in range(n)]


def _find_starts(text: str, words: tuple[str, ...]) -> set[int]:
    out = set()
    for w in words:
        i = text.find(w)
        while i != -1:
            out.add(i)
            i = text.find(w, i + 1)
    return out


def _regex_starts(rx: re.Pattern[str], text: str) -> set[int]:
    out = set()
    m = rx.search(text)
    while m is not None:
        out.add(m.start())
        m = rx.search(text, m.start() + 1)
    return out


@pytest.mark.parametrize("words", [_SENTENCE_KW, _VERB_KW, ("be", "be of ", "b"), ("a",), ()])
def test_substring_pattern_finds_every_start_that_find_finds(words: tuple[str, ...]) -> None:
    rx = re.compile(substring_pattern(words))
    for text in _keyword_texts(2000) + ["", "recommend follow-up in 3 months", "he spoke by telephone"]:
        assert _regex_starts(rx, text) == _find_starts(text, words), text


def test_recommendation_candidates_are_the_sentences_holding_a_keyword() -> None:
    text = ("Recommend CT in 3 months. No effusion. Follow-up is advised. The 45-year-old man. "
            "Correlate clinically. Lungs clear")
    spans = [(m.start(), m.end()) for m in re.finditer(r"[^.]+\.?", text)]
    low = text.lower()
    want = {si for si, (a, b) in enumerate(spans) if _find_starts(low[a:b], _SENTENCE_KW)}
    got = {r.sentence for r in extract_recommendations(text, spans)}
    assert got <= want  # a recommendation comes only from a sentence with a keyword
    assert {0, 2} <= got


EXTRACTOR_TEXTS = [
    "FINDINGS: 6 mm nodule in the right upper lobe, previously 4 mm. BI-RADS 4. LI-RADS LR-5 lesion.\n"
    "IMPRESSION: Recommend CT in 3 months per Fleischner. Findings discussed with Dr. Smith by telephone "
    "at 14:35 on 1/2/2024.",
    "Ä large İnfarct. Bosniak IIF cyst, 2.5 x 1.8 cm. TI-RADS TR4 nodule. Follow-up in 6-12 months.",
    "",
]


@pytest.mark.parametrize("text", EXTRACTOR_TEXTS)
def test_extractors_give_the_same_with_the_engines_lower_cased_text(text: str) -> None:
    low = lower_same_length(text)
    sents = [(m.start(), m.end()) for m in re.finditer(r"[^.\n]+", text)] or None
    assert extract_recommendations(text, sents, low=low) == extract_recommendations(text, sents)
    assert find_communication(text, sents, low=low) == find_communication(text, sents)
    assert extract_measurements(text, sents, low=low) == extract_measurements(text, sents)
    assert extract_assessments(text, low=low) == extract_assessments(text)


def test_anchored_hits_return_long_lived_payload_lists() -> None:
    """A hit of a phrasing with gaps gives the same list object every time (the engine caches what it
    derives from a payload list by its id, so a new list per hit would miss and fill that cache)."""
    engine = get_engine()
    text = "the heart is mildly enlarged. heart size normal."
    first = engine.matcher.finditer(text)
    again = engine.matcher.finditer(text)
    assert [h[:2] for h in first] == [h[:2] for h in again]
    assert all(a[2] is b[2] for a, b in zip(first, again, strict=True))
    assert any(h[1] - h[0] > len("heart") and text[h[0] :].startswith("heart is") for h in first)
    size = len(engine._split)
    for _ in range(3):
        engine.analyze("FINDINGS: The heart is mildly enlarged. The heart is moderately enlarged.")
    assert len(engine._split) <= size + 4
    clone = pickle.loads(pickle.dumps(engine.matcher))
    assert [(a, b, list(p)) for a, b, p in clone.finditer(text)] == [(a, b, list(p)) for a, b, p in first]


def test_trigger_kinds_sort_each_rule_where_a_walk_reads_it() -> None:
    """The precomputed views of a trigger's rules hold exactly what the walk used to filter per target."""
    by_phrase: dict[str, list[ctx.Rule]] = {}
    for rule in ctx.load_rules():
        by_phrase.setdefault(rule.phrase, []).append(rule)
    for rules in by_phrase.values():
        kind = ctx.TriggerKind.of(tuple(rules))
        modifiers = [r for r in rules if r.category in ctx.MODIFIER_CATEGORIES]
        forward = [r for r in modifiers if r.direction in ("forward", "bidirectional")]
        backward = [r for r in modifiers if r.direction in ("backward", "bidirectional")]
        assert (list(kind.forward_rules), list(kind.backward_rules)) == (forward, backward)
        terms = [r for r in rules if r.category == ctx.TERMINATE]
        assert kind.terminates_all == any(r.applies_to is None for r in terms)
        assert kind.modifies == frozenset(r.category for r in modifiers)
        assert kind.max_scope == max(r.max_scope for r in rules)


@pytest.mark.parametrize(
    ("sentence", "negated", "historical", "uncertain"),
    [
        ("No effusion.", True, False, False),  # forward trigger only: no walk after the target
        ("Effusion has resolved.", True, False, False),  # backward trigger only: no walk before it
        ("History of effusion, now resolved.", True, True, False),  # both sides
        ("Effusion, which may represent infection.", False, False, False),  # a terminator between
        ("Possible effusion; no pneumothorax.", False, False, True),
        ("Stable cardiomegaly. No effusion or pneumothorax.", False, False, False),  # a trigger elsewhere
    ],
)
def test_walks_skipped_or_not_give_the_status_of_the_first_finding(
    sentence: str, negated: bool, historical: bool, uncertain: bool
) -> None:
    f = analyze("FINDINGS: " + sentence).findings[0]
    assert (f.negated, f.historical, f.uncertain) == (negated, historical, uncertain)


ATTRIBUTE_ATOMS = ["left", "right", "lower", "upper", "lobe", "mild", "moderate", "new", "stable", "small",
                   "increased", "bilateral", "pleural", "effusion", "nodule", "opacity", "-", ":", ".", ",",
                   " ", "  ", "\n", "\n\n", "\t", "HISTORY:", "IMPRESSION:", "x", "2"]


def test_the_attribute_scan_of_a_range_finds_what_a_whole_scan_finds_there() -> None:
    """The engine scans attribute words only from the first to the last sentence with a finding, and
    starts there only when no attribute hit can run over the start ("left\\nLower lobe" can)."""
    engine = get_engine()
    rng = random.Random(15)
    checked = 0
    for _ in range(3000):
        atoms = (rng.choice(ATTRIBUTE_ATOMS) + rng.choice([" ", "", "\n"]) for _ in range(rng.randint(1, 25)))
        text = "".join(atoms)
        low = lower_same_length(text)
        whole = engine.attributes.finditer(low)
        word_starts = [m.start() for m in re.finditer(r"(?<!\S)\S", low)]  # where a sentence may start
        for start in sorted({0, len(low), *rng.sample(word_starts, min(4, len(word_starts)))}):
            end = rng.randint(start, len(low))
            assert engine._attribute_hits(low, start, end) == [h for h in whole if start <= h[0] < end], (
                text, start, end)
            checked += 1
    assert checked > 10_000
