"""What the held-out class tests read off one invented sentence in a FINDINGS section."""

from __future__ import annotations

from processors.nlp import analyze


def finding_state(text: str, concept: str) -> str:
    """The state of the first finding of ``concept``: negated, historical, or its certainty (definite |
    probable | possible)."""
    for f in analyze(f"FINDINGS: {text}").findings:
        if f.concept == concept:
            if f.negated:
                return "negated"
            if f.historical:
                return "historical"
            return f.certainty
    raise AssertionError(f"no {concept} in {text!r}")


def chest_label(text: str, label: str) -> str:
    return analyze(f"FINDINGS: {text}").chest_labels[label]
