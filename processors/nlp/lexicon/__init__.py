"""The finding lexicon (data): observation concepts with synonyms and a category
(``concepts.json``) and the attributes attached to them (``modifiers.json``: anatomy incl. lung
lobes, laterality, severity, change)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Concept:
    concept: str
    category: str


@dataclass(frozen=True, slots=True)
class Attribute:
    group: str  # anatomy | laterality | severity | change
    value: str


def load_concepts(
    data_file: Path = HERE / "concepts.json",
) -> tuple[dict[str, list[Concept]], list[tuple[str, Concept]]]:
    """(phrase -> concepts, [(regex, concept)]) of the concept lexicon."""
    data = json.loads(data_file.read_text())
    phrases: dict[str, list[Concept]] = {}
    patterns: list[tuple[str, Concept]] = []
    for c in data["concepts"]:
        concept = Concept(c["concept"], c["category"])
        for syn in c.get("synonyms", []):
            phrases.setdefault(syn, []).append(concept)
        for pat in c.get("patterns", []):
            patterns.append((pat, concept))
    return phrases, patterns


def load_attributes(data_file: Path = HERE / "modifiers.json") -> dict[str, list[Attribute]]:
    """phrase -> attributes (anatomy, laterality, severity, change)."""
    data = json.loads(data_file.read_text())
    phrases: dict[str, list[Attribute]] = {}
    for group in ("anatomy", "laterality", "severity", "change"):
        for value, syns in data[group].items():
            for syn in syns:
                phrases.setdefault(syn, []).append(Attribute(group, value))
    return phrases
