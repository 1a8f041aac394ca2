"""What the textdeid tests share: a key, a patient, the spans found, the tag-mode text, and the check that
a word is kept with the NLP's findings unchanged (concept, negated, uncertain, historical, section, text:
the key of `bench/textdeid_eval.py --clinical`)."""

from __future__ import annotations

from processors.nlp import analyze
from processors.textdeid import TextDeidOptions, deidentify, detect

KEY = b"unit-test-key-0123456789"
PATIENT = "psn-0123456789abcdef0123456789abcdef"


def found(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start : s.end]) for s in detect(text)]


def removed(text: str) -> str:
    """The text in tag mode."""
    return deidentify(text, key=KEY, patient=PATIENT, options=TextDeidOptions(mode="tag")).text


def nlp_findings(text: str) -> list[tuple[object, ...]]:
    return sorted(
        (f.concept, f.negated, f.uncertain, f.historical, f.section, f.text) for f in analyze(text).findings
    )


def assert_kept(text: str, word: str) -> None:
    """No span covers the word, it is left in both modes, and the NLP reads the same findings."""
    for s in detect(text):
        assert word not in text[s.start : s.end], (word, found(text))
    for mode in ("surrogate", "tag"):
        out = deidentify(text, key=KEY, patient=PATIENT, options=TextDeidOptions(mode=mode)).text
        assert out.count(word) == text.count(word), (mode, out)
        assert nlp_findings(out) == nlp_findings(text), (mode, out)
