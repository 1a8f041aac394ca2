"""ConText (Harkema et al. 2009), our own implementation: trigger rules are data (``rules.json``).

A trigger modifies targets in its own sentence: forward triggers the targets after them, backward
triggers those before them, bidirectional both, within ``max_scope`` words. Scope ends at a
TERMINATE phrase ("but", "however", ";", "which", ...) and at a trigger of another category, so
the nearest trigger wins ("no effusion, possible pneumothorax") - within one dimension: existence
(negated, possible, probable, hypothetical, family) and time (HISTORICAL, CHRONIC "old"/"chronic",
CURRENT "again seen"/"stable") do not cut each other. PSEUDO phrases ("no change", "not only", "no
increase in") are matched like triggers, longest first, so the shorter trigger inside them never fires.
Rules may be limited to sections: "evaluate for" in the indication is hypothetical, and a header such
as "CLINICAL HISTORY:" is never inside a sentence, so it is never a history trigger; instead whole
sections can carry a category (``section_categories``: PAST MEDICAL HISTORY -> HISTORICAL).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from processors.nlp.lexicon import attribute_words, british_spelling, spelling_pairs
from processors.nlp.matching import TOKEN_RE as _TOKEN
from processors.nlp.matching import WORD_RE, year_placeholder
from processors.nlp.types import ContextResult

DATA = Path(__file__).with_name("rules.json")


@functools.lru_cache(maxsize=4)
def _data(data_file: Path) -> dict[str, Any]:
    """``rules.json`` parsed once per process (each loader reads its own key of it; 0.7 MB, ~12 ms a parse).
    Read only: the loaders build their own objects from it."""
    data: dict[str, Any] = json.loads(data_file.read_text())
    return data

NEGATED = "NEGATED_EXISTENCE"
POSSIBLE = "POSSIBLE_EXISTENCE"
PROBABLE = "PROBABLE_EXISTENCE"
HISTORICAL = "HISTORICAL"
CHRONIC = "CHRONIC"  # began in the past and still present ("old", "chronic", "known", "healed")
CURRENT = "CURRENT"  # present now ("again seen", "redemonstrated", "persistent", "stable"): not historical
HYPOTHETICAL = "HYPOTHETICAL"
FAMILY = "FAMILY"
PSEUDO = "PSEUDO"
TERMINATE = "TERMINATE"
# a change noun ("change", "increase", "growth"): a negation right before it denies the change, not the
# finding ("there has been no significant change in the effusion": the effusion is there)
CHANGE = "CHANGE"
_CHANGE_GAP = 3  # words allowed between the negation and the change noun ("no significant interval change")
_LIST_FROM = 8  # a negation farther than this many words from a finding counts only the words between
# the findings of its list (below it, no list can matter: every scope is at least this long)
_AFTER_REACH = 8  # words before a conditional trigger where one of its ``after`` words must be
_NOT_AFTER_REACH = 2  # words right before a trigger where none of its ``not_after`` words may be
_CLAUSE_PUNCT = re.compile(r"[,;:()]")
_ASIDE = re.compile(r"\([^()]*\)")  # a parenthetical (innermost)
_CHANGE_REACH = 12  # words from such a negation to the findings whose change it denies
MODIFIER_CATEGORIES = (NEGATED, POSSIBLE, PROBABLE, HISTORICAL, CHRONIC, CURRENT, HYPOTHETICAL, FAMILY)
_NOT_MODIFIERS = frozenset({PSEUDO, TERMINATE, CHANGE})


@dataclass(frozen=True, slots=True)
class Rule:
    phrase: str
    category: str
    direction: str  # forward | backward | bidirectional | pseudo | terminate
    max_scope: int
    sections: frozenset[str] | None = None
    not_sections: frozenset[str] | None = None
    applies_to: frozenset[str] | None = None  # TERMINATE only: the categories it ends (None: all)
    # a trigger only when one of these words comes earlier in its sentence, at most ``_AFTER_REACH``
    # words before it ("over" hedges only in "favor A over B")
    after: frozenset[str] | None = None
    # not a trigger where this pattern matches right after the phrase ("not seen" + " on the lateral view")
    not_before: re.Pattern[str] | None = None
    # not a trigger where one of these words is among the two right before it ("CT in 2005" dates a study)
    not_after: frozenset[str] | None = None
    # a bare answer: holds only right after "X:" / "X -" and at the end of its clause ("Pneumothorax: no.")
    answer: bool = False
    # False: the phrase's rules are all it has ("or, less likely," reads forward as a hedge and back as
    # the favoured reading; it does not take the backward hedge of its tail "less likely ,")
    inherit: bool = True
    # an unsettled differential ("A cannot be distinguished from B"): reads back to A even where B follows
    differential: bool = False

    @property
    def conditional(self) -> bool:
        """Whether the rule holds only where words around its phrase allow (``conditions_hold``)."""
        return self.after is not None or self.not_before is not None or self.not_after is not None

    def applies_in(self, section: str) -> bool:
        if self.sections is not None and section not in self.sections:
            return False
        return not (self.not_sections is not None and section in self.not_sections)


@dataclass(frozen=True, slots=True)
class TriggerKind:
    """The rules of one trigger phrase that apply in one section, with what a walk asks of them
    precomputed (built once per phrase and section by the engine, not per trigger or per target)."""

    rules: tuple[Rule, ...]
    categories: frozenset[str]
    forward_rules: tuple[Rule, ...]  # modifier rules that reach forward (forward, bidirectional)
    backward_rules: tuple[Rule, ...]  # modifier rules that reach backward (backward, bidirectional)
    modifies: frozenset[str]  # categories that end other categories' scope (not pseudo/terminate/change)
    terminates_all: bool
    terminates: frozenset[str]  # the categories its TERMINATE rules limited to some categories end
    pseudo: bool
    change: bool
    chronic_scope: int  # the largest max_scope of its CHRONIC rules (-1: none)
    max_scope: int
    # reads one category forward and others back ("A is less likely than B": A possible, B probable), so
    # a target right after it does not stop it reading back
    two_sided: bool = False

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> TriggerKind:
        mods = tuple(r for r in rules if r.category not in _NOT_MODIFIERS)
        terms = [r for r in rules if r.category == TERMINATE]
        cats = frozenset(r.category for r in rules)
        return cls(
            rules=rules,
            categories=cats,
            forward_rules=tuple(r for r in mods if r.direction in ("forward", "bidirectional")),
            backward_rules=tuple(r for r in mods if r.direction in ("backward", "bidirectional")),
            modifies=cats - _NOT_MODIFIERS,
            terminates_all=any(r.applies_to is None for r in terms),
            terminates=frozenset(c for r in terms if r.applies_to is not None for c in r.applies_to),
            pseudo=PSEUDO in cats,
            change=CHANGE in cats,
            chronic_scope=max((r.max_scope for r in rules if r.category == CHRONIC), default=-1),
            max_scope=max((r.max_scope for r in rules), default=0),
            two_sided=any(r.differential for r in mods)
            or any(r.direction == "forward" for r in mods)
            and any(r.direction == "backward" for r in mods)
            and not {r.category for r in mods if r.direction == "forward"}
            & {r.category for r in mods if r.direction == "backward"},
        )


class Trigger(NamedTuple):  # a tuple: built for every trigger of every sentence
    start: int
    end: int
    kind: TriggerKind  # the rules of this span that apply in the sentence's section

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.kind.rules

    @property
    def categories(self) -> frozenset[str]:
        return self.kind.categories


def load_section_categories(data_file: Path = DATA) -> dict[str, tuple[str, ...]]:
    """Sections whose every target gets categories ("past_history" -> HISTORICAL, "family_history" ->
    FAMILY + HISTORICAL): a header such as "PAST MEDICAL HISTORY:" is no trigger (not in a sentence)."""
    data = _data(data_file)
    return {sec: tuple(cats) for sec, cats in data.get("section_categories", {}).items()}


def conditions_hold(
    rules: Sequence[Rule], low: str, sentence_start: int, start: int, end: int
) -> tuple[Rule, ...]:
    """The rules of the trigger ``low[start:end]`` whose conditions hold (rules without one always do):
    ``after``: one of its words is among the ``_AFTER_REACH`` words before the trigger in its sentence;
    ``not_before``: the pattern does not match right after the trigger; ``not_after``: none of its words
    is among the ``_NOT_AFTER_REACH`` words right before the trigger."""
    before: set[str] | None = None
    kept = []
    for r in rules:
        if r.not_before is not None and r.not_before.match(low, end):
            continue
        if r.not_after is not None and not r.not_after.isdisjoint(
            WORD_RE.findall(low, max(sentence_start, start - 40), start)[-_NOT_AFTER_REACH:]
        ):
            continue
        if r.after is not None:
            if before is None:
                before = set(WORD_RE.findall(low[sentence_start:start])[-_AFTER_REACH:])
            if r.after.isdisjoint(before):
                continue
        kept.append(r)
    return tuple(kept)


# an answer follows a label's colon or dash ("Pneumothorax: no", "Effusion - none") ...
_ANSWER_LEAD = frozenset(":-\u2013\u2014?")  # and a question's "?" ("Pneumothorax? No.")
# ... and ends its clause: a full stop, ';' ',', a line break or the end of the sentence
_ANSWER_END = re.compile(r"[ \t]*(?:[.;,!]|\r?\n|$)")


def is_answer(low: str, sentence_start: int, start: int, end: int, sentence_end: int) -> bool:
    """Whether the phrase ``low[start:end]`` is a bare answer to a label ("Pneumothorax: no.")."""
    k = start - 1
    while k >= sentence_start and low[k] in " \t":
        k -= 1
    return (
        k >= sentence_start
        and low[k] in _ANSWER_LEAD
        and _ANSWER_END.match(low, end, sentence_end) is not None
    )


def load_past_for_episodes(data_file: Path = DATA) -> frozenset[str]:
    """The CHRONIC triggers (as ``ContextResult.triggers`` names them) that put an episode in the past."""
    data = _data(data_file).get("past_for_episodes", {})
    return frozenset(f"{CHRONIC}:{cue}" for cue in data.get("cues", []))


class ProblemList(NamedTuple):
    """Lasting conditions that are CHRONIC when written alone as a problem-list item (``problem_list``)."""

    sections: frozenset[str]
    pattern: re.Pattern[str]
    postposed: re.Pattern[str]  # ", well controlled." after the item


def _alternation(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


def load_problem_list(data_file: Path = DATA) -> ProblemList:
    data = _data(data_file).get("problem_list", {})
    before = _alternation(data.get("qualifiers_before", []))
    after = _alternation(data.get("qualifiers_after", []))
    pattern = f"(?:(?:{before}) )*(?:{_alternation(data.get('conditions', []))})(?: (?:{after}))?"
    postposed = _alternation(data.get("postposed", [])).replace(r"\ ", r"[\s-]+")
    return ProblemList(
        frozenset(data.get("sections", [])),
        re.compile(pattern),
        re.compile(rf"\s*,\s*(?:{postposed})\s*[.;!]?\s*\Z" if postposed else r"(?!)"),
    )


_PROBLEM_LIST = load_problem_list()
# what may stand around a problem-list item in its sentence: a list number or bullet before it ("2.",
# "(3)", "b)", "#4", "-"), a full stop or semicolon after it
_ITEM_LEAD = re.compile(r"\s*(?:\(?(?:\d{1,2}|[a-z])[.)]|#\s*\d{1,2}[.):]?|[-*\u2022])?\s*\Z")
_ITEM_END = re.compile(r"\s*[.;!]?\s*\Z")
# ... or the procedure that treated it ("Coronary artery disease status post bypass grafting.")
_ITEM_TREATED = re.compile(r"\s*,?\s*(?:status[\s-]+post|s\s*/\s*p)\b")
_ITEM_DROP = re.compile(r"['\u2019]")


def problem_list_item(
    low: str, start: int, end: int, sentence: tuple[int, int], section: str, plist: ProblemList | None = None
) -> bool:
    """Whether the target ``low[start:end]`` is a lasting condition written alone as a problem-list item
    ("Hypertension.", "2. Type 2 diabetes.") in a section where that makes it a past-history item."""
    plist = plist or _PROBLEM_LIST
    lo, hi = sentence
    if section not in plist.sections or not (lo <= start and end <= hi):
        return False
    if _ITEM_LEAD.match(low, lo, start) is None:
        return False
    if (
        _ITEM_END.match(low, end, hi) is None
        and _ITEM_TREATED.match(low, end, hi) is None
        and plist.postposed.match(low, end, hi) is None
    ):
        return False
    return plist.pattern.fullmatch(_target_name(low, start, end)) is not None


class DeniedHabits(NamedTuple):
    """Habits of the social history that are historical as well as negated when denied (``denied_habits``)."""

    cues: frozenset[str]  # as ``ContextResult.triggers`` names them
    pattern: re.Pattern[str]


def load_denied_habits(data_file: Path = DATA) -> DeniedHabits:
    data = _data(data_file).get("denied_habits", {})
    before, after = _alternation(data.get("words_before", [])), _alternation(data.get("words_after", []))
    pattern = f"(?:(?:{before}) )*(?:{_alternation(data.get('habits', []))})(?: (?:{after}))?"
    return DeniedHabits(frozenset(f"{NEGATED}:{c}" for c in data.get("cues", [])), re.compile(pattern))


_DENIED_HABITS = load_denied_habits()


class OwnWords(NamedTuple):
    """Words that put a target in the past when it holds them itself ("former smoker", "psychiatric
    history"): ``own_words``."""

    first: frozenset[str]
    last: frozenset[str]


def load_own_words(data_file: Path = DATA) -> OwnWords:
    data = _data(data_file).get("own_words", {})
    return OwnWords(frozenset(data.get("historical", [])), frozenset(data.get("historical_last", [])))


_OWN_WORDS = load_own_words()


def own_time_word(low: str, start: int, end: int, own: OwnWords | None = None) -> bool:
    """Whether the target's own first word ("former smoker") or last word ("psychiatric history") puts
    it in the past."""
    own = own or _OWN_WORDS
    words = WORD_RE.findall(low, start, end)
    # the word alone is no target of itself ("history")
    return len(words) > 1 and (words[0] in own.first or words[-1] in own.last)


def _target_name(low: str, start: int, end: int) -> str:
    return " ".join(_ITEM_DROP.sub("", low[start:end]).replace("-", " ").replace("/", " ").split())


def load_rules(data_file: Path = DATA) -> list[Rule]:
    data = _data(data_file)
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
                after=frozenset(r["after"]) if r.get("after") else None,
                answer=bool(r.get("answer", False)),
                inherit=bool(r.get("inherit", True)),
                differential=bool(r.get("differential", False)),
                not_before=re.compile(r["not_before"]) if r.get("not_before") else None,
                not_after=frozenset(r["not_after"]) if r.get("not_after") else None,
            )
        )
    rules += relative_clauses(data.get("relative_clauses", {}), rules)
    rules += dated_episodes(data.get("dated_episodes", {}), rules)
    view_qualified(data.get("view_qualified", {}), rules)
    answered_questions(data.get("answered_questions", {}), rules)
    rules += contracted_variants(data.get("contractions", {}), rules)
    rules += british_variants(rules)
    rules += inherited_backward(rules)
    return rules + punctuation_led(rules)


def relative_clauses(spec: dict[str, Any], rules: Sequence[Rule]) -> list[Rule]:
    """Backward negations for relative clauses of resolution (``relative_clauses`` in ``rules.json``):
    "which" ends every scope, so "the effusion, which has since resolved" kept the effusion present.
    Each pronoun + auxiliary + adverb + predicate negates back to its antecedent and ends other scopes as
    the pronoun alone does; a phrase already listed keeps its own rules."""
    if not spec:
        return []
    listed = {r.phrase for r in rules}
    scope = int(spec.get("max_scope", 8))
    out: list[Rule] = []
    for pronoun in spec["pronouns"]:
        ends = [r for r in rules if r.phrase == pronoun and r.category == TERMINATE]
        for group in ("participles", "states"):
            g = spec[group]
            for aux in g["auxiliaries"]:
                for adverb in g["adverbs"]:
                    for pred in g["predicates"]:
                        phrase = " ".join(w for w in (pronoun, aux, adverb, pred) if w)
                        if phrase in listed:
                            continue
                        listed.add(phrase)
                        out.append(Rule(phrase, NEGATED, "backward", scope))
                        out += [dataclasses.replace(r, phrase=phrase) for r in ends]
    return out


def dated_episodes(spec: dict[str, Any], rules: Sequence[Rule]) -> list[Rule]:
    """Past episodes dated by a year ("DVT in 2003", "appendectomy in March 1998", "diabetes since 2001"):
    each lead + (month (of)) + year phrase of ``dated_episodes`` in ``rules.json`` gets the rules of its
    lead. The year is a placeholder of the matcher (``<year:1950-2029>``: one phrase per date form, not
    one per year); a phrase already listed ("in 2003") keeps its own rules, since the matcher looks a
    year up as the placeholder only where no phrase spells it out."""
    if not spec:
        return []
    listed = {r.phrase for r in rules}
    first, last = spec["years"]
    year = year_placeholder(int(first), int(last))
    months, short = spec["months"], spec.get("abbreviated_months", [])
    out: list[Rule] = []
    for lead, specs in spec["leads"].items():
        dates = [year]
        if lead not in spec.get("years_only", ()):
            dates += [*(f"{m} {year}" for m in (*months, *short)), *(f"{m} of {year}" for m in months)]
        for date in dates:
            phrase = f"{lead} {date}"
            if phrase in listed:
                continue
            listed.add(phrase)
            for r in specs:
                out.append(
                    Rule(
                        phrase,
                        r["category"],
                        r["direction"],
                        int(r["max_scope"]),
                        sections=frozenset(r["sections"]) if r.get("sections") else None,
                        not_sections=frozenset(r["not_sections"]) if r.get("not_sections") else None,
                        not_after=frozenset(r["not_after"]) if r.get("not_after") else None,
                    )
                )
    return out


def view_qualified(spec: dict[str, Any], rules: list[Rule]) -> None:
    """A negation of seeing limited to one radiographic view ("not identified on the lateral view"): the
    finding was seen on the other view, so it is there (``view_qualified``). Its backward rules get a
    ``not_before`` pattern: they do not hold where "on (the) <view>" follows the phrase."""
    if not spec:
        return
    verbs = set(spec["verbs"])
    skip = tuple(spec.get("skip", ()))
    views = "|".join(map(re.escape, spec["views"]))
    # one view: not "on the frontal or lateral views", "on the PA and lateral radiographs"
    view = re.compile(
        rf"\s+on\s+(?:the\s+|a\s+|this\s+)?(?:left\s+|right\s+)?(?:{views})\b"
        r"(?!\s*(?:or|and|nor)\b)(?!\s*[/&])(?!\s+(?:views|projections|images|radiographs|films)\b)"
    )
    for i, r in enumerate(rules):
        if (
            r.category == NEGATED
            and r.direction in ("backward", "bidirectional")
            and r.phrase.split()[-1] in verbs
            and not r.phrase.startswith(skip)
        ):
            rules[i] = dataclasses.replace(r, not_before=view)


def answered_questions(spec: dict[str, Any], rules: list[Rule]) -> None:
    """A question answered right after it ("Pneumothorax? No.", "Fracture? Yes."): the rules of "?" get
    a ``not_before`` pattern, so they do not hold where an answer follows and ends its clause."""
    if not spec:
        return
    answers = "|".join(re.escape(a).replace(r"\ ", r"[ \t]+") for a in spec["answers"])
    answered = re.compile(rf"[ \t]*(?:{answers})(?![\w-])[ \t]*(?:[.;,!]|\r?\n|$)")
    phrases = frozenset(spec["phrases"])
    for i, r in enumerate(rules):
        if r.phrase in phrases and r.not_before is None:
            rules[i] = dataclasses.replace(r, not_before=answered)


def _by_words(rules: Sequence[Rule]) -> dict[tuple[str, ...], list[Rule]]:
    """The rules grouped by the words of their phrase, as the matcher sees them."""
    by_phrase: dict[tuple[str, ...], list[Rule]] = {}
    for r in rules:
        by_phrase.setdefault(tuple(_TOKEN.findall(r.phrase.lower())), []).append(r)
    return by_phrase


def punctuation_led(rules: Sequence[Rule]) -> list[Rule]:
    """Rules for a termination phrase led by punctuation joined to the trigger that starts at its word.
    The matcher takes the longest phrase from the leftmost start, so ", slightly" (it ends a negation)
    hid "slightly smaller" ("nodule, slightly smaller": no CURRENT cue), and ", with" hid "with a history
    of". The joined phrase (", slightly smaller") carries the rules of both."""
    by_phrase = _by_words(rules)
    out: list[Rule] = []
    for words, own in by_phrase.items():
        if len(words) < 2 or words[0][0].isalnum() or not any(r.category == TERMINATE for r in own):
            continue
        rest = words[1:]
        for longer, theirs in by_phrase.items():
            joined = (words[0], *longer)
            if len(longer) > len(rest) and longer[: len(rest)] == rest and joined not in by_phrase:
                out += [dataclasses.replace(r, phrase=" ".join(joined)) for r in (*own, *theirs)]
    return out


def contracted_variants(spec: dict[str, Any], rules: Sequence[Rule]) -> list[Rule]:
    """The rules again with the auxiliary + "not" of their phrase contracted ("isn't seen", "hasn't
    resolved", "couldn't be excluded"; ``contractions`` in ``rules.json``), and each contracted auxiliary
    alone with the rules of ``alone`` ("doesn't have chest pain" negates as "not" does); the short forms of
    ``before_not`` also take every "not ..." phrase ("isn't clearly seen" as "not clearly seen"). A phrase
    already listed keeps its own rules; a variant made from two phrases ("cannot", "can not") is made once."""
    pairs = [(re.compile(rf"\b{re.escape(full)}\b"), short) for full, short in spec.get("pairs", [])]
    if not pairs:
        return []
    listed = {r.phrase for r in rules}
    source: dict[str, str] = {}  # variant phrase -> the phrase it was made from
    out: list[Rule] = []
    for r in rules:
        variant = r.phrase
        for full, short in pairs:
            variant = full.sub(short, variant)
        if variant == r.phrase or variant in listed or source.setdefault(variant, r.phrase) != r.phrase:
            continue
        out.append(dataclasses.replace(r, phrase=variant))
    # "isn't clearly seen" as "is not clearly seen" where only "not clearly seen" is listed
    before_not = spec.get("before_not", [])
    for r in rules:
        if r.phrase.startswith("not "):
            for short in before_not:
                variant = f"{short} {r.phrase[4:]}"
                if variant not in listed and source.setdefault(variant, r.phrase) == r.phrase:
                    out.append(dataclasses.replace(r, phrase=variant))
    alone = [r for r in rules if r.phrase == spec.get("alone")]
    made = listed | set(source)
    for _, short in pairs:
        if short not in made:
            made.add(short)
            out += [dataclasses.replace(r, phrase=short) for r in alone]
    return out


def british_variants(rules: Sequence[Rule]) -> list[Rule]:
    """The rules again under the British spelling of their phrase ("favoured to represent", "not
    visualised"), as the lexicon's synonyms get it (``lexicon/spelling.json``); a phrase already listed
    keeps its own rules."""
    pairs = spelling_pairs()
    phrases = {r.phrase for r in rules}
    out = []
    for r in rules:
        variant = british_spelling(r.phrase, pairs)
        if variant != r.phrase and variant not in phrases:
            out.append(dataclasses.replace(r, phrase=variant))
    return out


def inherited_backward(rules: Sequence[Rule]) -> list[Rule]:
    """Backward rules for longer phrases that would otherwise hide them. The matcher takes the longest
    phrase, so "would be difficult to exclude" hides the backward rule of its tail "difficult to exclude"
    ("a small effusion would be difficult to exclude" kept the effusion present), as "much less likely"
    hides "less likely" and ", unchanged" hides "unchanged". A phrase with forward rules of a category and
    no backward rule of it takes the backward rules of that category from its longest tail phrase."""
    by_phrase = _by_words(rules)
    out: list[Rule] = []
    for words, own in by_phrase.items():
        forward = {r.category for r in own if r.direction == "forward" and r.category in MODIFIER_CATEGORIES}
        backward = {r.category for r in own if r.direction in ("backward", "bidirectional")}
        wanted = forward - backward
        if not wanted or not all(r.inherit for r in own):
            continue
        for k in range(1, len(words)):
            tail = by_phrase.get(words[k:])
            if tail is None:
                continue
            for r in tail:
                # an answer is the phrase alone ("Pneumothorax: no"), never a longer one ending in it
                if r.category in wanted and r.direction in ("backward", "bidirectional") and not r.answer:
                    out.append(dataclasses.replace(r, phrase=" ".join(words), direction="backward"))
            break  # the longest tail that is a phrase decides
    return out


class ClauseWords(NamedTuple):
    openers: frozenset[str]
    closers: frozenset[str]
    coordinators: re.Pattern[str]
    predicates: frozenset[str]
    # words that may stand between a prenominal cue and its finding ("possible left lower lobe pneumonia")
    premodifiers: frozenset[str]


def load_clause_words(data_file: Path = DATA) -> ClauseWords:
    """The words that end a negated list at a comma, and the predicates of clause targets (``clauses``)."""
    data = _data(data_file).get("clauses", {})
    coords = data.get("coordinators", [])
    return ClauseWords(
        frozenset(data.get("openers", [])),
        frozenset(data.get("closers", [])),
        re.compile(r"\b(?:" + "|".join(map(re.escape, coords)) + r")\b" if coords else r"(?!x)x"),
        frozenset(data.get("predicates", [])),
        frozenset(data.get("premodifiers", [])) | attribute_words(("anatomy", "laterality", "severity")),
    )


CLAUSES = load_clause_words()
_LIST_PUNCT = re.compile(r"[;:()]")  # punctuation that ends a list (a comma does not)
_PREMODIFIER_GAP = 5  # words of premodifiers allowed between a cue that reads both ways and the next finding
_CHANGE_OBJECT = 6  # words from a change noun to its finding ("change in size of the small effusion")


# categories that do not end each other's scope (the stronger of both applies: possible over probable)
# a present-tense cue reaches past a nearer past one ("the effusion was seen previously and is again
# seen": present now), as the current cue wins when both reach a finding
_FAMILY = {
    POSSIBLE: frozenset({POSSIBLE, PROBABLE}),
    PROBABLE: frozenset({POSSIBLE, PROBABLE}),
    CURRENT: frozenset({CURRENT, HISTORICAL}),
}
_TEMPORAL = frozenset({HISTORICAL, CHRONIC, CURRENT})
_NOT_TEMPORAL = frozenset(MODIFIER_CATEGORIES) - _TEMPORAL
# per category: (its family, its dimension); a nearer trigger with a category of the dimension outside
# the family ends its scope
_BLOCKERS = {
    c: (_FAMILY.get(c, frozenset({c})), _TEMPORAL if c in _TEMPORAL else _NOT_TEMPORAL)
    for c in MODIFIER_CATEGORIES
}


class SentenceScope:
    """The triggers of one sentence, with word positions, to assert its targets.

    Each target looks at its triggers nearest first (backwards for forward rules, forwards for
    backward rules) and stops at the first terminator, so a sentence costs O(targets x nearby
    triggers) even when a report has no punctuation and is one long "sentence".
    """

    def __init__(
        self,
        low: str,
        start: int,
        end: int,
        triggers: Sequence[Trigger],
        targets: Sequence[int] = (),
        spans: Sequence[tuple[int, int]] = (),
        sentence: tuple[int, int] | None = None,
    ):
        self.triggers = list(triggers)
        self.starts = [t.start for t in self.triggers]
        self.words = [m.start() for m in WORD_RE.finditer(low, start, end)]
        self.targets = sorted(targets)  # target start offsets: a trigger right before one modifies it only
        # words inside other findings do not count towards a negation's scope, so a negated list reaches
        # its last item ("no effusion, pneumothorax, hilar or mediastinal adenopathy, ..., or mass");
        # free[i] = words before word i that are in no finding, built on first use
        self.spans = spans
        self.free: list[int] | None = None
        # a walk only matters where a trigger can reach the target: the first trigger that reaches
        # forward, the last that reaches backward (no walk for a target outside both)
        self.max_scope = 0
        self.first_forward = len(self.triggers)
        self.last_backward = -1
        change = False
        for i, t in enumerate(self.triggers):
            kind = t.kind
            self.max_scope = max(self.max_scope, kind.max_scope)
            if kind.forward_rules and i < self.first_forward:
                self.first_forward = i
            if kind.backward_rules:
                self.last_backward = i
            change = change or kind.change
        # negations that deny a change, not a finding (start -> end of the change noun): pseudo-triggers
        # for the findings that the change phrase itself governs
        self.low = low
        self.end = end
        self.change_negations: dict[int, int] = {}
        if change:
            self.change_negations = self._change_negations(low)
        # asides: the triggers of a parenthetical reach only the targets inside it ("small effusion (no
        # pneumothorax) and mild cardiomegaly"), and its words do not lengthen the clause around it;
        # looked for in the whole sentence when the scope covers only part of it
        a, b = sentence or (start, end)
        self.asides: list[tuple[int, int]] = []
        if low.find("(", a, b) >= 0:
            self.asides = [m.span() for m in _ASIDE.finditer(low, a, b)]
        self.aside_starts = [a for a, _ in self.asides]

    def _change_negations(self, low: str) -> dict[int, int]:
        return {
            t.start: nxt.end
            for t, nxt in zip(self.triggers, self.triggers[1:], strict=False)
            if NEGATED in t.categories
            and CHANGE in nxt.categories
            and self._words_between(t.end, nxt.start) <= _CHANGE_GAP
            and not self._target_between(t.end, nxt.start)  # "no effusion or change in ...": negates
            and not _CLAUSE_PUNCT.search(low, t.end, nxt.start)  # "nor overt), change in weight"
        }

    def _words_between(self, a: int, b: int) -> int:
        return bisect.bisect_left(self.words, b) - bisect.bisect_left(self.words, a)

    def _free_between(self, a: int, b: int) -> int:
        if self.free is None:
            inside = [False] * len(self.words)
            for x, y in self.spans:
                for i in range(bisect.bisect_left(self.words, x), bisect.bisect_left(self.words, y)):
                    inside[i] = True
            free = [0]
            for flag in inside:
                free.append(free[-1] + (not flag))
            self.free = free
        return self.free[bisect.bisect_left(self.words, b)] - self.free[bisect.bisect_left(self.words, a)]

    def _target_between(self, a: int, b: int) -> bool:
        k = bisect.bisect_left(self.targets, a)
        return k < len(self.targets) and self.targets[k] < b

    def _target_follows(self, pos: int) -> bool:
        """Whether a target follows ``pos`` in the same clause, at most one word later or after premodifiers
        only: "effusion, resolved pneumonia", "cardiomegaly and possible left lower lobe pneumonia", but not
        "effusion has resolved; mild cardiomegaly" (a clause ends at the mark)."""
        k = bisect.bisect_left(self.targets, pos)
        if k == len(self.targets) or _CLAUSE_PUNCT.search(self.low, pos, self.targets[k]):
            return False
        gap = self._words_between(pos, self.targets[k])
        if gap <= 1:
            return True
        return gap <= _PREMODIFIER_GAP and all(
            w in CLAUSES.premodifiers for w in WORD_RE.findall(self.low, pos, self.targets[k])
        )

    def _is_clause(self, start: int, end: int) -> bool:
        """A finding phrase with a predicate after its first word ("heart size is enlarged", "heart size
        borderline"): a clause of its own, not a noun that a negation's list can hold."""
        if self.low.find(" ", start, end) < 0:
            return False
        words = WORD_RE.findall(self.low, start, end)
        return len(words) > 1 and any(w in CLAUSES.predicates for w in words[1:])

    def _list_goes_on(self, pos: int) -> bool:
        """Whether a list coordinator ("or", "nor") follows ``pos`` before the next negation or the end."""
        stop = self.end
        for t in self.triggers[bisect.bisect_left(self.starts, pos) :]:
            if NEGATED in t.categories:
                stop = t.start
                break
        return CLAUSES.coordinators.search(self.low, pos, stop) is not None

    def _negation_ends(self, a: int, b: int, b_end: int) -> bool:
        """Whether the list of a forward negation ending at ``a`` ends before the target at ``b``: at a
        comma that a positive clause follows ("no pneumothorax, small left effusion"), that follows a
        closed list ("no effusion or pneumothorax, bronchial thickening") or a closing predicate ("no
        effusion seen, ..."), unless a coordinator shows that the list goes on; or before a clause target
        ("no pneumothorax, heart size is enlarged") after a comma or another finding."""
        low = self.low
        c = low.find(",", a, b)
        if (c >= 0 or self._target_between(a, b)) and self._is_clause(b, b_end):
            return True
        while c >= 0:
            nxt = WORD_RE.search(low, c + 1, b + 1)
            prev = [m.group() for m in WORD_RE.finditer(low, max(a, c - 30), c)]
            coord = CLAUSES.coordinators.search(low, a, c)
            opens = (
                nxt is not None
                and not low[c + 1 : nxt.start()].strip()
                and nxt.group() in CLAUSES.openers
                and not self._target_at(nxt.start())
            )
            closes = bool(prev) and prev[-1] in CLAUSES.closers
            closed_list = coord is not None and self._target_between(coord.end(), c)
            if (opens or closes or closed_list) and not self._list_goes_on(c):
                return True
            c = low.find(",", c + 1, b)
        return False

    def _aside_words(self, a: int, b: int) -> int:
        """The words inside the parentheticals that lie wholly between ``a`` and ``b``."""
        n = 0
        for x, y in self.asides:
            if a <= x and y <= b:
                n += bisect.bisect_left(self.words, y) - bisect.bisect_left(self.words, x)
        return n

    def _aside_of(self, pos: int) -> int:
        """The index of the parenthetical that holds ``pos`` (-1: none)."""
        k = bisect.bisect_right(self.aside_starts, pos) - 1
        return k if k >= 0 and pos < self.asides[k][1] else -1

    def _target_at(self, pos: int) -> bool:
        k = bisect.bisect_left(self.targets, pos)
        return k < len(self.targets) and self.targets[k] == pos

    def _change_object(self, change_end: int) -> bool:
        """Whether the change noun governs a finding ("no change in the small effusion, ..."): one follows
        within a few words, with no punctuation between (not "no change in appetite, weight loss")."""
        k = bisect.bisect_left(self.targets, change_end)
        if k == len(self.targets):
            return False
        t = self.targets[k]
        return self._words_between(change_end, t) <= _CHANGE_OBJECT and not _CLAUSE_PUNCT.search(
            self.low, change_end, t
        )

    def assert_target(self, start: int, end: int) -> ContextResult:
        """The ConText status of the target ``low[start:end]``."""
        found: dict[str, str] = {}
        k = bisect.bisect_left(self.starts, start)
        aside = self._aside_of(start) if self.asides else -1
        if self.first_forward < k:  # triggers before the target, nearest first
            self._walk(reversed(self.triggers[:k]), start, True, found, aside, end)
        if self.last_backward >= k:  # triggers after it
            self._walk(iter(self.triggers[k:]), end, False, found, aside)
        return _result(found)

    def _walk(
        self,
        triggers: Iterator[Trigger],
        pos: int,
        back: bool,
        found: dict[str, str],
        target_aside: int,
        target_end: int = 0,
    ) -> None:
        terminated: frozenset[str] = frozenset()
        seen: list[frozenset[str]] = []  # categories of the nearer (non-pseudo) triggers
        words = self.words
        for trig in triggers:
            if back:
                if trig.end > pos:  # overlaps the target
                    continue
                dist = bisect.bisect_left(words, pos) - bisect.bisect_left(words, trig.end)
            else:
                if trig.start < pos:  # inside the target
                    continue
                dist = bisect.bisect_left(words, trig.start) - bisect.bisect_left(words, pos)
            if self.asides:
                aside = self._aside_of(trig.start)
                if aside >= 0 and aside != target_aside:
                    continue  # a trigger inside another parenthetical: an aside, invisible here
                # nor do the words of an aside between them lengthen the clause
                dist -= self._aside_words(trig.end, pos) if back else self._aside_words(pos, trig.start)
            kind = trig.kind
            # a forward negation counts only the words outside the findings of its list
            list_dist = (
                self._free_between(trig.end, pos)
                if back and self.spans and dist > _LIST_FROM and NEGATED in kind.categories
                else dist
            )
            if list_dist > self.max_scope:
                break
            # only for a finding in the change phrase ("no change in the size of the small effusion"); one
            # further down a list is negated ("negative for change in appetite, weight loss or anemia")
            change_end = self.change_negations.get(trig.start) if self.change_negations else None
            # a change noun whose object is a finding governs the list after it too ("no interval change
            # in the basal opacities, scarring or atelectasis")
            denies_change = (
                change_end is not None
                and list_dist <= _CHANGE_REACH
                and (
                    not back
                    or not _CLAUSE_PUNCT.search(self.low, change_end, pos)
                    or (self._change_object(change_end) and not _LIST_PUNCT.search(self.low, change_end, pos))
                )
            )
            rules = kind.forward_rules if back else kind.backward_rules
            # "effusion, resolved pneumonia": a trigger directly followed by another target reads forward
            # (if it can: "pneumothorax has not recurred after tube removal" reads back)
            if (
                rules
                and not back
                and kind.forward_rules
                and not kind.two_sided
                and self._target_follows(trig.end)
            ):
                rules = ()
            ends = None  # whether this negation's list ends before the target (computed once, if needed)
            for rule in rules:
                cat = rule.category
                if cat in found or cat in terminated:
                    continue
                if cat == NEGATED:
                    if denies_change or list_dist > rule.max_scope:
                        continue
                    if back and rule.direction == "forward":
                        if ends is None:  # most negations have no comma and no other finding before it
                            ends = (
                                self.low.find(",", trig.end, pos) >= 0 or self._target_between(trig.end, pos)
                            ) and self._negation_ends(trig.end, pos, target_end)
                        if ends:
                            continue
                elif dist > rule.max_scope:
                    continue
                # a nearer trigger of another category ends the scope, within one dimension: time
                # ("history of", "old") is independent of existence ("no known allergies": negated)
                family, dim = _BLOCKERS[cat]
                if seen and any((cats & dim) and not (cats & family) for cats in seen):
                    continue
                found[cat] = rule.phrase
            if kind.terminates_all:
                break
            if kind.terminates:
                terminated = terminated | kind.terminates
            if denies_change:
                terminated = terminated | {NEGATED}  # "no effusion, no change in the nodule": a new clause
            if kind.pseudo:
                continue
            cats = kind.modifies
            if denies_change:
                cats = cats - {NEGATED}
            if back and CHRONIC in cats and dist > kind.chronic_scope:
                # "chronic"/"old" qualifies the finding right after it: out of its reach it does not end a
                # history cue's list ("history of chronic back pain and bulging disks")
                cats = cats - {CHRONIC}
            if cats:
                seen.append(cats)


def needs_scope(triggers: Sequence[Trigger]) -> bool:
    """Whether any trigger can modify a target (terminations, pseudo-triggers and change nouns alone
    cannot: a sentence with only those needs no scope)."""
    return any(t.kind.modifies for t in triggers)


def _result(found: dict[str, str]) -> ContextResult:
    if not found:
        return ContextResult()
    # temporality: "again seen"/"stable" mean present now and win over a past cue; "old"/"chronic" are
    # historical in ConText's sense (began > 2 weeks ago) but present (``chronic``)
    current = CURRENT in found
    certainty = "possible" if POSSIBLE in found else "probable" if PROBABLE in found else "definite"
    return ContextResult(
        negated=NEGATED in found,
        uncertain=certainty != "definite",
        historical=not current and (HISTORICAL in found or CHRONIC in found),
        hypothetical=HYPOTHETICAL in found,
        experiencer="other" if FAMILY in found else "patient",
        certainty=certainty,
        triggers=[f"{cat}:{phrase}" for cat, phrase in found.items()],
        chronic=not current and CHRONIC in found and HISTORICAL not in found,
    )


def apply_section(res: ContextResult, section: str, categories: dict[str, tuple[str, ...]]) -> ContextResult:
    """A target in a past-history section is historical, in a family-history section the family's."""
    for cat in categories.get(section, ()):
        if cat == HISTORICAL and not res.historical:
            res.historical, res.chronic = True, False
            res.triggers.append(f"{HISTORICAL}:section {section}")
        elif cat == FAMILY and res.experiencer == "patient":
            res.experiencer = "other"
            res.triggers.append(f"{FAMILY}:section {section}")
    return res


def assert_target(
    low: str,
    start: int,
    end: int,
    triggers: Sequence[Trigger],
    sentence: tuple[int, int] | None = None,
    section: str | None = None,
) -> ContextResult:
    """The ConText status of one target ``low[start:end]`` given its sentence's triggers (text order);
    ``sentence``: its bounds, where parentheticals are looked for; with ``section`` too, a lasting
    condition written alone as a problem-list item is CHRONIC (``problem_list_item``)."""
    lo = min([start] + [t.start for t in triggers])
    hi = max([end] + [t.end for t in triggers])
    res = SentenceScope(low, lo, hi, triggers, [start], sentence=sentence).assert_target(start, end)
    if section is not None and sentence is not None and not res.triggers and problem_list_item(
        low, start, end, sentence, section
    ):
        # began long before the report (ConText's historical) and is still present
        res = _result({CHRONIC: "problem list"})
    elif (
        res.negated
        and not res.historical
        and not _DENIED_HABITS.cues.isdisjoint(res.triggers)
        and _DENIED_HABITS.pattern.fullmatch(_target_name(low, start, end)) is not None
    ):
        # "denies alcohol or drug use": the patient's use over time, as the social history records it
        res.historical = True
        res.triggers.append(f"{HISTORICAL}:denied habit")
    if (
        not res.historical
        and not any(t.startswith(CURRENT) for t in res.triggers)
        and own_time_word(low, start, end)
    ):
        # "former smoker", "psychiatric history": the cue is the target's own word
        res.historical = True
        res.triggers.append(f"{HISTORICAL}:own word")
    return res
