"""The NLP engine: sections -> sentences -> findings (lexicon) -> ConText -> attributes -> chest labels,
plus the extractors of measurements, recommendations, assessment categories, critical results and
exam normalisation. Built once per process and chest mapping (``get_engine()``); picklable (it pickles
as its data file paths and is rebuilt on unpickling), so it works in a process pool.
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib
import operator
import re
from collections.abc import Callable, Iterator
from typing import Any

from processors.nlp import context as ctx
from processors.nlp.chest import ChestMapping
from processors.nlp.lexicon import Attribute, Concept, add_spelling_variants, load_attributes, load_concepts
from processors.nlp.matching import WORD_RE, PhraseMatcher, lower_same_length, normalize
from processors.nlp.sections import SectionSplitter
from processors.nlp.sentences import SentenceSplitter
from processors.nlp.types import ContextResult, Finding, ReportAnalysis, Section, Sentence

_START = operator.attrgetter("start")


# one per phrase found: (start, end, its concepts, its ConText rules); a plain tuple (a NamedTuple costs
# 8x to build, a frozen dataclass more)
_Hit = tuple[int, int, tuple[Concept, ...], tuple[ctx.Rule, ...]]


class Engine:
    def __init__(self, chest_mapping: str | None = None):
        self._chest_mapping_path = chest_mapping
        # first: an extractor that fails to import fails the engine before seconds of matcher building
        self.extractors = _load_extractors()
        self.sections = SectionSplitter()
        self.sentences = SentenceSplitter()
        self.rules = ctx.load_rules()
        # a forward trigger reads the words after it: no sentence ends there ("no Pneumothorax"), unless
        # its last word is a predicate that can close a clause ("not seen")
        self.sentences.keep_after(
            words[-1]
            for r in self.rules
            if r.direction in ("forward", "bidirectional")
            and (words := WORD_RE.findall(r.phrase.lower()))
            and words[-1] not in ctx.CLAUSES.closers
        )
        self.section_categories = ctx.load_section_categories()
        self.past_for_episodes = ctx.load_past_for_episodes()
        concept_phrases, concept_patterns = load_concepts()
        _add_critical_synonyms(concept_phrases)
        add_spelling_variants(concept_phrases)  # again, for the critical-result synonyms
        phrases: dict[str, list[object]] = {p: list(cs) for p, cs in concept_phrases.items()}
        for rule in self.rules:
            phrases.setdefault(rule.phrase, []).append(rule)
        self.matcher = PhraseMatcher(phrases, list(concept_patterns))
        self._trigger_phrases: dict[str, list[object]] = {}
        for rule in self.rules:
            self._trigger_phrases.setdefault(rule.phrase, []).append(rule)
        self.trigger_matcher = PhraseMatcher(self._trigger_phrases)
        self.attributes = PhraseMatcher(dict(load_attributes().items()))
        # attributes are read only in sentences with a finding: their scan may start at the first such
        # sentence when no attribute hit can reach into it (see _attribute_hits)
        self._attributes_words_only = self.attributes.matches_only_words()
        self.chest = ChestMapping.load(chest_mapping)
        # payload list of a lexicon entry -> (the list, its concepts, its ConText rules); the list is kept
        # so that an id() reused by a short-lived list is detected
        self._split: dict[int, tuple[list[Any], tuple[Concept, ...], tuple[ctx.Rule, ...]]] = {}
        # (rules of a phrase, section) -> (those rules, the kind of trigger of those that apply there,
        # whether some of them hold only after certain words, the kind when the phrase is a bare answer)
        self._section_rules: dict[
            tuple[int, str], tuple[tuple[ctx.Rule, ...], ctx.TriggerKind | None, bool, ctx.TriggerKind | None]
        ]
        self._section_rules = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (Engine, (self._chest_mapping_path,))

    # ------------------------------------------------------------------ pipeline
    def analyze(self, text: str, exam: str | None = None) -> ReportAnalysis:
        text = text or ""
        low = lower_same_length(text)
        sections = self.sections.split(text, low)
        sentences = self._sentences(text, sections)
        findings = self._findings(text, low, sentences)
        result = ReportAnalysis(text=text, sections=sections, sentences=sentences, findings=findings)
        self._extract(result, exam, low)
        result.chest_labels = self.chest.label(findings)
        return result

    def _sentences(self, text: str, sections: list[Section]) -> list[Sentence]:
        out: list[Sentence] = []
        for sec in sections:
            for a, b in self.sentences.split(text, sec.body_start, sec.end):
                out.append(Sentence(len(out), a, b, sec.name))
        return out

    def _findings(self, text: str, low: str, sentences: list[Sentence]) -> list[Finding]:
        if not sentences:
            return []
        starts = [s.start for s in sentences]
        ends = [s.end for s in sentences]
        per_sentence: dict[int, list[_Hit]] = {}
        with_rules: set[int] = set()  # the sentences that hold a ConText phrase
        first = last = -1  # the first and last sentence with a target (hits come in text order)
        for a, b, payloads in self.matcher.finditer(low):
            i = bisect.bisect_right(starts, a) - 1
            if i < 0 or b > ends[i]:
                continue  # inside a header, or across a sentence end
            split = self._split.get(id(payloads))
            if split is None or split[0] is not payloads:
                split = (
                    payloads,
                    tuple(p for p in payloads if isinstance(p, Concept)),
                    tuple(p for p in payloads if isinstance(p, ctx.Rule)),
                )
                if len(self._split) < 100_000:
                    self._split[id(payloads)] = split
            per_sentence.setdefault(i, []).append((a, b, split[1], split[2]))
            if split[2]:
                with_rules.add(i)
            if split[1]:
                last = i
                if first < 0:
                    first = i
        findings: list[Finding] = []
        attrs = self._attribute_hits(low, sentences[first].start, sentences[last].end) if first >= 0 else []
        attr_starts = [a[0] for a in attrs]
        for i, hits in per_sentence.items():
            targets = [h for h in hits if h[2]]
            if not targets:
                continue
            sent = sentences[i]
            triggers = (
                self._triggers(hits, sent.section, low, sent.start, sent.end) if i in with_rules else []
            )
            # no trigger that can modify a target: every target is plainly asserted (no scope to build)
            scope = (
                ctx.SentenceScope(
                    low,
                    sent.start,
                    sent.end,
                    triggers,
                    [a for a, _, _, _ in targets],
                    [(a, b) for a, b, _, _ in targets],
                )
                if ctx.needs_scope(triggers)
                else None
            )
            section = sent.section
            plain = section not in self.section_categories  # no section-wide category to add
            new: list[Finding] = []
            for a, b, concepts, _ in targets:
                c = concepts[0]
                if plain and (scope is None or c.category == "normal"):  # nothing can modify it
                    new.append(Finding(c.concept, c.category, text[a:b], a, b, i, section))
                    continue
                if scope is None or c.category == "normal":
                    res = ContextResult()
                else:
                    res = scope.assert_target(a, b)
                if not plain:
                    res = ctx.apply_section(res, section, self.section_categories)
                new.append(
                    Finding(
                        concept=c.concept,
                        category=c.category,
                        text=text[a:b],
                        start=a,
                        end=b,
                        sentence=i,
                        section=section,
                        negated=res.negated,
                        uncertain=res.uncertain,
                        # a finding is historical when it is in the past, not when it is old and
                        # still there ("chronic", "old", "known": its triggers say CHRONIC)
                        # ... unless the finding is an episode that ended ("sequela of old pneumonia")
                        historical=res.historical
                        and (
                            not res.chronic
                            or (c.episodic and not self.past_for_episodes.isdisjoint(res.triggers))
                        ),
                        hypothetical=res.hypothetical,
                        experiencer=res.experiencer,
                        certainty=res.certainty,
                        triggers=res.triggers,
                    )
                )
            lo = bisect.bisect_left(attr_starts, sent.start)
            hi = bisect.bisect_left(attr_starts, sent.end)
            if hi > lo:  # without attributes, no finding has anatomy to take a side from
                _attach_attributes(attrs[lo:hi], new)
            findings.extend(new)
        findings.sort(key=_START)
        return findings

    def _attribute_hits(self, low: str, start: int, end: int) -> list[tuple[int, int, list[Any]]]:
        """The attribute hits of ``low`` that start in [start, end). The scan starts at ``start`` when no
        hit can reach over it: the blanks before it follow a character that no hit holds (a header's
        colon, a full stop), since a hit holds only words, blanks and hyphens and starts with a word."""
        pos = start
        while pos > 0 and low[pos - 1].isspace():
            pos -= 1
        if pos == 0 or (
            self._attributes_words_only and low[pos - 1] != "-" and WORD_RE.match(low, pos - 1) is None
        ):
            return self.attributes.hits_between(low, start, end)
        # "left\nLower lobe ...": a hit may run over the sentence start; scan from the text start
        return [h for h in self.attributes.hits_between(low, 0, end) if h[0] >= start]

    def _triggers(
        self, hits: list[_Hit], section: str, low: str, sentence_start: int, sentence_end: int
    ) -> list[ctx.Trigger]:
        out = []
        cache = self._section_rules
        for a, b, _, all_rules in hits:
            if all_rules:
                key = (id(all_rules), section)
                found = cache.get(key)
                if found is None or found[0] is not all_rules:
                    rules = tuple(r for r in all_rules if r.applies_in(section))
                    answers = tuple(r for r in rules if r.answer)
                    if answers:
                        rules = tuple(r for r in rules if not r.answer)
                    conditional = any(r.conditional for r in rules)
                    found = (
                        all_rules,
                        ctx.TriggerKind.of(rules) if rules else None,
                        conditional,
                        ctx.TriggerKind.of(rules + answers) if answers else None,
                    )
                    if len(cache) < 100_000:
                        cache[key] = found
                kind = found[1]
                # "Pneumothorax: no.": the phrase answers the label before it (only there does it read back)
                if found[3] is not None and ctx.is_answer(low, sentence_start, a, b, sentence_end):
                    kind = found[3]
                # rules that hold only after some words ("favor A over") or not before some ("on the lateral")
                if found[2] and kind is not None:
                    kept = ctx.conditions_hold(kind.rules, low, sentence_start, a, b)
                    if len(kept) < len(kind.rules):  # most hold: no new kind to build
                        kind = ctx.TriggerKind.of(kept) if kept else None
                if kind is not None:
                    out.append(ctx.Trigger(a, b, kind))
        return out

    # ------------------------------------------------------------------ term status
    def assert_term(self, text: str, term: str | tuple[int, int]) -> ContextResult:
        """ConText status of a user's own target: a term (its first whole-word occurrence inside a
        sentence, case-insensitive; a header such as "ALLERGIES:" is no mention) or a (start, end) span."""
        low = lower_same_length(text)
        if isinstance(term, str):
            span = _find_term(low, term)
            if span is None:
                raise ValueError(f"term {term!r} not found in text")
        else:
            span = (int(term[0]), int(term[1]))
        sections = self.sections.split(text)
        sentences = self._sentences(text, sections)
        if isinstance(term, str):
            # a header is not a mention: "ALLERGIES: no known allergies" asserts the second one
            for cand in _find_terms(low, term):
                if any(s.start <= cand[0] < s.end for s in sentences):
                    span = cand
                    break
        start, end = span
        sent = next((s for s in sentences if s.start <= start < s.end), None)
        if sent is None:
            return ContextResult()
        # the text either side of the target is matched on its own: a trigger must not reach into the
        # target ("no acute" must not swallow the "acute" of the target "acute distress")
        hits: list[_Hit] = [
            (a, b, (), tuple(p for p in ps if isinstance(p, ctx.Rule)))
            for lo, hi in ((sent.start, start), (end, sent.end))
            for a, b, ps in self.trigger_matcher.finditer(low, lo, hi)
        ]
        triggers = self._triggers(hits, sent.section, low, sent.start, sent.end)
        res = ctx.assert_target(low, start, end, triggers, (sent.start, sent.end), sent.section)
        return ctx.apply_section(res, sent.section, self.section_categories)

    # ------------------------------------------------------------------ other extractors
    def _extract(self, result: ReportAnalysis, exam: str | None, low: str) -> None:
        """Run the extractors of measurements, recommendations, categories, critical results and exam."""
        text, ex = result.text, self.extractors
        sents = [(s.start, s.end) for s in result.sentences]
        # the exam description given (the event's modality/procedure) wins; what it leaves open (e.g. a
        # bare "MR" without a procedure) comes from the report's own EXAM section
        for desc in ((exam or "").strip(), _exam_text(result).strip()):
            if not desc:
                continue
            info = ex["normalize_exam"](desc)
            if result.modality is None:
                result.modality = _get(info, "modality")
            if result.body_region is None:
                result.body_region = _get(info, "body_region")
            if result.contrast is None:
                result.contrast = _get(info, "contrast")
        found = ex["extract_measurements"](text, sents, low=low)
        if found and len(found) * len(result.findings) <= _MAX_PAIRS:
            found = ex["with_findings"](found, result.findings, text, _sizeable)
        elif found:
            found = _nearest_findings(found, result)
        result.measurements = list(found)
        for m in result.measurements:
            idx = _get(m, "finding")
            if idx is not None:
                f = result.findings[idx]
                size = float(_get(m, "max_mm"))
                f.size_mm = size if f.size_mm is None else max(f.size_mm, size)
        result.recommendations = list(ex["extract_recommendations"](text, sents, low=low))
        result.assessments = list(ex["extract_assessments"](text, low=low))
        result.critical_results = list(ex["critical_results"](result.findings))
        result.communication = ex["find_communication"](text, sents, low=low)


def _attach_attributes(attrs: list[tuple[int, int, list[Any]]], findings: list[Finding]) -> None:
    """Give each attribute (anatomy, laterality, severity, change) to the nearest finding of the sentence."""
    if not findings:
        return
    mids = [(f.start + f.end) / 2 for f in findings]  # findings are in text order
    for a, b, payloads in attrs:
        mid = (a + b) / 2
        j = bisect.bisect_left(mids, mid)
        if j == len(mids) or (j > 0 and mid - mids[j - 1] <= mids[j] - mid):
            j -= 1
        target = findings[j]
        for p in payloads:
            attr: Attribute = p
            if attr.group == "anatomy":
                if attr.value not in target.anatomy:
                    target.anatomy.append(attr.value)
            elif attr.group == "laterality":
                if target.laterality is None:
                    target.laterality = attr.value
                elif target.laterality != attr.value:
                    target.laterality = "bilateral"
            elif attr.group == "severity":
                target.severity = target.severity or attr.value
            elif attr.group == "change":
                target.change = target.change or attr.value
    for f in findings:
        if f.laterality is None and f.anatomy:
            sides = {a.split("_", 1)[0] for a in f.anatomy if a.startswith(("right_", "left_"))}
            if len(sides) == 1:
                f.laterality = sides.pop()
            elif len(sides) == 2:
                f.laterality = "bilateral"


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _exam_text(result: ReportAnalysis) -> str:
    for s in result.sections:
        if s.name == "exam":
            return result.text[s.body_start : s.end]
    return ""


def _find_term(low: str, term: str) -> tuple[int, int] | None:
    return next(_find_terms(low, term), None)


def _find_terms(low: str, term: str) -> Iterator[tuple[int, int]]:
    """Whole-word occurrences of ``term``; when there is none, occurrences inside words (a span marked
    in text that lost a blank, "resectionto"), white space between its words being any run."""
    hits = PhraseMatcher({term: [term]}).finditer(low)
    if not hits:
        words = term.lower().split()
        pattern = r"\s+".join(re.escape(w) for w in words) if words else r"(?!x)x"
        hits = [(m.start(), m.end(), []) for m in re.finditer(pattern, low)]
    for start, end, _ in hits:
        yield start, end


_SIZED = frozenset(
    {"lung", "general", "pleura", "mediastinum", "bone", "abdomen", "neuro", "vascular", "critical"}
)


# with_findings compares every measurement with every finding of its sentence (a regex per pair): above
# this many pairs (reports without punctuation) the plain nearest-finding rule below is used instead
_MAX_PAIRS = 5_000


def _nearest_findings(measurements: list[Any], result: ReportAnalysis) -> list[Any]:
    """Attach each measurement to the nearest sizeable finding of its sentence (bisect, linear)."""
    sents = [s.start for s in result.sentences]
    cands = [(f.start, i) for i, f in enumerate(result.findings) if _sizeable(f)]
    starts = [c[0] for c in cands]
    out = []
    for m in measurements:
        pos = _get(m, "start")
        if _get(m, "finding") is not None or pos is None or not cands:
            out.append(m)
            continue
        sent = bisect.bisect_right(sents, pos) - 1
        j = bisect.bisect_left(starts, pos)
        best = None
        for k in (j - 1, j):
            if 0 <= k < len(cands):
                f = result.findings[cands[k][1]]
                if f.sentence == sent and (best is None or abs(f.start - pos) < best[0]):
                    best = (abs(f.start - pos), cands[k][1])
        if best is None:
            out.append(m)
        elif isinstance(m, dict):
            out.append(dict(m, finding=best[1]))
        elif dataclasses.is_dataclass(m) and not isinstance(m, type):
            out.append(dataclasses.replace(m, finding=best[1]))
        else:
            out.append(m)
    return out


def _sizeable(f: Finding) -> bool:
    """Findings a size can describe: present (not negated/hypothetical) lesions, not devices or normals."""
    return f.category in _SIZED and not f.negated and not f.hypothetical


_EXTRACTORS = {
    "extract_measurements": "processors.nlp.measurements",
    "with_findings": "processors.nlp.measurements",
    "extract_recommendations": "processors.nlp.recommendations",
    "extract_assessments": "processors.nlp.assessments",
    "critical_results": "processors.nlp.critical",
    "find_communication": "processors.nlp.critical",
    "normalize_exam": "processors.nlp.exam",
}


def _add_critical_synonyms(phrases: dict[str, list[Concept]]) -> None:
    """Critical-result synonyms (processors.nlp.critical) the core lexicon lacks become findings too."""
    from processors.nlp.critical import critical_synonyms

    known = {normalize(p) for p in phrases}
    for concept, synonyms in critical_synonyms().items():
        for syn in synonyms:
            if normalize(syn) not in known:
                phrases.setdefault(syn, []).append(Concept(concept, "critical"))
                known.add(normalize(syn))


class ExtractorError(RuntimeError):
    """An extractor of this repository failed to import or lacks its entry point."""


def _load_extractors() -> dict[str, Callable[..., Any]]:
    """The extractors' entry points. All of them are part of the engine: one that fails to import (a syntax
    error, a broken data file, a missing dependency) or lacks its function is an error, never skipped."""
    out: dict[str, Callable[..., Any]] = {}
    for name, module in _EXTRACTORS.items():
        try:
            mod = importlib.import_module(module)
        except Exception as exc:
            raise ExtractorError(f"NLP extractor {module} ({name}) failed to import: {exc!r}") from exc
        fn = getattr(mod, name, None)
        if not callable(fn):
            raise ExtractorError(f"NLP extractor {module} has no function {name}")
        out[name] = fn
    return out


_ENGINES: dict[str | None, Engine] = {}


def get_engine(chest_mapping: str | None = None) -> Engine:
    """The process-wide engine for a chest mapping file (None: the default mapping), built on first
    use (each worker process builds its own)."""
    engine = _ENGINES.get(chest_mapping)
    if engine is None:
        engine = _ENGINES[chest_mapping] = Engine(chest_mapping)
    return engine


def analyze(text: str, exam: str | None = None, chest_mapping: str | None = None) -> ReportAnalysis:
    return get_engine(chest_mapping).analyze(text, exam)


def assert_term(text: str, term: str | tuple[int, int]) -> ContextResult:
    return get_engine().assert_term(text, term)


__all__ = ["Engine", "ExtractorError", "analyze", "assert_term", "get_engine", "normalize"]
