"""Hedge cues the rules lacked (issue 14, session 11): "presumed X" / "presumably X" state a probable
finding (as "presumptive" and "probable" do; the Open-i coders code them), and "suspicious of X",
"uncertain whether/if X" hedge what follows, as "suspicious for" and "unclear whether" do.

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest
from held_out_helpers import finding_state


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Presumed right lower lobe pneumonia.", "pneumonia"),
        ("Opacity at the left base, presumably atelectasis.", "atelectasis"),
        ("Presumed small left pleural effusion.", "pleural_effusion"),
    ],
)
def test_presumed_is_probable(text: str, concept: str) -> None:
    assert finding_state(text, concept) == "probable"


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Nodular density suspicious of a pulmonary nodule.", "nodule"),
        ("It is uncertain whether there is a small pneumothorax.", "pneumothorax"),
        ("Uncertain if there is a small right pleural effusion.", "pleural_effusion"),
    ],
)
def test_suspicious_of_and_uncertain_whether_hedge(text: str, concept: str) -> None:
    assert finding_state(text, concept) == "possible"


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        # the cues read forward only: what comes before them stays as it is
        ("Small pneumothorax. Presumed postoperative change.", "pneumothorax"),
        ("Left pleural effusion; uncertain whether there is underlying consolidation.", "pleural_effusion"),
    ],
)
def test_the_new_cues_leave_what_comes_before_them(text: str, concept: str) -> None:
    assert finding_state(text, concept) == "definite"
