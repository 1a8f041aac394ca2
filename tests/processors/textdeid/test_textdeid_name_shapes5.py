"""Review R18 of the session-17 name rules: what they took from clinical text, as classes, with our own
sentences. A word after 'Dr. X and' that is a ConText cue or a section title is no name, and another word
found there is carried to the rest of the report only if a lexicon knows it, it is shaped as a name, or
the occurrence stands in a person's context (never before a device's noun); a slash pair of clinical
abbreviations is no initials, and a pair alone on its line is initials only where a typist's stand; a
list item's subject with a common noun's ending is a name only if a lexicon knows it."""

from __future__ import annotations

import pytest

from tests.processors.textdeid.helpers import assert_kept, nlp_findings, removed


@pytest.mark.parametrize("cue", ["Probable", "Suspected", "Questionable", "Prior", "Negative", "Recent"])
def test_a_context_cue_after_dr_x_and_is_no_name(cue: str) -> None:
    text = (f"Case reviewed with Dr. Haldane and {cue} consolidation was raised.\n"
            f"IMPRESSION: {cue} consolidation in the lingula.")
    assert_kept(text, cue)


@pytest.mark.parametrize("cue", ["Hx", "Vs", "Fh"])
def test_a_two_letter_cue_after_dr_x_and_is_no_name(cue: str) -> None:
    text = f"Discussed with Dr. Haldane and {cue} empyema. {cue} empyema on the left."
    assert_kept(text, cue)


@pytest.mark.parametrize("title", ["Comparison", "Technique", "Indication"])
def test_a_section_title_after_dr_x_and_is_no_name(title: str) -> None:
    text = f"Discussed with Dr. Haldane and {title} reviewed.\n{title.upper()}: none.\nFINDINGS: No effusion."
    assert_kept(text, title)


@pytest.mark.parametrize(
    "text, word",
    [
        ("Discussed with Dr. Haldane and Groshong exchange. The Groshong catheter tip is in the SVC.",
         "Groshong"),
        ("Reviewed with Dr. Haldane and Kerlix. Kerlix dressing over the wound; no collection.", "Kerlix"),
        ("Per Dr. Haldane and Dobhoff placement. Dobhoff tube tip in the stomach.", "Dobhoff"),
        ("Discussed with Dr. Haldane and Ketorvan. Patient on Ketorvan for pain.", "Ketorvan"),
    ],
)
def test_a_word_after_dr_x_and_is_not_carried_to_a_thing(text: str, word: str) -> None:
    out = removed(text)
    assert f"{word} " in out.split(". ", 1)[1], out  # the later, thing use is kept


@pytest.mark.parametrize(
    "text, name",
    [
        ("Reviewed with Dr. Haldane and Tevendale. Tevendale was paged at 10:02.", "Tevendale"),
        ("Discussed with Dr. Haldane and Tevendale. Advice from Tevendale: repeat in 6 weeks.", "Tevendale"),
        ("Discussed with Dr. Haldane and Nguyen. Nguyen mentioned the prior study.", "Nguyen"),
        ("Discussed with Dr. Haldane and Tevendale. Tevendale's office will call.", "Tevendale"),
        ("Discussed with Dr. Haldane and O'Rourke. The O'Rourke family agreed.", "O'Rourke"),
    ],
)
def test_a_name_after_dr_x_and_is_still_carried_where_it_names_a_person(text: str, name: str) -> None:
    assert name not in removed(text), removed(text)


@pytest.mark.parametrize(
    "text, pair",
    [
        ("INDICATION:\nSDH/ich\nFINDINGS: No midline shift.", "SDH/ich"),
        ("HISTORY:\nCOPD/pna\nFINDINGS: Hyperinflation.", "COPD/pna"),
        ("Sequences:\nSWI/dwi\nNo hemorrhage.", "SWI/dwi"),
        ("Reformats:\nAX/sag\nNo fracture.", "AX/sag"),
        ("CLINICAL HISTORY:\nCVA/tia\nFINDINGS: No infarct.", "CVA/tia"),
    ],
)
def test_clinical_slash_pairs_are_no_initials(text: str, pair: str) -> None:
    assert pair in removed(text), removed(text)
    assert nlp_findings(removed(text)) == nlp_findings(text)


@pytest.mark.parametrize(
    "text, pair",
    [
        ("No acute findings.\nRJ/vq", "RJ/vq"),
        ("No acute findings.\nRJ/vq\nD: 03/02/2026 T: 03/03/2026", "RJ/vq"),
        ("No acute findings.\nRJ/vq 03/02/2026\nFollow-up as needed.", "RJ/vq"),
        ("Dictated by: RJ/vq\nNo acute findings.", "RJ/vq"),
        ("No acute findings.\ncc:rj/vq", "rj/vq"),
        ("Attending: RJ/VQ\nNo acute findings.", "RJ/VQ"),
        ("Case reviewed with RJ/vq at 10:02.", "RJ/vq"),
    ],
)
def test_initials_where_a_typist_s_stand_are_still_found(text: str, pair: str) -> None:
    assert pair not in removed(text), removed(text)


@pytest.mark.parametrize(
    "text, word",
    [
        ("IMPRESSION: A. No fracture. B. Anesthesia declined.\nAnesthesia was not needed.", "Anesthesia"),
        ("IMPRESSION: A. No mass. B. Hydration met.\nHydration was adequate.", "Hydration"),
        ("A. Small effusion. B. Contrast arrived late.\nContrast timing was adequate.", "Contrast"),
        ("(a) Procedures reviewed. (b) Counselor notified.\nCounselor will follow up.", "Counselor"),
        ("IMPRESSION:\n(a) No bleed.\n(b) Dosimetrist notified at 11:10.", "Dosimetrist"),
        ("(a) No leak.\n(b) Coordinator called back.", "Coordinator"),
    ],
)
def test_a_common_noun_in_a_list_item_is_no_name(text: str, word: str) -> None:
    assert_kept(text, word)


@pytest.mark.parametrize(
    "text, name",
    [
        ("IMPRESSION:\n(a) No bleed.\n(b) Vellacourt notified at 11:10.", "Vellacourt"),
        ("(a) No leak.\n(b) McIlwraith called back.", "McIlwraith"),
        ("A. Marwick saw the patient.\nB. No effusion.", "Marwick"),
        ("A. No effusion. B. Garcia declined.", "Garcia"),
    ],
)
def test_a_surname_in_a_list_item_is_still_found(text: str, name: str) -> None:
    assert name not in removed(text), removed(text)
