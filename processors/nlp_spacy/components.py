"""spaCy pipeline components around the radstream engine (``processors.nlp``).

The engine analyses ``doc.text`` (character offsets); each result becomes a span of the Doc's tokens via
``doc.char_span(..., alignment_mode="expand")``, so every span is a whole number of the pipeline's own
tokens. What a span carries is one JSON-ready dict (the engine's dataclass as a dict): a finding's is
``span._.radstream``, and ``._.negated`` and the other attributes read from it; a measurement's is
``span._.radstream_measurement`` (and so on). So a Doc with our results still serialises
(``Doc.to_bytes``, ``DocBin(store_user_data=True)``, ``nlp.pipe(n_process=2)``).

Span groups (``doc.spans``): ``radstream_sections`` (label: the section name), ``radstream_findings``
(label: the concept; a user's TargetRule: its category), ``radstream_measurements`` (label: the kind),
``radstream_assessments`` (label: the system, e.g. ``BI-RADS``), ``radstream_critical`` (label: the
concept), ``radstream_recommendations`` (label: the kind), ``radstream_communication``. The sections
and findings groups are always set; the others only when the report has such a span
(``doc.spans.get(key, [])``).
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import srsly
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc, Span, Token
from spacy.util import filter_spans

from processors.nlp import ReportAnalysis, get_engine
from processors.nlp.types import plain
from processors.nlp_spacy.rules import TargetRule

SECTIONS = "radstream_sections"
FINDINGS = "radstream_findings"
MEASUREMENTS = "radstream_measurements"
ASSESSMENTS = "radstream_assessments"
CRITICAL = "radstream_critical"
RECOMMENDATIONS = "radstream_recommendations"
COMMUNICATION = "radstream_communication"
RULES_FILE = "target_rules.json"

# ------------------------------------------------------------------ extensions

# Span._.<name> read from the span's record; None on a span the components did not annotate
_RECORD_FIELDS = (
    "negated",
    "uncertain",
    "historical",
    "hypothetical",
    "experiencer",
    "certainty",
    "concept",
    "category",
    "laterality",
    "anatomy",
    "severity",
    "change",
    "size_mm",
    "triggers",
    "source",
)


def _record_getter(name: str) -> Callable[[Span], Any]:
    def get(span: Span) -> Any:
        rec = span._.radstream
        return rec.get(name) if rec else None

    return get


def _span_section(span: Span) -> str | None:
    rec = span._.radstream
    if rec and rec.get("section"):
        return str(rec["section"])
    return _section_at(span.doc, span.start_char)


def _token_section(token: Token) -> str | None:
    return _section_at(token.doc, token.idx)


def _section_at(doc: Doc, char: int) -> str | None:
    """The name of the radstream section holding offset ``char`` (None without the sections component)."""
    group = doc.spans.get(SECTIONS)
    if not group:
        return None
    spans = list(group)
    i = bisect.bisect_right([s.start_char for s in spans], char) - 1
    return spans[i].label_ if i >= 0 and char < spans[i].end_char else None


_OURS = "processors.nlp_spacy.components"
# Span._.<name>: JSON-ready records. Values are keyed by the span's character offsets (spaCy), so each kind
# has its own name: an assessment or measurement never shares a record with a finding at the same offsets
_RECORDS = (
    "radstream",  # a finding (the lexicon's, a TargetRule's, another component's entity)
    "radstream_measurement",
    "radstream_assessment",
    "radstream_recommendation",
    "radstream_communication",
)


def _ensure(cls: type[Span] | type[Token] | type[Doc], name: str, **kw: Any) -> None:
    """Register ``cls._.name`` unless this module already did; another package's extension of the same
    name is an error, never silently replaced."""
    if cls.has_extension(name):
        default, method, getter, setter = cls.get_extension(name)
        if getter is not None and getattr(getter, "__module__", None) == _OURS:
            return
        if getter is None and "default" in kw and default is None and method is None and setter is None:
            return  # our plain value slot (registered by an earlier import of this module)
        raise ValueError(
            f"{cls.__name__}._.{name} is already registered by another package; the radstream "
            "components need that name (remove the other extension or run them in another pipeline)"
        )
    cls.set_extension(name, **kw)


_RECORD_KEYS = frozenset(("._.", name) for name in _RECORDS)


def register_extensions() -> None:
    """``Span._.radstream`` (a finding's record), the attributes read from it, the records of the other
    span groups (``Span._.radstream_measurement`` ...), ``Span/Token._.section`` and ``Doc._.radstream``
    (modality, body region, contrast, chest labels, NLP version)."""
    for name in _RECORDS:
        _ensure(Span, name, default=None)
    _ensure(Doc, "radstream", default=None)
    for name in _RECORD_FIELDS:
        _ensure(Span, name, getter=_record_getter(name))
    _ensure(Span, "section", getter=_span_section)
    _ensure(Token, "section", getter=_token_section)


# ------------------------------------------------------------------ the analysis, once per Doc

# radstream_sections leaves its analysis here for the radstream_context that follows it, and the
# context component takes it out, so a Doc costs one engine run and one ``doc.text`` (which spaCy
# rebuilds from the tokens on every call: as costly as the engine on a short report). Weak keys: an
# entry goes with its Doc. Nothing is put on the Doc itself, whose user_data must stay msgpack-ready
# (Doc.to_bytes, DocBin, nlp.pipe(n_process=2)).
_pending: weakref.WeakKeyDictionary[Doc, tuple[str | None, ReportAnalysis]] = weakref.WeakKeyDictionary()


def analysis_of(doc: Doc, chest_mapping: str | None, *, leave: bool) -> ReportAnalysis:
    """The engine's analysis of ``doc.text``; ``leave``: keep it for the next component of this Doc."""
    found = _pending.pop(doc, None)
    if found is not None and found[0] == chest_mapping:
        analysis = found[1]
    else:
        analysis = get_engine(chest_mapping).analyze(doc.text)
    if leave:
        _pending[doc] = (chest_mapping, analysis)
    return analysis


# ------------------------------------------------------------------ the component


class Radstream:
    """Sections and/or findings with ConText, measurements and categories, on a spaCy Doc.

    ``add_ents``: also put the findings into ``doc.ents`` where they overlap no entity already there
    (``overwrite_ents``: ours replace the overlapping ones, as spaCy's entity_ruler ``overwrite_ents``);
    they are always in ``doc.spans["radstream_findings"]``. ``use_lexicon``: the engine's own findings
    (False: only the user's TargetRules). ``assert_ents``: give the entities other components set before
    this one (an entity_ruler's, a model's) a ConText status, as medspaCy's ConText does.
    """

    def __init__(
        self,
        nlp: Language,
        name: str,
        *,
        sections: bool,
        context: bool,
        chest_mapping: str | None = None,
        add_ents: bool = True,
        overwrite_ents: bool = False,
        use_lexicon: bool = True,
        assert_ents: bool = True,
    ):
        register_extensions()
        self.nlp = nlp
        self.name = name
        self.sections = sections
        self.context = context
        self.chest_mapping = chest_mapping
        self.add_ents = add_ents
        self.overwrite_ents = overwrite_ents
        self.use_lexicon = use_lexicon
        self.assert_ents = assert_ents
        self.rules: list[TargetRule] = []
        self._phrases = PhraseMatcher(nlp.vocab, attr="LOWER")
        self._tokens = Matcher(nlp.vocab)
        self._regexes: list[tuple[re.Pattern[str], int]] = []
        self._rule_of: dict[int, int] = {}  # matcher key (hash) -> index in self.rules

    # ---------------------------------------------------------------- user rules
    def add(self, rules: TargetRule | Iterable[TargetRule]) -> None:
        """Add the user's own target rules (medspaCy's ``TargetMatcher.add``)."""
        if isinstance(rules, TargetRule):
            rules = [rules]
        for rule in rules:
            if not isinstance(rule, TargetRule):
                raise TypeError(f"expected a TargetRule, got {type(rule).__name__}")
            if not self.context:
                raise ValueError(f"component {self.name!r} finds no targets; add rules to radstream_context")
            index = len(self.rules)
            key = f"radstream_rule_{index}"
            if isinstance(rule.pattern, str):
                self._regexes.append((re.compile(rule.pattern, re.IGNORECASE), index))
            elif isinstance(rule.pattern, list):
                self._tokens.add(key, [rule.pattern], on_match=rule.on_match)
            else:
                self._phrases.add(key, [self.nlp.make_doc(rule.literal)], on_match=rule.on_match)
            self._rule_of[self.nlp.vocab.strings[key]] = index
            self.rules.append(rule)

    # ---------------------------------------------------------------- pipeline
    def __call__(self, doc: Doc) -> Doc:
        analysis = analysis_of(doc, self.chest_mapping, leave=not self.context)
        text = analysis.text  # == doc.text
        if self.sections:
            _set_group(doc, SECTIONS, ((s.start, s.end, s.name, s) for s in analysis.sections), always=True)
        if self.context:
            self._context(doc, text, analysis)
        return doc

    def _context(self, doc: Doc, text: str, analysis: ReportAnalysis) -> None:
        earlier_ents = list(doc.ents) if doc.has_annotation("ENT_IOB") else []
        if doc.user_data:
            # a Doc run through the pipeline again starts clean: without our earlier entities and records
            earlier_ents = [e for e in earlier_ents if not _ours(e)]
            for key in [k for k in doc.user_data if isinstance(k, tuple) and k[:2] in _RECORD_KEYS]:
                del doc.user_data[key]
        doc._.radstream = {
            "nlp_version": analysis.nlp_version,
            "modality": analysis.modality,
            "body_region": analysis.body_region,
            "contrast": analysis.contrast,
            "chest_labels": dict(analysis.chest_labels),
        }
        user = self._user_targets(doc, text, analysis)
        taken = _occupied(len(doc), user)
        findings: list[Span] = []
        if self.use_lexicon:
            critical = {(c.start, c.end): c.level for c in analysis.critical_results}
            for f in analysis.findings:
                span = doc.char_span(f.start, f.end, label=f.concept, alignment_mode="expand")
                if span is None or any(taken[span.start : span.end]):
                    continue  # a user's rule took these tokens
                rec = _record(f)
                if (f.start, f.end) in critical:
                    rec["critical_level"] = critical[(f.start, f.end)]
                _put(span, rec)
                findings.append(span)
        findings = sorted(findings + user, key=lambda s: (s.start, s.end))
        doc.spans[FINDINGS] = findings
        m_items = ((m.start, m.end, m.kind, m) for m in analysis.measurements)
        _set_group(doc, MEASUREMENTS, m_items, "radstream_measurement")
        a_items = ((a.start, a.end, a.system, a) for a in analysis.assessments)
        _set_group(doc, ASSESSMENTS, a_items, "radstream_assessment")
        # a critical result is a finding (same offsets): its record is the finding's, with critical_level
        _set_group(doc, CRITICAL, ((c.start, c.end, c.concept, c) for c in analysis.critical_results))
        r_items = ((r.start, r.end, r.kind, r) for r in analysis.recommendations)
        _set_group(doc, RECOMMENDATIONS, r_items, "radstream_recommendation")
        comm = analysis.communication
        c_items = [(comm.start, comm.end, "communication", comm)] if comm else []
        _set_group(doc, COMMUNICATION, c_items, "radstream_communication")
        if self.assert_ents:
            for ent in earlier_ents:
                if ent._.radstream is None:
                    _put(ent, self._asserted(text, ent, analysis, concept=ent.label_, source="ent"))
        if self.add_ents and findings:
            doc.ents = _merge_ents(earlier_ents, findings, self.overwrite_ents)

    def _user_targets(self, doc: Doc, text: str, analysis: ReportAnalysis) -> list[Span]:
        if not self.rules:
            return []
        found: list[tuple[Span, int]] = []
        matches = [
            *(self._phrases(doc) if len(self._phrases) else []),
            *(self._tokens(doc) if len(self._tokens) else []),
        ]
        for key, start, end in matches:
            index = self._rule_of[key]
            found.append((Span(doc, start, end, label=self.rules[index].category), index))
        for rx, index in self._regexes:
            for m in rx.finditer(text):
                span = doc.char_span(
                    m.start(), m.end(), label=self.rules[index].category, alignment_mode="expand"
                )
                if span is not None and len(span):
                    found.append((span, index))
        rule_of_span = {(s.start, s.end, s.label_): i for s, i in found}
        spans = filter_spans([s for s, _ in found])  # longest first, no overlaps (as medspaCy's matcher)
        for span in spans:
            rule = self.rules[rule_of_span[(span.start, span.end, span.label_)]]
            rec = self._asserted(text, span, analysis, concept=rule.category, source="user")
            rec["literal"] = rule.literal
            if rule.metadata:
                rec["metadata"] = rule.metadata
            for attr, value in (rule.attributes or {}).items():
                if attr in rec or attr in _RECORD_FIELDS:
                    rec[attr] = value
                else:
                    span._.set(attr, value)
            _put(span, rec)
        return spans

    def _asserted(
        self, text: str, span: Span, analysis: ReportAnalysis, *, concept: str, source: str
    ) -> dict[str, Any]:
        """The record of a target the lexicon did not give: the engine's ConText status of its span."""
        res = get_engine(self.chest_mapping).assert_term(text, (span.start_char, span.end_char))
        rec = _record(res)
        rec.update(
            concept=concept,
            category=source,
            text=span.text,
            start=span.start_char,
            end=span.end_char,
            section=_section_name(analysis, span.start_char),
            source=source,
        )
        return rec

    # ---------------------------------------------------------------- serialisation (the user's rules)
    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        return bytes(srsly.msgpack_dumps({"target_rules": [r.to_dict() for r in self.rules]}))

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> Radstream:
        self._reset()
        self.add([TargetRule.from_dict(d) for d in srsly.msgpack_loads(data)["target_rules"]])
        return self

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        TargetRule.to_json(self.rules, path / RULES_FILE)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> Radstream:
        self._reset()
        file = Path(path) / RULES_FILE
        if file.exists():
            self.add(TargetRule.from_json(file))
        return self

    def _reset(self) -> None:
        self.rules = []
        self._phrases = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        self._tokens = Matcher(self.nlp.vocab)
        self._regexes = []
        self._rule_of = {}


def _ours(ent: Span) -> bool:
    """An entity this component set (on an earlier run over the same Doc)."""
    rec = ent._.radstream
    return bool(rec) and rec.get("source") in ("rules", "user") and rec.get("concept") == ent.label_


def _section_name(analysis: ReportAnalysis, char: int) -> str | None:
    starts = [s.start for s in analysis.sections]
    i = bisect.bisect_right(starts, char) - 1
    return analysis.sections[i].name if i >= 0 else None


_SCALARS = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _record(obj: Any) -> dict[str, Any]:
    """``plain(obj)`` for the engine's flat dataclasses, without its per-value dataclass checks (the
    generic walk was a quarter of a long report's time in the pipeline)."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        if not dataclasses.is_dataclass(obj):
            return dict(plain(obj))
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    out = {name: getattr(obj, name) for name in names}
    for key, value in out.items():
        kind = type(value)
        if kind in _SCALARS:
            continue
        if kind is list or kind is tuple:
            out[key] = [v if type(v) in _SCALARS else plain(v) for v in value]
        else:
            out[key] = plain(value)
    return out


def _put(span: Span, rec: dict[str, Any]) -> None:
    """Set the finding record of the span. Spans with the same offsets share it (spaCy keys extension
    values by offsets): the first one set in a run stays (a lexicon finding or TargetRule over exactly
    an earlier component's entity gives it its status)."""
    ext = span._
    if ext.radstream is None:
        ext.radstream = rec


def _set_group(
    doc: Doc,
    key: str,
    items: Iterable[tuple[int, int, str, Any]],
    record: str | None = None,
    always: bool = False,
) -> None:
    """doc.spans[key] from (start, end, label, engine object), each object's record in ``Span._.<record>``;
    an empty group is left out unless ``always`` (each group costs Doc.to_bytes time, and most reports
    have no assessment category)."""
    spans = []
    for start, end, label, obj in items:
        span = doc.char_span(start, end, label=label, alignment_mode="expand")
        if span is None or not len(span):
            continue
        if record is not None:
            span._.set(record, _record(obj))
        spans.append(span)
    if spans or always:
        doc.spans[key] = spans
    elif key in doc.spans:
        del doc.spans[key]  # from an earlier run on the same Doc


def _occupied(n: int, spans: Iterable[Span]) -> list[bool]:
    taken = [False] * n
    for s in spans:
        taken[s.start : s.end] = [True] * len(s)
    return taken


def _merge_ents(existing: list[Span], ours: list[Span], overwrite: bool) -> list[Span]:
    """doc.ents may not overlap: ours go where no earlier entity is (``overwrite``: ours win), and among
    ours the first in text order wins."""
    taken = [False] * (max([s.end for s in existing + ours], default=0))
    kept_ours = []
    if not overwrite:
        for s in existing:
            taken[s.start : s.end] = [True] * len(s)
    for s in ours:
        if not any(taken[s.start : s.end]):
            taken[s.start : s.end] = [True] * len(s)
            kept_ours.append(s)
    kept = [s for s in existing if overwrite is False or not any(_overlaps(s, o) for o in kept_ours)]
    return sorted(kept + kept_ours, key=lambda s: s.start)


def _overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


# ------------------------------------------------------------------ factories

_CONTEXT_CONFIG: dict[str, Any] = {
    "chest_mapping": None,
    "add_ents": True,
    "overwrite_ents": False,
    "use_lexicon": True,
    "assert_ents": True,
}


@Language.factory("radstream_sections", default_config={"chest_mapping": None})
def make_sections(nlp: Language, name: str, chest_mapping: str | None) -> Radstream:
    """Report sections as ``doc.spans["radstream_sections"]`` and ``Token/Span._.section``."""
    return Radstream(nlp, name, sections=True, context=False, chest_mapping=chest_mapping)


def _context_factory(sections: bool, doc: str) -> Callable[..., Radstream]:
    """The factory of radstream_context (``sections`` False) or radstream (True): spaCy validates the
    config against this signature."""

    def make(
        nlp: Language,
        name: str,
        chest_mapping: str | None,
        add_ents: bool,
        overwrite_ents: bool,
        use_lexicon: bool,
        assert_ents: bool,
    ) -> Radstream:
        return Radstream(
            nlp,
            name,
            sections=sections,
            context=True,
            chest_mapping=chest_mapping,
            add_ents=add_ents,
            overwrite_ents=overwrite_ents,
            use_lexicon=use_lexicon,
            assert_ents=assert_ents,
        )

    make.__doc__ = doc
    return make


make_context = Language.factory("radstream_context", default_config=_CONTEXT_CONFIG)(
    _context_factory(
        False, "Findings with ConText, measurements, categories, critical results, recommendations."
    )
)
make_radstream = Language.factory("radstream", default_config=_CONTEXT_CONFIG)(
    _context_factory(True, "radstream_sections and radstream_context in one component.")
)
