"""ConText (Harkema et al. 2009), our own implementation: trigger rules are data (``rules.json``).

A trigger modifies targets in its own sentence: forward triggers the targets after them, backward
triggers those before them, bidirectional both, within ``max_scope`` words. Scope ends at a
TERMINATE phrase ("but", "however", ";", "which", ...) and at a trigger of another category, so
the nearest trigger wins ("no effusion, possible pneumothorax"). PSEUDO phrases ("no change",
"not only", "no increase in") are matched like triggers, longest first, so the shorter trigger
inside them never fires. Rules may be limited to sections: "evaluate for" in the indication is
hypothetical, and a header such as "CLINICAL HISTORY:" is never inside a sentence, so it is never
a history trigger.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from processors.nlp.matching import word_count
from processors.nlp.types import ContextResult

DATA = Path(__file__).with_name("rules.json")

NEGATED = "NEGATED_EXISTENCE"
POSSIBLE = "POSSIBLE_EXISTENCE"
PROBABLE = "PROBABLE_EXISTENCE"
HISTORICAL = "HISTORICAL"
HYPOTHETICAL = "HYPOTHETICAL"
FAMILY = "FAMILY"
PSEUDO = "PSEUDO"
TERMINATE = "TERMINATE"
MODIFIER_CATEGORIES = (NEGATED, POSSIBLE, PROBABLE, HISTORICAL, HYPOTHETICAL, FAMILY)


@dataclass(frozen=True, slots=True)
class Rule:
    phrase: str
    category: str
    direction: str  # forward | backward | bidirectional | pseudo | terminate
    max_scope: int
    sections: frozenset[str] | None = None
    not_sections: frozenset[str] | None = None
    applies_to: frozenset[str] | None = None  # TERMINATE only: the categories it ends (None: all)

    def applies_in(self, section: str) -> bool:
        if self.sections is not None and section not in self.sections:
            return False
        return not (self.not_sections is not None and section in self.not_sections)


@dataclass(frozen=True, slots=True)
class Trigger:
    start: int
    end: int
    rules: tuple[Rule, ...]  # the rules of this span that apply in the sentence's section

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(r.category for r in self.rules)


def load_rules(data_file: Path = DATA) -> list[Rule]:
    data = json.loads(data_file.read_text())
    defaults: dict[str, int] = data.get("defaults", {})
    rules = []
    for r in data["rules"]:
        secs = r.get("sections")
        nots = r.get("not_sections")
        only = r.get("applies_to")
        rules.append(
            Rule(
                phrase=r["phrase"],
                category=r["category"],
                direction=r["direction"],
                max_scope=int(r.get("max_scope", defaults.get(r["category"], 10))),
                sections=frozenset(secs) if secs else None,
                not_sections=frozenset(nots) if nots else None,
                applies_to=frozenset(only) if only else None,
            )
        )
    return rules


@lru_cache(maxsize=1)
def default_rules() -> tuple[Rule, ...]:
    return tuple(load_rules())


# categories that do not end each other's scope (the stronger of both applies: possible over probable)
_FAMILY = {POSSIBLE: frozenset({POSSIBLE, PROBABLE}), PROBABLE: frozenset({POSSIBLE, PROBABLE})}


def _blocked(low: str, a: int, b: int, category: str, triggers: Sequence[Trigger]) -> bool:
    """Is there a terminator (for ``category``), or a trigger of another category, inside [a, b)?"""
    family = _FAMILY.get(category, frozenset({category}))
    for t in triggers:
        if t.start >= b:
            break
        if t.start < a:
            continue
        cats = t.categories
        if TERMINATE in cats:
            if any(
                r.category == TERMINATE and (r.applies_to is None or category in r.applies_to)
                for r in t.rules
            ):
                return True
            cats = cats - {TERMINATE}
            if not cats:
                continue
        if not (cats & family or PSEUDO in cats):
            return True
    return False


def assert_target(low: str, start: int, end: int, triggers: Sequence[Trigger]) -> ContextResult:
    """The ConText status of the target ``low[start:end]`` given its sentence's triggers (text order)."""
    found: dict[str, str] = {}
    for trig in triggers:
        for rule in trig.rules:
            cat = rule.category
            if cat in (PSEUDO, TERMINATE) or cat in found:
                continue
            if trig.end <= start and rule.direction in ("forward", "bidirectional"):
                a, b = trig.end, start
            elif trig.start >= end and rule.direction in ("backward", "bidirectional"):
                a, b = end, trig.start
            else:
                continue
            if word_count(low, a, b) > rule.max_scope or _blocked(low, a, b, cat, triggers):
                continue
            found[cat] = rule.phrase
    res = ContextResult()
    if not found:
        return res
    res.negated = NEGATED in found
    res.historical = HISTORICAL in found
    res.hypothetical = HYPOTHETICAL in found
    if FAMILY in found:
        res.experiencer = "other"
    if POSSIBLE in found:
        res.certainty = "possible"
    elif PROBABLE in found:
        res.certainty = "probable"
    res.uncertain = res.certainty != "definite"
    res.triggers = [f"{cat}:{phrase}" for cat, phrase in found.items()]
    return res
