"""Lexicon classes for Open-i wording the dev set barely holds (issue 14, session 11): a heart size
between normal and mildly enlarged, or "noted to be enlarged" (coded Cardiomegaly, as "borderline heart
size" is), edema or emphysema named by a place outside the lung (a limb, the face, the soft tissues, the
chest wall), "collapse" of a disc space or of the airway (not atelectasis), pleural fluid named by the
lung base, the pleural surface, a meniscus or as a collection, pericardial thickening (the Open-i
coders' "Thickening", whatever its site), microatelectasis, and "fibronodular" (coded Nodule).

Every sentence here was written for these tests (none comes from a report collection or the dev sets).
"""

from __future__ import annotations

import pytest
from held_out_helpers import chest_label

from processors.nlp import analyze


def _concepts(text: str) -> set[str]:
    return {f.concept for f in analyze(f"FINDINGS: {text}").findings}


# ------------------------------------------------------------ a heart size between normal and enlarged
@pytest.mark.parametrize(
    "text",
    [
        "Heart size is normal to mildly enlarged.",
        "The heart is top normal to mildly enlarged.",
        "Heart size is high normal to slightly enlarged.",
        "The heart is upper normal to mildly enlarged in size.",
        "Heart size is normal or slightly enlarged, unchanged.",
        "Cardiac size is high-normal to mildly enlarged.",
        # a participle of seeing before "to be enlarged"
        "The heart is again noted to be enlarged.",
        "The heart is seen to be mildly enlarged.",
        "Increased size of the heart since the prior study.",
        "Borderline cardiac enlargement.",
    ],
)
def test_a_heart_between_normal_and_enlarged_is_borderline_cardiomegaly(text: str) -> None:
    assert chest_label(text, "Cardiomegaly") == "positive", text


@pytest.mark.parametrize(
    "text",
    [
        "Heart size is normal. The hila are mildly enlarged.",
        "The heart is normal in size and the pulmonary arteries are enlarged.",
        "Heart size is normal; the aorta is enlarged.",
        "Heart size remains at the upper limits of normal.",
        "The heart is not enlarged.",
        "The heart is not felt to be enlarged.",
        "The heart is thought to be possibly enlarged.",
        "No increase in the size of the heart.",
        "Increase in the size of the cardiac silhouette.",  # the silhouette: not coded Cardiomegaly
    ],
)
def test_a_normal_heart_stays_normal(text: str) -> None:
    assert chest_label(text, "Cardiomegaly") != "positive", text


# ------------------------------------------------------------------ edema and emphysema outside the lung
@pytest.mark.parametrize(
    "text",
    [
        "Bilateral lower extremity edema.",
        "Pedal edema.",
        "Peripheral edema is noted.",
        "Mild facial edema.",
        "Edematous soft tissues of the right chest wall.",
        "The soft tissues are diffusely edematous.",
        "The subcutaneous tissues are mildly oedematous.",
    ],
)
def test_edema_of_a_limb_or_the_soft_tissues_is_not_pulmonary_edema(text: str) -> None:
    assert chest_label(text, "Edema") == "absent", text
    assert "soft_tissue_edema" in _concepts(text), text


def test_pulmonary_edema_beside_limb_edema_is_still_coded() -> None:
    text = "Mild interstitial pulmonary edema and bilateral lower extremity edema."
    assert chest_label(text, "Edema") == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "Emphysema of the left chest wall after chest tube placement.",
        "Emphysema in the soft tissues of the neck.",
        "Emphysema tracking along the right lateral chest wall.",
        "Gas in the soft tissues of the left axilla.",
        "Chest wall emphysema on the right.",
    ],
)
def test_emphysema_of_the_soft_tissues_is_subcutaneous(text: str) -> None:
    assert chest_label(text, "Emphysema") == "absent", text
    assert "subcutaneous_emphysema" in _concepts(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Emphysema in the upper lobes.",
        "Centrilobular emphysema within both upper lobes and subcutaneous emphysema on the left.",
    ],
)
def test_lung_emphysema_is_still_coded(text: str) -> None:
    assert chest_label(text, "Emphysema") == "positive", text


# ----------------------------------------------------------------- collapse that is not of the lung
@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Disc space collapse at T8-9.", "degenerative_change"),
        ("Collapse of the disc space at T11-12.", "degenerative_change"),
        ("Collapse of the intervertebral disc at L1-2.", "degenerative_change"),
        ("Tracheal collapse on the expiratory view.", "airway_collapse"),
        ("Collapse of the trachea on expiration.", "airway_collapse"),
    ],
)
def test_collapse_of_a_disc_or_the_airway_is_not_atelectasis(text: str, concept: str) -> None:
    assert chest_label(text, "Atelectasis") == "absent", text
    assert concept in _concepts(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Collapse of the right upper lobe.",
        "Complete collapse of the left lung.",
        "Left lower lobe collapse.",
        "Microatelectasis at both bases.",
    ],
)
def test_collapse_of_the_lung_is_atelectasis(text: str) -> None:
    assert chest_label(text, "Atelectasis") == "positive", text


# ---------------------------------------------------------------------------- pleural fluid by its place
@pytest.mark.parametrize(
    "text",
    [
        "Small amount of fluid at the right lung base.",
        "Trace fluid at the left base.",
        "Fluid collection in the right pleural space.",
        "Fluid along the left lateral pleural surface.",
        "Fluid meniscus at the right costophrenic angle.",
        "A meniscus of pleural fluid on the left.",
    ],
)
def test_pleural_fluid_named_by_its_place_is_an_effusion(text: str) -> None:
    assert chest_label(text, "Effusion") == "positive", text


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("No fluid at the lung bases.", "negative"),
        ("Fluid at the right base has resolved.", "negative"),
        ("Fluid in the lung bases.", "absent"),  # said of the lung: not the pleural space
        ("Fluid overload at the bases.", "absent"),
        ("Air meniscus around the cavity.", "absent"),  # the air crescent of a cavity, not fluid
    ],
)
def test_fluid_not_in_the_pleural_space(text: str, state: str) -> None:
    assert chest_label(text, "Effusion") == state, text


# ------------------------------------------------------------------------------- thickening, any site
@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("Mild pericardial thickening.", "positive"),
        ("The pericardium is thickened.", "positive"),
        ("No pericardial thickening or effusion.", "negative"),
    ],
)
def test_pericardial_thickening_is_coded_as_thickening(text: str, state: str) -> None:
    assert chest_label(text, "Pleural_Thickening") == state, text


def test_the_clinical_mapping_keeps_pericardial_thickening_out_of_pleural_thickening() -> None:
    from pathlib import Path

    import processors.nlp.chest as chest

    clinical = Path(chest.__file__).resolve().parent / "mapping_clinical.json"
    labels = analyze("FINDINGS: Mild pericardial thickening.", chest_mapping=str(clinical)).chest_labels
    assert labels["Pleural_Thickening"] == "absent"


# -------------------------------------------------------------------------------------- nodular words
@pytest.mark.parametrize(
    "text",
    [
        "Fibronodular scarring at both apices.",
        "Fibronodular changes in the right upper lobe, unchanged.",
    ],
)
def test_fibronodular_is_coded_nodule(text: str) -> None:
    assert chest_label(text, "Nodule") == "positive", text


def test_a_nodular_opacity_stays_an_opacity() -> None:
    assert chest_label("Nodular opacity in the left midlung.", "Nodule") == "absent"
