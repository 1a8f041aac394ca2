"""The finding lexicon (data): observation concepts with synonyms and a category
(``concepts.json``) and the attributes attached to them (``modifiers.json``: anatomy incl. lung
lobes, laterality, severity, change)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Concept:
    concept: str
    category: str
    # an episode that ends (an infection): "old"/"healed"/"sequela of" put it in the past, where they
    # leave a lasting condition ("old granulomatous disease") present
    episodic: bool = False


@dataclass(frozen=True, slots=True)
class Attribute:
    group: str  # anatomy | laterality | severity | change
    value: str


Anchored = tuple[list[str], str, Concept]


def load_concepts(
    data_file: Path = HERE / "concepts.json",
) -> tuple[dict[str, list[Concept]], list[Anchored]]:
    """(phrase -> concepts, [(anchor phrases, regex, concept)]) of the concept lexicon.

    A pattern is a regex for phrasings with gaps, tried only where one of its anchor phrases starts
    (the regex must match from the anchor's first character)."""
    data = json.loads(data_file.read_text())
    phrases: dict[str, list[Concept]] = {}
    patterns: list[Anchored] = []
    for c in data["concepts"]:
        concept = Concept(c["concept"], c["category"], bool(c.get("episodic", False)))
        for syn in c.get("synonyms", []):
            phrases.setdefault(syn, []).append(concept)
        for pat in c.get("patterns", []):
            patterns.append((list(pat["anchors"]), pat["regex"], concept))
    add_spelling_variants(phrases)
    return phrases, patterns


SPELLING = HERE / "spelling.json"


def spelling_pairs(data_file: Path = SPELLING) -> list[tuple[str, str]]:
    """(American, British) word parts (``spelling.json``)."""
    return [(a, b) for a, b in json.loads(data_file.read_text())["pairs"]]


def british_spelling(phrase: str, pairs: list[tuple[str, str]]) -> str:
    """``phrase`` with every American word part that ``pairs`` lists spelt the British way."""
    variant = phrase
    for american, british in pairs:
        if american in variant and british not in variant:
            variant = variant.replace(american, british)
    return variant


def add_spelling_variants(phrases: dict[str, list[Concept]], data_file: Path = SPELLING) -> None:
    """Add the British spelling of every phrase that has an American one (``spelling.json``), with the
    same concepts: "pulmonary edema" -> "pulmonary oedema" (a phrase already listed keeps its own)."""
    pairs = spelling_pairs(data_file)
    for phrase, concepts in list(phrases.items()):
        variant = british_spelling(phrase, pairs)
        if variant != phrase and variant not in phrases:
            phrases[variant] = list(concepts)


def load_attributes(data_file: Path = HERE / "modifiers.json") -> dict[str, list[Attribute]]:
    """phrase -> attributes (anatomy, laterality, severity, change)."""
    data = json.loads(data_file.read_text())
    phrases: dict[str, list[Attribute]] = {}
    for group in ("anatomy", "laterality", "severity", "change"):
        for value, syns in data[group].items():
            for syn in syns:
                phrases.setdefault(syn, []).append(Attribute(group, value))
    return phrases


def attribute_words(groups: tuple[str, ...], data_file: Path = HERE / "modifiers.json") -> frozenset[str]:
    """The words of the attribute phrases of ``groups`` ("left lower lobe" -> left, lower, lobe)."""
    data = json.loads(data_file.read_text())
    return frozenset(
        w for g in groups for syns in data[g].values() for syn in syns for w in re.findall(r"\w+", syn)
    )
