"""Rule classes added to hold on reports the dev sets do not have (issue 14): a negated change is no
negated finding, "now resolved", partial resolution, a comma that opens a new clause after a negated
list, British spellings; where a negated list ends at a comma, a denied change with its list, short run-ons,
a report flattened to one line, denials in other word orders, history cues and past-history headings.

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest

from processors.nlp import analyze, assert_term
from processors.nlp.lexicon import Concept, add_spelling_variants
from processors.nlp.sentences import split_sentences


# ------------------------------------------------------------------ a negated change is no negated finding
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("There has been no change in the small left pleural effusion.", "pleural effusion"),
        ("There is no significant interval change in the moderate cardiomegaly.", "cardiomegaly"),
        ("No appreciable increase in the size of the right hilar mass.", "mass"),
        ("No interval growth of the 5 mm nodule in the lingula.", "nodule"),
        ("Without substantial change in the biapical pleural thickening.", "pleural thickening"),
        ("No pneumothorax; there was no progression of the right basilar consolidation.", "consolidation"),
    ],
)
def test_a_negated_change_leaves_the_finding_present(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert not r.negated, r.triggers


def test_a_negated_change_ends_an_earlier_negation() -> None:
    r = analyze("FINDINGS: No pleural effusion, no change in the mild cardiomegaly.")
    assert r.chest_labels["Effusion"] == "negative"
    assert r.chest_labels["Cardiomegaly"] == "positive"


@pytest.mark.parametrize(
    ("text", "term"),
    [
        # a finding listed before the change noun is still negated
        ("No effusion or change in position of the tube.", "effusion"),
        # far down a list after "change in ...", a symptom is negated as before
        ("She is negative for change in appetite, weight loss, night sweats or anemia.", "anemia"),
        # the change noun after a comma is not what the negation denies
        ("He denies nausea (nor vomiting), change in stool or melena.", "melena"),
    ],
)
def test_change_nouns_do_not_unnegate_lists(text: str, term: str) -> None:
    assert assert_term(text, term).negated


# -------------------------------------------------- "now resolved", "is gone", partial resolution
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Left apical pneumothorax, now resolved.", "pneumothorax"),
        ("The right pleural effusion has now resolved.", "pleural effusion"),
        ("Previously seen retrocardiac consolidation is gone.", "consolidation"),
        ("The left basilar opacities have disappeared.", "opacities"),
        ("Right upper lobe atelectasis is no longer visible.", "atelectasis"),
    ],
)
def test_resolved_findings_are_negated(text: str, term: str) -> None:
    assert assert_term(text, term).negated


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Partial resolution of the right lower lobe consolidation.", "consolidation"),
        ("Incomplete resolution of the left pleural effusion.", "pleural effusion"),
        ("The lingular opacity has partially cleared.", "opacity"),
    ],
)
def test_partial_resolution_leaves_the_finding_present(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert not r.negated, r.triggers


# ------------------------------------------------------------------ a comma opens a new clause
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("No pneumothorax or effusion, mild cardiomegaly.", "Cardiomegaly"),
        ("No focal consolidation, minimal bibasilar atelectasis.", "Atelectasis"),
        ("No edema, stable small right pleural effusion.", "Effusion"),
        ("No acute infiltrate, scattered calcified granulomas and a few small nodules.", "Nodule"),
        ("No pneumothorax, moderately severe emphysema.", "Emphysema"),
    ],
)
def test_comma_and_severity_word_start_an_asserted_clause(text: str, label: str) -> None:
    assert analyze("FINDINGS: " + text).chest_labels[label] == "positive"


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("No focal consolidation, pleural effusion, or pneumothorax.", "Effusion"),
        ("No pneumothorax, large pleural effusion, or consolidation.", "Effusion"),
        ("No edema, effusion or pneumothorax.", "Pneumothorax"),
    ],
)
def test_negated_lists_still_negate_every_item(text: str, label: str) -> None:
    assert analyze("FINDINGS: " + text).chest_labels[label] == "negative"


# ------------------------------------------------------------------ British spellings
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Mild interstitial oedema.", "Edema"),
        ("Features of pulmonary oedema with small effusions.", "Edema"),
    ],
)
def test_british_spellings_are_found(text: str, label: str) -> None:
    assert analyze("FINDINGS: " + text).chest_labels[label] == "positive"


def test_british_spellings_of_other_concepts() -> None:
    r = analyze("FINDINGS: Small paraoesophageal hernia. Subcutaneous oedema of the chest wall.")
    assert {f.concept for f in r.findings} >= {"hiatal_hernia", "soft_tissue_edema"}


def test_spelling_variants_keep_existing_entries() -> None:
    edema, other = Concept("pulmonary_edema", "lung"), Concept("something_else", "general")
    phrases = {"interstitial edema": [edema], "tumour": [other], "tumor": [edema]}
    add_spelling_variants(phrases)
    assert phrases["interstitial oedema"] == [edema]
    assert phrases["tumour"] == [other]  # listed already: not replaced
    assert "ooedema" not in " ".join(phrases)


# ---------------------------------------------- long negated lists, "not definitely seen"
def test_a_long_negated_list_reaches_its_last_item() -> None:
    text = (
        "FINDINGS: There is no evidence of focal airspace consolidation, large pleural effusion, "
        "pneumothorax, hilar or mediastinal lymphadenopathy, suspicious pulmonary nodule, or discrete mass."
    )
    r = analyze(text)
    assert r.chest_labels["Mass"] == "negative"
    assert r.chest_labels["Nodule"] == "negative"


def test_free_words_still_bound_the_negation() -> None:
    # sixteen words of prose, not findings, lie between the negation and the nodule: out of its scope
    text = (
        "FINDINGS: No effusion on this portable frontal view obtained in the emergency department "
        "late on a Sunday night, small nodule over the left fourth rib."
    )
    assert analyze(text).chest_labels["Nodule"] == "positive"


@pytest.mark.parametrize(
    ("text", "term"),
    [
        # one view only ("... on the lateral view") is no negation: test_held_out_classes_s9.py
        ("The right basilar opacity is not definitely seen on today's radiograph.", "opacity"),
        ("Pneumothorax is not convincingly identified.", "pneumothorax"),
        ("No definitely identified pleural effusion.", "pleural effusion"),
    ],
)
def test_not_definitely_seen_negates(text: str, term: str) -> None:
    assert assert_term(text, term).negated


# ---------------------------------------------- hedges across a terminator, weaker alternatives
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Patchy right basilar opacity possibly representing atelectasis.", "Atelectasis"),
        ("Rounded density questionably representing a nodule.", "Nodule"),
        ("Mild bibasilar atelectasis, less likely pneumonia.", "Pneumonia"),
        ("Basilar atelectasis is more likely than pneumonia.", "Pneumonia"),
        ("A small infiltrate would be a consideration.", "Infiltration"),
        ("Early edema remains a consideration.", "Edema"),
    ],
)
def test_hedged_alternatives_are_uncertain(text: str, label: str) -> None:
    assert analyze("FINDINGS: " + text).chest_labels[label] == "uncertain"


def test_the_favoured_alternative_still_counts() -> None:
    r = analyze("FINDINGS: Basilar atelectasis is more likely than pneumonia.")
    assert r.chest_labels["Atelectasis"] == "positive"


# ---------------------------------------------- a finding that changed since the prior study is there now
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("The prior left pleural effusion has decreased in size.", "Effusion"),
        ("Previous right lower lobe consolidation is improved.", "Consolidation"),
        ("The previous apical pneumothorax is slightly smaller.", "Pneumothorax"),
        ("Prior bibasilar atelectasis has worsened.", "Atelectasis"),
    ],
)
def test_a_prior_finding_that_changed_is_present(text: str, label: str) -> None:
    assert analyze("FINDINGS: " + text).chest_labels[label] == "positive"


def test_a_prior_finding_alone_or_resolved_is_not() -> None:
    for text in ("Prior right lower lobe pneumonia has resolved.", "Previous pneumonia."):
        assert analyze("FINDINGS: " + text).chest_labels["Pneumonia"] != "positive"


def test_new_cues_never_hide_a_lexicon_phrase() -> None:
    # a cue that ends where a lexicon phrase starts would swallow that phrase's first words (leftmost
    # match wins): "there are more prominent interstitial markings" must still find the markings
    import json
    import re
    from pathlib import Path

    import processors.nlp.context as ctx
    from processors.nlp.lexicon import load_concepts

    def toks(text: str) -> tuple[str, ...]:
        return tuple(re.findall(r"\w+|[^\w\s-]", text.lower()))

    phrases, patterns = load_concepts()
    starts = {toks(p)[:n] for p in phrases for n in range(1, len(toks(p)) + 1)}
    starts |= {toks(a)[:n] for anchors, _, _ in patterns for a in anchors for n in range(1, len(toks(a)) + 1)}
    rules = json.loads(Path(ctx.DATA).read_text())["rules"]
    checked = [
        r["phrase"] for r in rules if r["category"] in ("CURRENT", "CHANGE") or r["phrase"].startswith(",")
    ]
    assert checked
    bad = [p for p in checked if any(toks(p)[i:] in starts for i in range(1, len(toks(p))))]
    assert not bad


# ---------------------------------------------- heart size phrased with degree ranges and adverbs
@pytest.mark.parametrize(
    "text",
    [
        "The heart is moderately to markedly enlarged.",
        "Heart size is mild to moderately enlarged.",
        "Heart size is stable and enlarged.",
        "Cardiac size appears mildly increased.",
        "Heart size at the upper limits of normal to mildly enlarged.",
        "Large heart with clear lungs.",
    ],
)
def test_enlarged_heart_phrasings(text: str) -> None:
    assert analyze("FINDINGS: " + text).chest_labels["Cardiomegaly"] == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "The heart is not enlarged.",
        "Heart size is normal and the hila are enlarged.",
        "Heart size is possibly enlarged.",
        "Heart size upper limits of normal.",
    ],
)
def test_not_enlarged_heart_phrasings(text: str) -> None:
    assert analyze("FINDINGS: " + text).chest_labels["Cardiomegaly"] != "positive"


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Lack of pleural effusion on the decubitus view.", "pleural effusion"),
        ("The lungs remain free from consolidation.", "consolidation"),
        ("Costophrenic angles devoid of fluid; no pneumothorax.", "fluid"),
    ],
)
def test_more_negation_wordings(text: str, term: str) -> None:
    assert assert_term(text, term).negated


# ---------------------------------------------- a report that lost its full stops
def test_a_capitalised_opener_after_a_word_starts_a_sentence() -> None:
    text = (
        "Heart size is mildly enlarged No pneumothorax or effusion Mild bibasilar atelectasis "
        "There are degenerative changes of the spine"
    )
    spans = split_sentences(text)
    assert [text[a:b] for a, b in spans] == [
        "Heart size is mildly enlarged",
        "No pneumothorax or effusion",
        "Mild bibasilar atelectasis",
        "There are degenerative changes of the spine",
    ]
    r = analyze("FINDINGS: " + text)
    assert r.chest_labels["Cardiomegaly"] == "positive"
    assert r.chest_labels["Atelectasis"] == "positive"
    assert r.chest_labels["Effusion"] == "negative"


def test_a_list_number_after_a_word_starts_a_sentence() -> None:
    text = (
        "1 Low lung volumes with basilar atelectasis 2 Borderline heart size "
        "3 No focal consolidation or effusion"
    )
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "1 Low lung volumes with basilar atelectasis",
        "2 Borderline heart size",
        "3 No focal consolidation or effusion",
    ]


def test_capitalised_names_after_a_function_word_or_a_name_do_not_split() -> None:
    # "Dr" follows a function word, "The" a capitalised word: no lost full stop there
    assert len(split_sentences("Seen by Dr Smith The Second on the ward.")) == 1


@pytest.mark.parametrize(
    "text",
    [
        "NO PNEUMOTHORAX MILD CARDIOMEGALY",
        "A nodule measuring 2 cm in the left upper lobe.",  # all capitals: no case to read
        "Compared with study XXXX No change.",  # after a masked (capitalised) word
        "No pneumothorax, No effusion.",  # after punctuation the usual rules apply
        "The lungs are clear.",
    ],
)
def test_openers_split_only_after_a_lower_case_word(text: str) -> None:
    assert len(split_sentences(text)) == 1


# ---------------------------------------------- where a negated list ends at a comma
# Radiologists write asyndetic negated lists ("No consolidation, effusion, pneumothorax."): a bare
# finding after a comma stays in the list. A comma ends the list only when a positive clause follows
# (a size, side or course word), when the list before it was closed by "or", or when a predicate closed
# the negated clause; a coordinator later in the sentence shows that the list goes on.
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("FINDINGS: No pneumothorax, small left pleural effusion.", "Effusion"),
        ("FINDINGS: Negative for pneumothorax, right basilar atelectasis.", "Atelectasis"),
        ("FINDINGS: No focal consolidation, bilateral pleural effusions layering posteriorly.", "Effusion"),
        ("FINDINGS: No pleural effusion or pneumothorax, bibasilar atelectasis.", "Atelectasis"),
        ("FINDINGS: Without edema nor effusion, streaky atelectasis at the left base.", "Atelectasis"),
        ("FINDINGS: No definite effusion seen, calcified nodule in the right apex.", "Nodule"),
        ("FINDINGS: No pneumothorax, heart size is enlarged.", "Cardiomegaly"),
        ("FINDINGS: Negative for effusion, heart size borderline.", "Cardiomegaly"),
    ],
)
def test_a_comma_ends_a_negated_list_before_a_positive_clause(text: str, label: str) -> None:
    assert analyze(text).chest_labels[label] == "positive"


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        # asyndetic lists, two items or more: all negated
        ("FINDINGS: No pneumothorax, pleural effusion.", ("Pneumothorax", "Effusion")),
        ("FINDINGS: No edema, cardiomegaly.", ("Edema", "Cardiomegaly")),
        ("FINDINGS: Negative for consolidation, effusion, pneumothorax.", ("Consolidation", "Effusion")),
        # a coordinator after the comma: the list goes on
        (
            "FINDINGS: No pneumothorax, left pleural effusion, or consolidation.",
            ("Effusion", "Consolidation"),
        ),
        ("FINDINGS: No effusion or pneumothorax, or focal consolidation.", ("Effusion", "Consolidation")),
    ],
)
def test_comma_lists_without_a_new_clause_stay_negated(text: str, labels: tuple[str, ...]) -> None:
    r = analyze(text)
    for label in labels:
        assert r.chest_labels[label] == "negative", (label, r.chest_labels)


def test_a_word_that_starts_a_finding_is_no_clause_opener() -> None:
    # "small" starts the finding "small bowel obstruction": still an item of the negated list
    r = analyze("FINDINGS: No free air, small bowel obstruction.")
    assert [f.negated for f in r.findings] == [True, True]


def test_a_clause_target_without_a_comma_after_another_finding() -> None:
    # a report without punctuation: "heart is enlarged" is a clause, not an item of "no pneumothorax"
    r = analyze("FINDINGS: no pneumothorax heart is enlarged")
    assert r.chest_labels["Cardiomegaly"] == "positive"
    assert r.chest_labels["Pneumothorax"] == "negative"
    # a clause right after the negation is still negated
    assert (
        analyze("FINDINGS: No evidence that the heart is enlarged.").chest_labels["Cardiomegaly"]
        == "negative"
    )


# ---------------------------------------------- a denied change governs the comma list of its object
@pytest.mark.parametrize(
    ("text", "label"),
    [
        (
            "FINDINGS: There has been no interval change in the right basal opacities, "
            "scarring or atelectasis.",
            "Atelectasis",
        ),
        (
            "FINDINGS: No significant change in the mild cardiomegaly, small bilateral pleural effusions, "
            "bibasilar atelectasis and interstitial edema.",
            "Edema",
        ),
        (
            "FINDINGS: Without appreciable change of the left lower lobe consolidation, "
            "effusion and atelectasis.",
            "Effusion",
        ),
    ],
)
def test_a_denied_change_leaves_its_whole_list_present(text: str, label: str) -> None:
    assert analyze(text).chest_labels[label] == "positive"


def test_a_denied_change_without_a_finding_object_still_negates_the_list() -> None:
    # "change in appetite" is an item of the negated list, not a change of the findings after it
    assert (
        analyze("FINDINGS: Negative for change in appetite, pneumonia or effusion.").chest_labels["Effusion"]
        == "negative"
    )


# ---------------------------------------------- short run-on sentences in a text that lost its full stops
@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("FINDINGS: no pleural effusion Streaky left basilar atelectasis", "Atelectasis"),
        ("FINDINGS: No pulmonary edema Cardiomegaly", "Cardiomegaly"),
        ("FINDINGS: there is no effusion A 2 cm nodule is present in the right hilum", "Nodule"),
        ("IMPRESSION: 1 No acute process 2 Interval development of cardiomegaly", "Cardiomegaly"),
    ],
)
def test_a_short_run_on_does_not_carry_the_negation(text: str, label: str) -> None:
    assert analyze(text).chest_labels[label] == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "history of Hodgkin lymphoma and no effusion",  # after a function word
        "no pneumothorax with Swan Ganz catheter in place",  # after a function word, and a name
        "tip of the left Dobhoff tube in the stomach",  # a device name
        "NO PNEUMOTHORAX NO EFFUSION",  # all capitals: no case to read
        "No effusion. Seen on the ward Monday by the team.",  # a text with full stops keeps its capitals
    ],
)
def test_capitalised_words_that_start_no_sentence(text: str) -> None:
    assert len(split_sentences(text.split(". ")[-1])) == 1


@pytest.mark.parametrize(
    ("text", "label", "state"),
    [
        # a trigger reads the capitalised word after it: no sentence ends between them
        ("FINDINGS: there is no Pneumothorax", "Pneumothorax", "negative"),
        ("FINDINGS: possible Pneumonia in the left base", "Pneumonia", "uncertain"),
        ("FINDINGS: again seen Cardiomegaly", "Cardiomegaly", "positive"),
    ],
)
def test_no_sentence_ends_after_a_trigger(text: str, label: str, state: str) -> None:
    assert analyze(text).chest_labels[label] == state


def test_a_hypothesis_in_the_indication_keeps_its_capitalised_finding() -> None:
    r = analyze("INDICATION: rule out Pneumonia")
    assert len(r.sentences) == 1
    assert [f.hypothetical for f in r.findings] == [True]


# ---------------------------------------------- a report flattened to one line
def test_headers_inside_a_flattened_line() -> None:
    r = analyze("EXAM: Chest 2 views  INDICATION: cough  COMPARISON: none  FINDINGS: Mild cardiomegaly.")
    assert [s.name for s in r.sections] == ["exam", "history", "comparison", "findings"]
    assert r.chest_labels["Cardiomegaly"] == "positive"


@pytest.mark.parametrize(
    "text",
    [
        # a capitalised (not upper-case) title inside running text is no header
        "FINDINGS: Chest  Comparison: there is mild cardiomegaly.",
        # a preamble title after the findings is more likely running text in a report in capitals
        "FINDINGS: CHEST  COMPARISON: THERE IS MILD CARDIOMEGALY.",
    ],
)
def test_titles_inside_a_line_that_stay_in_the_findings(text: str) -> None:
    r = analyze(text)
    assert [s.name for s in r.sections] == ["findings"]
    assert r.chest_labels["Cardiomegaly"] == "positive"


# ---------------------------------------------- denials read backward, weaker negation words
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("Pleural effusion is ruled out.", "pleural effusion"),
        ("Pneumothorax has been ruled out.", "pneumothorax"),
        ("A right pleural effusion was ruled out on ultrasound.", "pleural effusion"),
        ("Fractures have been excluded.", "fractures"),
        ("Pneumonia is doubtful.", "pneumonia"),
        ("Malignancy seems unlikely.", "malignancy"),
        ("The appearances do not suggest pneumonia.", "pneumonia"),
        ("The scan does not indicate a pulmonary embolism.", "pulmonary embolism"),
    ],
)
def test_denials_in_other_word_orders(text: str, term: str) -> None:
    assert assert_term(text, term).negated


# ---------------------------------------------- history: cues of the past, and lists after them
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("She had undergone a right lobectomy for a carcinoid.", "lobectomy"),
        ("He was previously diagnosed with sarcoidosis.", "sarcoidosis"),
        ("Pulmonary embolism last year, treated with warfarin.", "pulmonary embolism"),
        ("A left hip fracture some years earlier.", "hip fracture"),
        # "chronic" qualifies the item right after it, not the rest of the history list
        ("History of chronic low back pain as well as two herniated lumbar discs.", "herniated lumbar discs"),
    ],
)
def test_history_cues(text: str, term: str) -> None:
    r = assert_term(text, term)
    assert r.historical and not r.chronic, r.triggers


@pytest.mark.parametrize(
    "title", ["PRIOR HISTORY", "Previous medical history", "PAST MEDICAL HX", "SURGICAL HX"]
)
def test_items_alone_under_a_past_history_heading(title: str) -> None:
    r = analyze(f"{title}:\nPneumonia.\nRib fracture.\n\nFINDINGS: No effusion.")
    past = [f for f in r.findings if f.section == "past_history"]
    assert [f.concept for f in past] == ["pneumonia", "fracture"]
    assert all(f.historical for f in past)
    assert not any(f.historical for f in r.findings if f.section == "findings")


# ---------------------------------------------- hedges: "a suggestion of", "query" (outside the indication)
@pytest.mark.parametrize(
    ("text", "label", "state"),
    [
        ("FINDINGS: There is a suggestion of a small left pleural effusion.", "Effusion", "uncertain"),
        ("FINDINGS: Query tiny right apical pneumothorax.", "Pneumothorax", "uncertain"),
        # a negated suggestion stays negated
        ("FINDINGS: There is no suggestion of a pleural effusion.", "Effusion", "negative"),
        ("FINDINGS: Clear lungs without any suggestion of consolidation.", "Consolidation", "negative"),
    ],
)
def test_suggestion_and_query_hedge(text: str, label: str, state: str) -> None:
    assert analyze(text).chest_labels[label] == state


# ------------------------------------------------------------------ asides (parentheticals), NLP 0.6.1
@pytest.mark.parametrize(
    ("text", "term", "negated", "certainty"),
    [
        # a cue inside a parenthetical reaches only what is inside it
        ("Small right effusion (no pneumothorax) and mild cardiomegaly.", "cardiomegaly", False, "definite"),
        ("Small right effusion (no pneumothorax) and mild cardiomegaly.", "pneumothorax", True, "definite"),
        ("Mild cardiomegaly (possibly pericardial effusion) and basilar atelectasis.", "atelectasis", False,
         "definite"),
        ("Mild cardiomegaly (possibly pericardial effusion) and basilar atelectasis.", "pericardial effusion",
         False, "possible"),
        ("Right basilar opacity (not present on the prior study) and a small effusion.", "effusion", False,
         "definite"),
        # a cue outside reaches into it, and the aside does not lengthen the clause around it
        ("No pneumothorax (or pleural effusion).", "pleural effusion", True, "definite"),
        ("No focal consolidation (to suggest pneumonia) or effusion.", "effusion", True, "definite"),
        ("Nodule in the right upper lobe (series 3, image 45, measuring 6 mm on the prior study from last "
         "spring) is no longer seen.", "nodule", True, "definite"),
    ],
)
def test_a_parenthetical_is_an_aside(text: str, term: str, negated: bool, certainty: str) -> None:
    res = assert_term(text, term)
    assert (res.negated, res.certainty) == (negated, certainty)


def test_a_parenthetical_aside_in_a_report_keeps_the_label() -> None:
    res = analyze("FINDINGS: Small right pleural effusion (no pneumothorax) and mild cardiomegaly.")
    assert res.chest_labels["Cardiomegaly"] == "positive"
    assert res.chest_labels["Pneumothorax"] == "negative"


def test_a_personal_history_ends_a_family_history() -> None:
    text = "Family history of breast cancer (mother) and a personal history of colon polyps."
    assert assert_term(text, "colon polyps").experiencer == "patient"
    assert assert_term(text, "colon polyps").historical
    assert assert_term(text, "breast cancer").experiencer == "other"
