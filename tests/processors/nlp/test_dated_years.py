"""Dated episodes through a year placeholder: "in <year:1950-2029>" is one phrase of the matcher, not
eighty, and reads exactly as the phrases listed year by year did (a year outside the range, a number
that is no year, a decade "1970s" is no dated episode; the trigger names the year matched)."""

from __future__ import annotations

import pickle
import re

import pytest

from processors.nlp import assert_term
from processors.nlp.context import load_rules
from processors.nlp.matching import YEAR_RE, PhraseMatcher, year_pattern, year_placeholder


@pytest.mark.parametrize(
    ("sentence", "target", "trigger"),
    [
        ("DVT in 1977.", "DVT", "HISTORICAL:in 1977"),
        ("Pneumonia in March of 1977, treated with antibiotics.", "Pneumonia", "HISTORICAL:in march of 1977"),
        ("Stroke in Sept 2004 without residual deficit.", "Stroke", "HISTORICAL:in sept 2004"),
        ("Asthma since 1950.", "Asthma", "CHRONIC:since 1950"),
        ("Asthma since 2029.", "Asthma", "CHRONIC:since 2029"),
    ],
)
def test_a_year_in_the_range_dates_an_episode(sentence: str, target: str, trigger: str) -> None:
    res = assert_term(sentence, target)
    assert res.historical
    assert res.triggers == [trigger]


@pytest.mark.parametrize(
    ("sentence", "target"),
    [
        ("DVT in 1890.", "DVT"),  # before the range
        ("DVT in 2030.", "DVT"),  # after it
        ("Asthma since 1949.", "Asthma"),
        ("Follow-up of the nodule in 2 weeks.", "nodule"),  # a number, not a year
        ("Asthma since May 1977.", "Asthma"),  # "since" takes the year alone
        ("Arthritis in 1970s.", "Arthritis"),  # a decade, not the year 1970
        ("Fracture in 19770.", "Fracture"),
        ("DVT in 1977a.", "DVT"),
    ],
)
def test_no_dated_episode_without_a_year_of_the_range(sentence: str, target: str) -> None:
    res = assert_term(sentence, target)
    assert not res.historical
    assert not any(t.startswith(("HISTORICAL:in", "CHRONIC:since")) for t in res.triggers)


def test_only_ascii_digits_make_a_year() -> None:
    res = assert_term("DVT in \u0661\u0669\u0667\u0667.", "DVT")  # Arabic-Indic digits: \d, but no year
    assert res.triggers == []


def test_the_dated_phrases_do_not_grow_with_the_years() -> None:
    rules = load_rules()
    dated = {r.phrase for r in rules if r.phrase.startswith(("in ", "since ")) and "<year:" in r.phrase}
    # lead "in": year, 12 + 12 months + year, 12 months of year; "since": year
    assert len(dated) == 1 + 24 + 12 + 1
    # no phrase spells a year out (a phrase per year was what made the matcher big)
    assert not [r.phrase for r in rules if re.search(r"\b(?:19[5-9]|20[0-2])\d\b", YEAR_RE.sub("", r.phrase))]


def test_year_pattern_matches_exactly_the_range() -> None:
    for first, last in ((1950, 2029), (1995, 2004), (1949, 2031), (1987, 1987), (1000, 9999)):
        rx = re.compile(year_pattern(first, last))
        assert {y for y in range(1000, 10000) if rx.fullmatch(str(y))} == set(range(first, last + 1))
    with pytest.raises(ValueError):
        year_placeholder(950, 2029)


def test_a_phrase_that_spells_the_year_out_keeps_its_own_payloads() -> None:
    year = year_placeholder(1950, 2029)
    m = PhraseMatcher(
        {f"in {year}": ["dated"], "in 2003": ["own"], "in 2004 or so": ["longer"], "in": ["in"]}
    )
    low = "in 2003. in 2004 or so. in 2005. in 2030. in 20050. in 1999-2000"
    hits = [(low[a:b], p) for a, b, p in m.finditer(low)]
    assert hits == [
        ("in 2003", ["own"]),
        ("in 2004 or so", ["longer"]),
        ("in 2005", ["dated"]),
        ("in", ["in"]),
        ("in", ["in"]),
        ("in 1999", ["dated"]),
    ]
    # a hit gives one long-lived list (callers cache by its id), also after pickling
    assert m.finditer("in 2005")[0][2] is m.finditer("in 2005")[0][2]
    again = pickle.loads(pickle.dumps(m))
    assert [p for _, _, p in again.finditer("in 1960 in 2003")] == [["dated"], ["own"]]
