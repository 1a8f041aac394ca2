"""The spaCy components in real spaCy pipelines, next to spaCy's own sentencizer and entity_ruler."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin, Span

import processors.nlp_spacy as nlp_spacy
from processors.nlp import ReportAnalysis, analyze, get_engine
from processors.nlp_spacy import FINDINGS, SECTIONS, TargetRule, components

REPO = Path(__file__).resolve().parents[3]

REPORT = """EXAM: CT CHEST WITH CONTRAST
INDICATION: Shortness of breath, evaluate for pulmonary embolism. History of breast cancer.
COMPARISON: None.
FINDINGS: Moderate cardiomegaly. Small right pleural effusion measuring 2.1 x 1.5 cm.
No pneumothorax. Possible rib fracture. Mother had lung cancer.
IMPRESSION:
1. Cardiomegaly with a small effusion.
2. No focal consolidation. BI-RADS 4A. Recommend CT chest in 3 months.
"""


def pipeline(*names: str, **config: object) -> spacy.language.Language:
    nlp = spacy.blank("en")
    for name in names:
        nlp.add_pipe(name, config=dict(config) if name.startswith("radstream") else None)
    return nlp


def finding(doc: Doc, text: str) -> Span:
    return next(s for s in doc.spans[FINDINGS] if s.text == text)


# ---------------------------------------------------------------- with components that are not ours


def test_sections_and_context_next_to_sentencizer_and_entity_ruler() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "ONCOLOGY", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}]}])
    nlp.add_pipe("radstream_sections")
    nlp.add_pipe("radstream_context")
    doc = nlp(REPORT)

    assert [s.label_ for s in doc.spans[SECTIONS]] == [
        "exam",
        "history",
        "comparison",
        "findings",
        "impression",
    ]
    assert len(list(doc.sents)) > 5  # the sentencizer's work is untouched
    ents = {(e.text, e.label_) for e in doc.ents}
    # the ruler's entity stays; our "cancer" inside it is a finding in the span group, not an entity
    assert ("breast cancer", "ONCOLOGY") in ents
    onc = next(e for e in doc.ents if e.label_ == "ONCOLOGY")
    assert [e for e in doc.ents if e.start < onc.end and onc.start < e.end] == [onc]
    assert any(s.text == "cancer" and s.start_char < REPORT.index("Mother") for s in doc.spans[FINDINGS])
    assert ("pneumothorax", "pneumothorax") in ents and ("cardiomegaly", "cardiomegaly") in ents
    assert len({(e.start, e.end) for e in doc.ents}) == len(doc.ents)
    # medspaCy-like: the ruler's entity gets a ConText status too
    assert onc._.historical is True and onc._.negated is False and onc._.source == "ent"
    assert onc._.section == "history"


def test_overwrite_ents_puts_ours_in_place_of_an_overlapping_entity() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "ONCOLOGY", "pattern": "breast cancer"}])
    nlp.add_pipe("radstream", config={"overwrite_ents": True})
    ents = {(e.text, e.label_) for e in nlp(REPORT).ents}
    assert ("breast cancer", "ONCOLOGY") not in ents
    assert ("cancer", "neoplasm") in ents


def test_add_ents_false_leaves_doc_ents_alone() -> None:
    doc = pipeline("radstream", add_ents=False)(REPORT)
    assert doc.ents == () and len(doc.spans[FINDINGS]) > 5


# ---------------------------------------------------------------- attributes


def test_each_attribute() -> None:
    doc = pipeline("radstream_sections", "radstream_context")(REPORT)
    pe = finding(doc, "pulmonary embolism")
    assert pe._.hypothetical is True and pe._.negated is False and pe._.section == "history"
    assert finding(doc, "pneumothorax")._.negated is True
    rib = finding(doc, "rib fracture")
    assert rib._.uncertain is True and rib._.certainty == "possible"
    assert any(s.text == "cancer" and s._.historical for s in doc.spans[FINDINGS])
    mother = [s for s in doc.spans[FINDINGS] if s.text == "cancer" and s.start_char > REPORT.index("Mother")]
    assert mother[0]._.experiencer == "other"
    eff = finding(doc, "pleural effusion")
    assert eff.label_ == "pleural_effusion" and eff._.concept == "pleural_effusion"
    assert eff._.laterality == "right" and eff._.size_mm == 21.0 and eff._.category
    card = finding(doc, "cardiomegaly")
    assert card._.severity == "moderate" and card._.experiencer == "patient" and card._.source == "rules"
    assert doc[0]._.section == "exam" and doc[-2]._.section == "impression"

    (m,) = doc.spans["radstream_measurements"]
    assert m.text == "2.1 x 1.5 cm" and m._.radstream_measurement["dims_mm"] == [21.0, 15.0]
    (a,) = doc.spans["radstream_assessments"]
    assert a.label_ == "BI-RADS" and a._.radstream_assessment["category"] == "4A"
    assert a._.category is None  # not a finding
    (r,) = doc.spans["radstream_recommendations"]
    assert r.label_ == "imaging_followup" and r._.radstream_recommendation["interval_days_min"] == 90
    assert [c.label_ for c in doc.spans.get("radstream_critical", [])] == [
        c.concept for c in analyze(REPORT).critical_results
    ]
    assert doc._.radstream["modality"] == "CT" and doc._.radstream["chest_labels"]["Effusion"] == "positive"
    # a span we did not annotate has no status (None, not False)
    assert doc[0:2]._.negated is None and doc[0:2]._.section == "exam"


def test_critical_results_keep_their_finding_record() -> None:
    doc = pipeline("radstream")("FINDINGS: Large right pneumothorax. No pneumoperitoneum.")
    crit = doc.spans["radstream_critical"]
    assert [c.text for c in crit] == ["pneumothorax"]
    assert crit[0]._.negated is False and crit[0]._.radstream["critical_level"] == 1


# ---------------------------------------------------------------- same results as Engine.analyze

TEXTS = [
    REPORT,
    "FINDINGS: No pleural effusion or pneumothorax.\nIMPRESSION: Clear lungs. Stable 4-mm nodule, RUL.",
    "Heart size is mildly enlarged.  Left-sided effusion/atelectasis.\n\n\tNo  acute   infarct; old lacunar"
    " infarct.",
    "Impression: r/o pneumonia vs atelectasis. s/p CABG. Cannot exclude small PTX (3mm).",
    "Pneumothorax\u2014resolved. Caf\u00e9-au-lait. Ce\u0301cum mass?",
    "",
    "   \n  ",
]


def _same(doc: Doc, text: str) -> None:
    a = analyze(text)
    spans = list(doc.spans[FINDINGS])
    assert len(spans) == len(a.findings)
    for span, f in zip(spans, a.findings, strict=True):
        assert span.start_char <= f.start and f.end <= span.end_char  # whole tokens around the finding
        assert span.label_ == f.concept
        rec = span._.radstream
        for key in ("negated", "uncertain", "historical", "hypothetical", "experiencer", "section", "text"):
            assert rec[key] == getattr(f, key), (key, f)
    assert [s.label_ for s in doc.spans.get(SECTIONS, [])] == [s.name for s in a.sections if s.end > s.start]
    for key, items in (("radstream_measurements", a.measurements), ("radstream_assessments", a.assessments)):
        got = list(doc.spans.get(key, []))
        assert len(got) == len(items)
        for span, item in zip(got, items, strict=True):
            assert span.start_char <= item.start and item.end <= span.end_char
    assert doc._.radstream["chest_labels"] == a.chest_labels


@pytest.mark.parametrize("text", TEXTS)
def test_results_equal_engine_analyze(text: str) -> None:
    _same(pipeline("radstream_sections", "radstream_context")(text), text)
    _same(pipeline("radstream")(text), text)


_WORDS = [
    "no", "possible", "history", "of", "effusion", "pneumothorax", "pleural", "nodule", "4", "mm", "x", "cm",
    "right", "lobe", "FINDINGS:", "IMPRESSION:", "old", "mother", "had", "cancer", "not", "seen", ",", ".",
    ";", "-", "/", "(", ")", "\n", "  ", "BI-RADS", "3", "recommend", "CT", "cardiomegaly", "s/p", "r/o",
]  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_WORDS), max_size=40), st.lists(st.sampled_from(["", " ", "\n"]), min_size=40)
)
def test_every_engine_finding_becomes_a_token_aligned_span(words: list[str], seps: list[str]) -> None:
    text = "".join(w + s for w, s in zip(words, seps, strict=False))
    doc = _NLP(text)
    _same(doc, text)


_NLP = pipeline("radstream")


# ---------------------------------------------------------------- the user's own target rules


def test_user_target_rules_literal_token_pattern_and_regex() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ctx = nlp.add_pipe("radstream_context")
    ctx.add(
        [
            TargetRule("shortness of breath", "SYMPTOM", metadata={"cui": "C0013404"}),
            TargetRule("rib fracture", "INJURY", pattern=[{"LOWER": "rib"}, {"LOWER": "fracture"}]),
            TargetRule(
                "bi-rads", "ASSESSMENT", pattern=r"bi-?rads\s+\d[a-c]?", attributes={"hypothetical": True}
            ),
            TargetRule("dyspnea", "SYMPTOM"),
        ]
    )
    doc = nlp(REPORT + "\nNo dyspnea reported.")
    sob = finding(doc, "Shortness of breath")
    assert sob.label_ == "SYMPTOM" and sob._.source == "user" and sob._.section == "history"
    assert (
        sob._.radstream["metadata"] == {"cui": "C0013404"}
        and sob._.radstream["literal"] == "shortness of breath"
    )
    rib = finding(doc, "rib fracture")
    # the user's rule takes the tokens of the lexicon's finding; ConText still applies
    assert rib.label_ == "INJURY" and rib._.uncertain is True
    assert not [s for s in doc.spans[FINDINGS] if s.label_ == "fracture" and s.text == "rib fracture"]
    birads = next(s for s in doc.spans[FINDINGS] if s.label_ == "ASSESSMENT")
    assert birads.text.startswith("BI-RADS 4A") and birads._.hypothetical is True
    assert finding(doc, "dyspnea")._.negated is True
    assert {("Shortness of breath", "SYMPTOM"), ("rib fracture", "INJURY")} <= {
        (e.text, e.label_) for e in doc.ents
    }


def test_only_user_rules_without_the_lexicon() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("radstream_context", config={"use_lexicon": False}).add(TargetRule("effusion", "PROBLEM"))
    doc = nlp("No effusion. Cardiomegaly.")
    assert [(s.text, s.label_, s._.negated) for s in doc.spans[FINDINGS]] == [("effusion", "PROBLEM", True)]


def test_user_attribute_sets_another_registered_extension() -> None:
    if not Span.has_extension("site_flag"):
        Span.set_extension("site_flag", default=None)
    nlp = spacy.blank("en")
    nlp.add_pipe("radstream").add(TargetRule("effusion", "PROBLEM", attributes={"site_flag": "x"}))
    assert finding(nlp("Small effusion."), "effusion")._.site_flag == "x"


def test_target_rule_shape_and_errors(tmp_path: Path) -> None:
    rules = [TargetRule("pe", "PROBLEM", pattern=[{"LOWER": "pe"}], metadata={"a": 1}), TargetRule("x", "Y")]
    TargetRule.to_json(rules, tmp_path / "r.json")
    assert TargetRule.from_json(tmp_path / "r.json") == rules
    with pytest.raises(ValueError, match="unknown"):
        TargetRule.from_dict({"literal": "a", "category": "B", "label": "C"})
    with pytest.raises(ValueError, match="non-empty"):
        TargetRule("", "B")
    with pytest.raises(ValueError, match="finds no targets"):
        spacy.blank("en").add_pipe("radstream_sections").add(TargetRule("a", "B"))


# ---------------------------------------------------------------- serialisation


def _summary(doc: Doc) -> list[tuple[str, str, bool, bool, bool, bool, str]]:
    return [
        (s.text, s.label_, s._.negated, s._.uncertain, s._.historical, s._.hypothetical, s._.experiencer)
        for s in doc.spans[FINDINGS]
    ]


def test_to_disk_and_spacy_load_round_trip(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("radstream_sections")
    ctx = nlp.add_pipe("radstream_context", config={"overwrite_ents": True, "assert_ents": False})
    ctx.add([TargetRule("shortness of breath", "SYMPTOM"), TargetRule("rib", "BONE", pattern=r"\brib\b")])
    nlp.to_disk(tmp_path / "pipe")
    assert json.loads((tmp_path / "pipe/radstream_context/target_rules.json").read_text())["target_rules"]
    loaded = spacy.load(tmp_path / "pipe")
    assert loaded.pipe_names == ["sentencizer", "radstream_sections", "radstream_context"]
    assert loaded.get_pipe_config("radstream_context")["overwrite_ents"] is True
    got = loaded.get_pipe("radstream_context")
    assert [r.to_dict() for r in got.rules] == [r.to_dict() for r in ctx.rules]
    assert got.overwrite_ents is True and got.assert_ents is False
    assert _summary(loaded(REPORT)) == _summary(nlp(REPORT))
    # and through bytes
    again = spacy.blank("en")
    again.add_pipe("sentencizer")
    again.add_pipe("radstream_sections")
    again.add_pipe("radstream_context", config={"overwrite_ents": True, "assert_ents": False})
    again.from_bytes(nlp.to_bytes())
    assert _summary(again(REPORT)) == _summary(nlp(REPORT))


def test_annotated_docs_serialise_with_their_attributes() -> None:
    nlp = pipeline("radstream")
    docs = list(nlp.pipe([REPORT, "No effusion."]))
    box = DocBin(store_user_data=True, docs=docs)
    back = list(DocBin().from_bytes(box.to_bytes()).get_docs(nlp.vocab))
    assert [_summary(d) for d in back] == [_summary(d) for d in docs]
    assert back[1].spans[FINDINGS][0]._.negated is True
    assert Doc(nlp.vocab).from_bytes(docs[0].to_bytes())._.radstream == docs[0]._.radstream


def test_nlp_pipe_with_two_processes() -> None:
    nlp = pipeline("radstream")
    texts = [REPORT, "No effusion.", "Possible pneumonia."] * 2
    docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
    assert [_summary(d) for d in docs] == [_summary(nlp(t)) for t in texts]
    assert docs[1].spans[FINDINGS][0]._.negated is True


def test_sections_and_context_run_the_engine_once_per_doc(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = get_engine()
    seen: list[str] = []
    real = engine.analyze

    def counting(text: str, exam: str | None = None) -> ReportAnalysis:
        seen.append(text)
        return real(text, exam)

    monkeypatch.setattr(engine, "analyze", counting)
    nlp = pipeline("radstream_sections", "radstream_context")
    docs = list(nlp.pipe([REPORT, "No effusion.", REPORT]))
    assert seen == [REPORT, "No effusion.", REPORT] and all(d.spans[FINDINGS] for d in docs)
    assert not components._pending


def test_a_second_run_replaces_our_entities_and_keeps_the_others() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "ONCOLOGY", "pattern": "breast cancer"}])
    nlp.add_pipe("radstream")
    doc = nlp(REPORT)
    first = [(e.text, e.label_, e._.negated, e._.source) for e in doc.ents]
    doc = nlp.get_pipe("radstream")(doc)
    assert [(e.text, e.label_, e._.negated, e._.source) for e in doc.ents] == first


def test_second_run_on_the_same_doc_starts_clean() -> None:
    nlp = pipeline("radstream")
    doc = nlp("No effusion.")
    ctx = spacy.blank("en")
    ctx.add_pipe("radstream", config={"use_lexicon": False})
    ctx.get_pipe("radstream").add(TargetRule("effusion", "PROBLEM", attributes={"negated": False}))
    doc = ctx.get_pipe("radstream")(doc)
    assert doc.spans[FINDINGS][0]._.negated is False and doc.spans[FINDINGS][0]._.source == "user"


def test_one_component_equals_the_two() -> None:
    one = pipeline("radstream")(REPORT)
    two = pipeline("radstream_sections", "radstream_context")(REPORT)
    assert _summary(one) == _summary(two)
    assert [(s.text, s.label_) for s in one.spans[SECTIONS]] == [
        (s.text, s.label_) for s in two.spans[SECTIONS]
    ]
    assert [(e.text, e.label_) for e in one.ents] == [(e.text, e.label_) for e in two.ents]


def test_a_foreign_extension_of_the_same_name_is_an_error() -> None:
    Token = spacy.tokens.Token
    saved = Token.get_extension("section")
    Token.remove_extension("section")
    Token.set_extension("section", default="mine")
    try:
        with pytest.raises(ValueError, match="already registered by another package"):
            nlp_spacy.register_extensions()
    finally:
        Token.remove_extension("section")
        Token.set_extension("section", getter=saved[2])


# ---------------------------------------------------------------- entry points (installed radstream)


def _dist_info(tmp: Path) -> Path:
    """What pip writes for radstream's entry points, from pyproject.toml (the project runs from its source
    tree with PYTHONPATH; an installed copy announces its factories through this file)."""
    eps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["spacy_factories"]
    info = tmp / "radstream-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: radstream\nVersion: 0.1.0\n")
    lines = ["[spacy_factories]"] + [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return tmp


# thinc, which spaCy imports, imports torch when it can: 5-6 s of CPU per process in the [ml] venv, for
# nothing these pipelines use. The subprocesses hide it (an import of torch then fails, as without the extra).
_NO_TORCH = "import sys; sys.modules['torch'] = None\n"

_SCRIPT = _NO_TORCH + textwrap.dedent(
    """
    import sys, spacy
    assert "processors.nlp_spacy" not in sys.modules  # spaCy imports it through the entry points
    nlp = spacy.blank("en")
    nlp.add_pipe("radstream_sections")
    nlp.add_pipe("radstream_context")
    doc = nlp("FINDINGS: No effusion.")
    assert doc.spans["radstream_findings"][0]._.negated is True
    nlp.to_disk(sys.argv[1])
    """
)
_LOAD = _NO_TORCH + (
    "import sys, spacy; doc = spacy.load(sys.argv[1])('No effusion.'); assert doc.ents[0]._.negated"
)


def test_entry_points_register_the_factories_without_our_import(tmp_path: Path) -> None:
    site = _dist_info(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    for code, arg in ((_SCRIPT, tmp_path / "p"), (_LOAD, tmp_path / "p")):
        run = subprocess.run([sys.executable, "-c", code, str(arg)], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    # without the entry points (the source tree alone) spaCy does not know the name: the import is needed
    env["PYTHONPATH"] = str(REPO)
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "q")], env=env, capture_output=True, text=True
    )
    assert run.returncode != 0 and re.search(r"E002|radstream_sections", run.stderr)
