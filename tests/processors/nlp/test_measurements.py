import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.nlp.measurements import Measurement, attach_measurements, extract_measurements


@pytest.mark.parametrize(
    ("text", "span_text", "dims", "max_mm", "prior", "min_mm"),
    [
        ("There is a 6 mm nodule in the right upper lobe.", "6 mm", (6.0,), 6.0, None, None),
        (
            "Hypodense lesion measuring 1.2 x 0.8 cm in segment 7.",
            "1.2 x 0.8 cm",
            (12.0, 8.0),
            12.0,
            None,
            None,
        ),
        (
            "Complex cyst 3 x 2 x 1 cm in the left ovary.",
            "3 x 2 x 1 cm",
            (30.0, 20.0, 10.0),
            30.0,
            None,
            None,
        ),
        ("A 1.2cm enhancing focus.", "1.2cm", (12.0,), 12.0, None, None),
        ("The aneurysm is 12 millimeters.", "12 millimeters", (12.0,), 12.0, None, None),
        ("Several nodes up to 5 mm in short axis.", "5 mm", (5.0,), 5.0, None, None),
        ("Scattered nodules measuring 4-5 mm.", "4-5 mm", (5.0,), 5.0, None, 4.0),
        ("Small stones measuring 2 to 3 mm.", "2 to 3 mm", (3.0,), 3.0, None, 2.0),
        ("RLL nodule, previously 4 mm, now 6 mm.", "6 mm", (6.0,), 6.0, 4.0, None),
        ("The RLL nodule measures 6 mm, previously 4 mm.", "6 mm", (6.0,), 6.0, 4.0, None),
        ("The nodule has increased from 4 to 6 mm.", "4 to 6 mm", (6.0,), 6.0, 4.0, None),
        ("Node increased in size from 8 mm to 1.1 cm.", "8 mm to 1.1 cm", (11.0,), 11.0, 8.0, None),
        ("Mass now 2.1 cm (1.8 cm on the prior study).", "2.1 cm", (21.0,), 21.0, 18.0, None),
        ("Cyst 0.5 cm.", "0.5 cm", (5.0,), 5.0, None, None),
        ("Mass 1.2 cm x 9 mm.", "1.2 cm x 9 mm", (12.0, 9.0), 12.0, None, None),
        ("A 5-mm pulmonary nodule.", "5-mm", (5.0,), 5.0, None, None),
        ("Lymph node 2 by 1.5 cm.", "2 by 1.5 cm", (20.0, 15.0), 20.0, None, None),
        ("Lesion 1.5 × 1.0 cm.", "1.5 × 1.0 cm", (15.0, 10.0), 15.0, None, None),
        ("Nodule of .8 cm.", ".8 cm", (8.0,), 8.0, None, None),
        ("Midline shift of 7 mm.", "7 mm", (7.0,), 7.0, None, None),
        ("6 MM NODULE, PREVIOUSLY 4 MM.", "6 MM", (6.0,), 6.0, 4.0, None),
        ("The bladder wall is 8 mm thick.", "8 mm", (8.0,), 8.0, None, None),
        ("A 2.5 Cm mass.", "2.5 Cm", (25.0,), 25.0, None, None),
    ],
)
def test_sizes(text, span_text, dims, max_mm, prior, min_mm):
    ms = extract_measurements(text)
    assert len(ms) == 1, ms
    m = ms[0]
    assert m.text == span_text
    assert text[m.start : m.end] == span_text
    assert m.dims_mm == dims
    assert m.max_mm == max_mm
    assert m.prior_max_mm == prior
    assert m.min_mm == min_mm
    assert m.kind == "size"


@pytest.mark.parametrize(
    "text",
    [
        "Patient received 5 mg of lorazepam.",
        "Compression deformity of T12.",
        "Chest, 2 views.",
        "Compared with the study of 1/2/2024 at 14:35.",
        "MRI performed on a 1.5 T magnet.",
        "Axial 5 mm slices through the abdomen.",
        "Images were reconstructed at 3 mm.",
        "Slice thickness: 1.25 mm.",
        "Contiguous axial images at 2.5 mm intervals.",
        "Endotracheal tube tip 4 cm above the carina.",
        "Peak systolic velocity 120 cm/s in the ICA.",
        "Pressure 25 mmHg.",
        "Area 3 cm2.",
        "C5-6 and L4-5 disc bulges.",
        "Acquired at 0.625 mm collimation.",
        "1-2 views were obtained.",
        "Recommend a summary of 3 commendable immediate findings.",
    ],
)
def test_no_size(text):
    assert extract_measurements(text) == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Axial 5 mm slices.", "technique"),
        ("Reconstructed at 3 mm.", "technique"),
        ("Then 5-mm thick axial sections.", "technique"),
        ("Tip 2 cm above the carina.", "distance"),
        ("Previously measured 4 mm, now resolved.", "prior"),
    ],
)
def test_all_kinds(text, kind):
    (m,) = extract_measurements(text, all_kinds=True)
    assert m.kind == kind


def test_sentence_index_and_offsets():
    text = "No effusion. A 7 mm nodule.\nA 1.1 x 0.9 cm node."
    sentences = [(0, 12), (13, 27), (28, len(text))]
    ms = extract_measurements(text, sentences)
    assert [(m.text, m.sentence) for m in ms] == [("7 mm", 1), ("1.1 x 0.9 cm", 2)]
    assert all(text[m.start : m.end] == m.text for m in ms)


def test_prior_attaches_to_preceding_current_only():
    text = "A 6 mm nodule (previously 4 mm) and a 3 mm nodule."
    ms = extract_measurements(text)
    assert [(m.max_mm, m.prior_max_mm) for m in ms] == [(6.0, 4.0), (3.0, None)]


def test_prior_does_not_cross_sentences():
    text = "Previously 4 mm. Now a 6 mm nodule."
    ms = extract_measurements(text, [(0, 16), (17, len(text))])
    assert [(m.max_mm, m.prior_max_mm) for m in ms] == [(6.0, None)]


def test_to_record_matches_avro_fields():
    (m,) = extract_measurements("A 1.2 x 0.8 cm mass.")
    rec = m.to_record()
    assert set(rec) == {"text", "start", "end", "dims_mm", "max_mm", "prior_max_mm", "finding"}
    assert rec["dims_mm"] == [12.0, 8.0]


def _find(text, word, sent=0):
    s = text.index(word)
    return (s, s + len(word), sent)


@pytest.mark.parametrize(
    ("text", "findings", "expected"),
    [
        ("An 8 mm nodule and a small effusion.", ["nodule", "effusion"], [0]),
        ("Small effusion and an 8 mm nodule.", ["effusion", "nodule"], [1]),
        ("A nodule measuring 8 mm adjacent to a granuloma.", ["nodule", "granuloma"], [0]),
        ("There is a nodule in the RUL, 8 mm.", ["nodule"], [0]),
        ("Cyst in the liver, 12 mm, and a 4 mm hemangioma.", ["Cyst", "hemangioma"], [0, 1]),
        ("No findings with size here 5 mm.", [], [None]),
    ],
)
def test_attach(text, findings, expected):
    ms = extract_measurements(text)
    spans = [_find(text, w) for w in findings]
    assert attach_measurements(ms, spans, text) == expected


def test_attach_same_sentence_only():
    text = "Nodule. Effusion 5 mm."
    ms = extract_measurements(text, [(0, 7), (8, len(text))])
    assert attach_measurements(ms, [(0, 6, 0)], text) == [None]
    assert attach_measurements(ms, [(0, 6, 0), (8, 16, 1)]) == [1]


def test_measurement_is_frozen():
    m = Measurement("6 mm", 0, 4, (6.0,), 6.0)
    with pytest.raises(AttributeError):
        m.max_mm = 7.0  # type: ignore[misc]


def test_with_findings_sets_index_and_respects_eligible():
    from dataclasses import dataclass

    from processors.nlp.measurements import with_findings

    @dataclass
    class Fd:
        start: int
        end: int
        sentence: int
        negated: bool = False

    text = "No effusion. 8 mm nodule and no mass."
    ms = extract_measurements(text, [(0, 12), (13, len(text))])
    fs = [Fd(3, 11, 0), Fd(18, 24, 1), Fd(32, 36, 1, negated=True)]
    (m,) = with_findings(ms, fs, text, eligible=lambda f: not f.negated)
    assert m.finding == 1
    (m2,) = with_findings(ms, [Fd(32, 36, 1, negated=True)], text, eligible=lambda f: not f.negated)
    assert m2.finding is None


_TOKENS = [
    "6",
    "mm",
    "cm",
    "x",
    "1.2",
    "-",
    "to",
    "from",
    "previously",
    "now",
    ",",
    ".",
    "\n",
    "İ",
    "×",
    "(",
    ")",
    "slices",
    "above",
    "nodule",
    "measuring",
    "T12",
    "1/2/2024",
    "14:35",
    "up",
    "millimeters",
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30), st.integers(min_value=0, max_value=3))
def test_offsets_always_consistent(tokens, ncuts):
    text = " ".join(tokens)
    step = max(1, len(text) // (ncuts + 1))
    bounds = sorted({0, *range(step, len(text), step), len(text)})
    sentences = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a] or None
    for m in extract_measurements(text, sentences, all_kinds=True):
        assert text[m.start : m.end] == m.text
        assert m.max_mm == max(m.dims_mm) > 0
        assert sentences is None or m.sentence < len(sentences)
