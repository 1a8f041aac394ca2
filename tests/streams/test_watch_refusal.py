"""The one rule for ending or replacing a standing watch (``streams.cohort.watch_refusal``), which
``radstream cohort watch|unwatch`` and the web page's unsubscribe both apply: a steward may any; anyone
else only one they subscribed, of a registered project that is not identified."""

from __future__ import annotations

from streams.auth import Principal
from streams.cohort import watch_refusal

ANA = Principal("ana", frozenset({"analyst"}))
STEW = Principal("stew", frozenset({"steward"}))
ROOT = Principal("root", frozenset({"admin"}))


def test_a_steward_or_admin_may_end_any_watch() -> None:
    for who in (STEW, ROOT):
        for identified in (None, True, False):
            assert watch_refusal(who, "P9", identified, "ana", "end", "watch 'w1'") is None


def test_anyone_else_only_their_own_watch_of_a_registered_deidentified_project() -> None:
    assert watch_refusal(ANA, "IRB-7", False, "ana", "end", "watch 'w1'") is None
    other = watch_refusal(ANA, "IRB-7", False, "bo", "replace", "watch 'w1'")
    assert other == "watch 'w1' was subscribed by 'bo': only they or a steward may replace it"
    for identified in (None, True):  # not registered, or identified: a steward's
        why = watch_refusal(ANA, "P9", identified, "ana", "end", "the watch of project 'P9'")
        assert why == ("project 'P9' receives identified images (or is not registered): only a steward "
                       "may end its watch")
