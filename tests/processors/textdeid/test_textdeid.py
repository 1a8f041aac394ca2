"""Report-text de-identification on our own sentences: every PHI type in several formats, what must stay
(eponyms, measurements, scores, times), dates shifted by the images' per-patient offset, surrogates
consistent within a patient, tags, and the offset map."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.ingest.pseudonym import date_shift_days
from processors.textdeid import DeidText, TextDeidError, TextDeidOptions, deidentify, detect

KEY = b"unit-test-key-0123456789"
PATIENT = "psn-0123456789abcdef0123456789abcdef"
SHIFT = timedelta(days=date_shift_days(KEY, PATIENT))


def deid(text: str, **options: object) -> DeidText:
    return deidentify(text, key=KEY, patient=PATIENT, options=TextDeidOptions(**options))  # type: ignore[arg-type]


def found(text: str) -> list[tuple[str, str]]:
    """(type, original text) of each PHI span found."""
    return [(s.type, text[s.start : s.end]) for s in detect(text)]


def removed(text: str, phrase: str) -> bool:
    return phrase not in deid(text).text and phrase not in deid(text, mode="tag").text


@pytest.mark.parametrize(
    "text, name",
    [
        ("Findings discussed with Dr. Lee at 13:55.", "Lee"),
        ("Dr. Smith reviewed the images.", "Smith"),
        ("Critical result called to J. Doe, RN at 2:15 PM.", "J. Doe"),
        ("Electronically signed by: Maria T. Okafor, MD", "Maria T. Okafor"),
        ("Read by Thaddeus Pemberton M.D. on the same day", "Thaddeus Pemberton"),
        ("Attending Radiologist: Dr. Ingrid Vanderberg", "Ingrid Vanderberg"),
        ("Patient: DOE, JOHN   Exam: CT chest", "DOE, JOHN"),
        ("Patient Name: Van Dyke, Ursula A.", "Van Dyke, Ursula A."),
        ("History obtained from the patient's daughter, Rosalind Whitfield.", "Rosalind Whitfield"),
        ("Patient accompanied by husband Desmond, who drove.", "Desmond"),
        ("Results relayed to Nurse Okonkwo on 4 West.", "Okonkwo"),
        ("Technologist: JD", "JD"),
        ("Mary Anderson was informed of the results.", "Mary Anderson"),
        ("Discussed with Dr. O'Sullivan and Dr. McAllister.", "O'Sullivan"),
        ("Discussed with Dr. O'Sullivan and Dr. McAllister.", "McAllister"),
        ("Resident: L. Al-Rashid, MD", "L. Al-Rashid"),
    ],
)
def test_names(text: str, name: str) -> None:
    assert any(t == "NAME" and name in s for t, s in found(text)), found(text)
    assert removed(text, name)


def test_a_name_found_once_is_removed_everywhere_in_the_report() -> None:
    text = "Discussed with Dr. Blackwood at 10:02. Blackwood agreed to follow up."
    assert "Blackwood" not in deid(text).text


@pytest.mark.parametrize(
    "text",
    [
        "History of Hodgkin lymphoma and Crohn disease; known Wilms tumor.",
        "A 2 cm Baker cyst. Nondisplaced Smith fracture. Monteggia fracture-dislocation.",
        "Kerley B lines. Fluid in Morison pouch. Schmorl node at T12. Zenker diverticulum.",
        "Chiari I malformation. Osgood-Schlatter disease. Paget disease of the pelvis. Crohn's colitis.",
        "Wells score 6. Gleason 7 disease. Glasgow coma scale 15. Bosniak IIF cyst.",
        "BI-RADS 4: suspicious abnormality. Lung-RADS 2. TI-RADS 3.",
        "1.2 x 0.8 cm nodule in the right upper lobe, series 3 image 45. DLP 450 mGy-cm. 100 mL Omnipaque.",
        "Grade 2/4 anterolisthesis of L5 on S1. Disc bulge at L4-L5 and C5-C6. ETT 4 cm above the carina.",
        "CHEST PA AND LATERAL. The heart size is normal. No pneumothorax.",
        "The exam was performed at 13:55 and read at 2:15 PM. Follow-up in 3 months.",
        "A 45-year-old man with a 40 pack-year smoking history. Stable since 2019.",
        "Maximal temperature 101 F. Heart rate 95 bpm. Oxygen saturation 92 %.",
        "The lesion may 2 represent a cyst; Hounsfield units measure 12 HU.",
    ],
)
def test_clinical_content_is_kept(text: str) -> None:
    assert found(text) == []
    assert deid(text).text == text


@pytest.mark.parametrize(
    "text, original, shifted_fmt",
    [
        ("Compared to CT dated 03/14/2024.", date(2024, 3, 14), "{d:%m/%d/%Y}"),
        ("Seen on 3/4/2021.", date(2021, 3, 4), "{d.month}/{d.day}/{d:%Y}"),
        ("Prior on 3/4/21 reviewed.", date(2021, 3, 4), "{d.month}/{d.day}/{d:%y}"),
        ("Study from 2023-11-02 reviewed.", date(2023, 11, 2), "{d:%Y-%m-%d}"),
        ("Exam of March 14, 2024 compared.", date(2024, 3, 14), "{d:%B} {d.day}, {d:%Y}"),
        ("Exam of Mar 14 2024 compared.", date(2024, 3, 14), "{d:%b} {d.day} {d:%Y}"),
        ("Exam of 14 March 2024 compared.", date(2024, 3, 14), "{d.day} {d:%B} {d:%Y}"),
        ("Exam of 14-Mar-2024 compared.", date(2024, 3, 14), "{d.day}-{d:%b}-{d:%Y}"),
        ("Exam of Mar. 14, 2024 compared.", date(2024, 3, 14), "{d:%b}. {d.day}, {d:%Y}"),
        ("DICOM date 20240314 copied.", date(2024, 3, 14), "{d:%Y%m%d}"),
        ("SEEN ON MAY 27, 2022 IN CLINIC.", date(2022, 5, 27), "{u}"),
    ],
)
def test_dates_move_by_the_patients_image_shift(text: str, original: date, shifted_fmt: str) -> None:
    new = original - SHIFT
    expected = shifted_fmt.format(d=new, u=f"{new:%b} {new.day}, {new:%Y}".upper())
    out = deid(text)
    assert expected in out.text, (out.text, expected)
    assert [s.type for s in out.spans] == ["DATE"]


def test_dates_without_a_year_and_month_year_and_ordinals() -> None:
    out = deid("Compared to January 3rd, to the radiograph of 12/3 and to March 2021.").text
    jan3 = date(2000, 1, 3) - SHIFT
    assert f"{jan3:%B} {jan3.day}" in out and "January 3rd" not in out
    assert "12/3" not in out and "March 2021" not in out


def test_intervals_between_dates_survive() -> None:
    text = "Prior 01/10/2024; current 03/20/2024."
    a, b = re.findall(r"\d\d/\d\d/\d{4}", deid(text).text)
    parse = [date(int(x[6:]), int(x[:2]), int(x[3:5])) for x in (a, b)]
    assert (parse[1] - parse[0]).days == (date(2024, 3, 20) - date(2024, 1, 10)).days


def test_years_and_times_are_kept() -> None:
    text = "Smoker since 1998. Called at 13:55."
    assert deid(text).text == text


@pytest.mark.parametrize(
    "text, phrase, kind",
    [
        ("A 92-year-old woman with cough.", "92", "AGE"),
        ("94 yo F with fall.", "94", "AGE"),
        ("Patient is a 101 y/o male.", "101", "AGE"),
        ("Age: 96.", "96", "AGE"),
        ("95F with dyspnea.", "95", "AGE"),
        ("A ninety-three year old man.", "ninety-three", "AGE"),
        ("MRN: 00123456", "00123456", "MRN"),
        ("MR# 7788990", "7788990", "MRN"),
        ("Medical Record Number: 445566778", "445566778", "MRN"),
        ("Accession #: RAD20240314", "RAD20240314", "ACCESSION"),
        ("Acc: 20240314-0012", "20240314-0012", "ACCESSION"),
        ("Order #: ORD-884512", "ORD-884512", "ORDER"),
        ("Requisition: 55123", "55123", "ORDER"),
        ("Reference 88123456 in the RIS.", "88123456", "ID"),
        ("SSN 123-45-6789", "123-45-6789", "SSN"),
        ("Call (617) 555-0123 with questions.", "(617) 555-0123", "PHONE"),
        ("Call 617-555-0123.", "617-555-0123", "PHONE"),
        ("Fax 617.555.0123 now.", "617.555.0123", "PHONE"),
        ("Reach +1 617 555 0123 today.", "+1 617 555 0123", "PHONE"),
        ("Pager 4567.", "4567", "PHONE"),
        ("Ext. 23456 for the reading room.", "23456", "PHONE"),
        ("Mail jane.doe@hospital.org for images.", "jane.doe@hospital.org", "EMAIL"),
        (
            "See https://pacs.example-hospital.org/viewer?study=123 now.",
            "https://pacs.example-hospital.org/viewer?study=123",
            "URL",
        ),
        ("See www.mercyimaging.com/portal.", "www.mercyimaging.com/portal", "URL"),
        ("Workstation 10.12.4.200 crashed.", "10.12.4.200", "IP"),
        ("Lives at 123 Main Street with family.", "123 Main Street", "STREET"),
        ("Address 45 N. Oak Ave, Apt 2 noted.", "45 N. Oak Ave, Apt 2", "STREET"),
        ("Mail to P.O. Box 77.", "P.O. Box 77", "STREET"),
        ("From Springfield, IL 62704 originally.", "Springfield", "LOCATION"),
        ("From Springfield, IL 62704 originally.", "62704", "ZIP"),
        ("ZIP code 02114.", "02114", "ZIP"),
        ("Prior imaging at Massachusetts General Hospital.", "Massachusetts General Hospital", "INSTITUTION"),
        (
            "Transferred from St. Elizabeth Medical Center today.",
            "St. Elizabeth Medical Center",
            "INSTITUTION",
        ),
        ("Outside study from Lakeside Imaging Center.", "Lakeside Imaging Center", "INSTITUTION"),
        ("Seen at University of Iowa Hospitals last year.", "University of Iowa Hospitals", "INSTITUTION"),
    ],
)
def test_other_identifiers(text: str, phrase: str, kind: str) -> None:
    spans = found(text)
    assert any(t == kind and phrase in s for t, s in spans), spans
    assert removed(text, phrase)


def test_ages_under_90_and_the_state_are_kept() -> None:
    text = "A 89-year-old from Springfield, IL 62704."
    out = deid(text).text
    assert "89-year-old" in out and ", IL " in out


def test_the_sites_own_institution_names() -> None:
    # no head word (Hospital, Clinic ...), no "seen at / images from" context: only the site's list finds it
    text = "Kaiser Permanente Oakland sent the prior study."
    assert deid(text).text == text
    assert "Kaiser" not in deid(text, institutions=("Kaiser Permanente Oakland",)).text


def test_tag_mode() -> None:
    out = deid("Discussed with Dr. Lee, MRN 1234567, on 03/14/2024.", mode="tag")
    assert out.text.startswith("Discussed with Dr. [NAME], MRN [MRN], on ")
    assert "03/14/2024" not in out.text and re.search(r"\d\d/\d\d/\d{4}", out.text)  # dates still shifted


def test_surrogates_are_consistent_within_a_patient_and_keyed() -> None:
    text = "Discussed with Dr. Pemberton. Dr. Pemberton agreed."
    out = deid(text).text
    a, b = re.findall(r"Dr\. (\w+)", out)
    assert a == b != "Pemberton"
    assert deid(text).text == out  # deterministic
    other = deidentify(text, key=b"another-key-0123456789", patient=PATIENT).text
    assert other != out


def test_spans_point_into_the_deidentified_text() -> None:
    text = "Patient: DOE, JOHN. MRN 1234567. Discussed with Dr. Lee on 3/14/2024 at 13:55."
    out = deid(text, mode="tag")
    assert [out.text[s.start : s.end] for s in out.spans] == [
        "[NAME]",
        "[MRN]",
        "[NAME]",
        out.text[out.spans[3].start : out.spans[3].end],
    ]
    assert all(out.text[s.start : s.end] != text[s.start : s.end] for s in out.spans[:3])


def test_offset_map_moves_clinical_spans_and_widens_cut_phi() -> None:
    text = "Dr. Lee saw a 1.2 cm nodule."
    out = deid(text, mode="tag")
    start = text.index("nodule")
    s, e = out.offsets.map_span(start, start + len("nodule"))
    assert out.text[s:e] == "nodule"
    s, e = out.offsets.map_span(text.index("Lee") + 1, text.index("Lee") + 2)  # inside the name
    assert out.text[s:e] == "[NAME]"


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(TextDeidError, match="more than the limit"):
        deid("x" * 101, max_chars=100)
    with pytest.raises(TextDeidError, match="NUL"):
        deid("abc\x00def")
    with pytest.raises(TextDeidError, match="string"):
        deid(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TextDeidError, match="key"):
        deidentify("text", key=b"")


DEV = Path(__file__).resolve().parents[2] / "data" / "phi" / "dev.jsonl"


def test_dev_set_recall_and_precision() -> None:
    """The targets of issue 13 on the PHI dev set (token level, see docs/textdeid.md)."""
    from bench.textdeid_eval import load, radstream_engine, score

    result = score(load(DEV), radstream_engine())
    assert result["gold_spans"] > 2000
    assert result["token_recall"] >= 0.99, result["misses"][:20]
    assert result["token_precision"] >= 0.90, result["false_positives"][:20]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["surrogate", "tag"]))
def test_no_input_crashes_and_offsets_stay_valid(text: str, mode: str) -> None:
    if "\x00" in text:
        return
    out = deid(text, mode=mode)
    assert isinstance(out.text, str)
    last = 0
    for s in out.spans:
        assert last <= s.start < s.end <= len(out.text)
        last = s.end
    for i in range(len(text) + 1):
        assert 0 <= out.offsets.map(i) <= len(out.text)
    assert out.offsets.map(len(text)) == len(out.text)


PHI_WORDS = st.sampled_from(
    [
        "Dr. Lee",
        "03/14/2024",
        "MRN 1234567",
        "(617) 555-0123",
        "Baker cyst",
        "Hodgkin",
        "92-year-old",
        "at 13:55",
        "jane@x.org",
        "123 Main Street",
        "Smith, John",
        "May 3",
        "1.2 cm",
        "Mercy Hospital",
        "\n",
        " ",
        ", RN",
        "Patient:",
        "é",
        "\u0130stanbul",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PHI_WORDS, max_size=25))
def test_report_like_inputs_keep_text_outside_the_spans(words: list[str]) -> None:
    text = " ".join(words)
    out = deid(text)
    pieces = out.offsets.pieces
    pos = npos = 0
    for o0, o1, n0, n1 in pieces:  # everything between replacements is copied unchanged
        assert text[pos:o0] == out.text[npos:n0]
        pos, npos = o1, n1
    assert text[pos:] == out.text[npos:]
    json.dumps(out.to_dict())


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("Discussed with Dr.Lee by phone.", "Lee"),
        ("Wife (Eleanor) was present.", "Eleanor"),
        ("Results given to the nurse, Ingrid, at 14:00.", "Ingrid"),
        ("Ordering: ZIELINSKI, KATARINA MD", "ZIELINSKI"),
        ("Compared with Jan '23.", "Jan '23"),
        ("EKG on 7 Jun 23.", "7 Jun 23"),
        ("Case discussed at tumor board on Tuesday 4/5.", "4/5"),
        ("Call 555-1234 with questions.", "555-1234"),
        ("Page x4-5678.", "4-5678"),
        ("Seen at St. Luke's last week.", "St. Luke's"),
    ],
)
def test_more_formats(text: str, phrase: str) -> None:
    assert removed(text, phrase), deid(text).text


@pytest.mark.parametrize(
    "text",
    [
        "Prior CT at Outside Hospital (OSH) reviewed.",
        "INDICATION: Pt POD 6 s/p repair.",
        "Referring to the prior exam, the nurse practitioner was notified.",
    ],
)
def test_more_clinical_text_kept(text: str) -> None:
    assert deid(text).text == text


# --- session 14: classes of miss found by review (each list fails on the textdeid of before) ---


def _gone(text: str, phrase: str) -> str:
    """Both modes: ``phrase`` is gone, and so is every non-ASCII letter of it (no tail of a name cut at
    its first accented letter stays, as "[NAME]é García" did). Returns the tag-mode text."""
    tag, sur = deid(text, mode="tag").text, deid(text).text
    for out in (tag, sur):
        assert phrase not in out, out
        assert not [ch for ch in phrase if not ch.isascii() and ch.isalpha() and ch in out], out
    return tag


@pytest.mark.parametrize(
    "text, name",
    [
        ("Discussed with Dr. Müller at 13:55.", "Müller"),
        ("Findings called to Dr. Ibáñez by phone.", "Ibáñez"),
        ("Read by Zofia Wójcik, MD", "Zofia Wójcik"),
        ("Attending Radiologist: Dr. Łucja Kowalczyk", "Łucja Kowalczyk"),
        ("Patient: ÖSTERGREN, MÅRTEN   Exam: CT chest", "ÖSTERGREN, MÅRTEN"),
        ("Mr. Hajdučík tolerated the procedure well.", "Hajdučík"),
        ("Results relayed to Nurse Çelik on 4 West.", "Çelik"),
        ("Electronically signed by: Renée Lefébure, MD", "Renée Lefébure"),
        ("Discussed with Dr. Mu\u0308ller-Strauß.", "Mu\u0308ller-Strauß"),  # decomposed ü, ß
        ("Discussed with Dr. Παπαδόπουλος.", "Παπαδόπουλος"),
        ("Discussed with Dr. Иванов at 09:10.", "Иванов"),
        ("Discussed with Dr. Søren Kierkegård. Kierkegård agreed.", "Kierkegård"),
    ],
)
def test_names_in_any_script_are_removed_whole(text: str, name: str) -> None:
    _gone(text, name)
    assert [s.type for s in deid(text).spans] and all(s.type == "NAME" for s in deid(text).spans)


def test_a_surrogate_replaces_a_non_ascii_name_as_one_word() -> None:
    out = deid("Mr. Dvořák tolerated the procedure well.").text
    name = out.split()[1]
    assert name.isascii() and name.isalpha(), out  # not "Wongřák"


@pytest.mark.parametrize(
    "text, name",
    [
        ("Case reviewed with J. Smith.", "J. Smith"),
        ("Findings reviewed with R. Castellanos at 10:00.", "R. Castellanos"),
        ("The images were shown to K. L. Abernathy, who agreed.", "Abernathy"),
        ("discussed with dr. smith at 13:55.", "smith"),
        ("called to dr pemberton at 3 pm.", "pemberton"),
        ("discussed with dr. o'brien.", "o'brien"),
        ("discussed with dr. núñez.", "núñez"),
        ("Attending: Dr. O'Neill-Baptiste", "O'Neill-Baptiste"),
        ("Discussed with Dr. D'Angelo-Ruiz by phone.", "D'Angelo-Ruiz"),
        ("Discussed with Dr. McAllister-Byrne.", "McAllister-Byrne"),
        ("Discussed with Dr. O\u2019Brien-Walsh.", "Brien-Walsh"),
        ("Dr. van der Berg agreed.", "van der Berg"),
        ("Discussed with Mrs. de la Cruz at 10:00.", "de la Cruz"),
    ],
)
def test_names_without_a_title_lower_case_and_compound(text: str, name: str) -> None:
    tag = _gone(text, name)
    assert "Baptiste" not in tag and "Ruiz" not in tag and "Byrne" not in tag and "Walsh" not in tag


@pytest.mark.parametrize(
    "text, birth",
    [
        ("94 yo female. DOB: 04/22/1930.", "04/22/1930"),
        ("DOB 1929", "1929"),
        ("Patient born 1929, presents with a fall.", "1929"),
        ("Date of birth: March 3, 1931.", "March 3, 1931"),
        ("D.O.B. 1931-07-04", "1931-07-04"),
        ("Born on 12 Jan 1930 in the county.", "12 Jan 1930"),
        ("Birthdate: 19300104", "19300104"),
        ("Year of birth: 1928.", "1928"),
        ("Patient born in May 1930.", "May 1930"),
        ("DOB: 03JAN1931", "03JAN1931"),
        ("(dob 1/4/31)", "1/4/31"),
    ],
)
def test_a_date_of_birth_is_replaced_whole_with_its_year(text: str, birth: str) -> None:
    year = re.search(r"1[89]\d\d", birth)
    for out in (deid(text, mode="tag"), deid(text)):
        assert birth not in out.text, out.text
        assert year is None or year.group() not in out.text, out.text  # the year goes too
        assert [s.type for s in out.spans][-1] == "DATE"
    assert "[DATE]" in deid(text, mode="tag").text
    assert deid(text).text == deid(text).text  # keyed, deterministic


def test_a_date_of_birth_gives_no_age_while_other_dates_keep_their_interval() -> None:
    text = "DOB: 04/22/1930. Exam date 03/14/2024."
    out = deid(text).text
    exam = date(2024, 3, 14) - SHIFT
    assert f"{exam:%m/%d/%Y}" in out  # the exam date moves by the images' shift
    assert f"{date(1930, 4, 22) - SHIFT:%m/%d/%Y}" not in out  # the birth date does not: no age from them


@pytest.mark.parametrize(
    "text",
    [
        "Patient was born at term. Born prematurely at 32 weeks.",
        "A 2-year-old born at 28 weeks gestation.",
        "Smoker since 1998, stable since 2019.",
    ],
)
def test_birth_words_without_a_birth_date_are_kept(text: str) -> None:
    assert deid(text).text == text


@pytest.mark.parametrize(
    "text, phrase, kind",
    [
        ("Images pushed from 2001:db8::1 to the archive.", "2001:db8::1", "IP"),
        ("Workstation fe80::1ff:fe23:4567:890a sent the study.", "fe80::1ff:fe23:4567:890a", "IP"),
        ("Modality at fe80::a1%eth0 is down.", "fe80::a1%eth0", "IP"),
        ("Gateway 2001:DB8:0:0:1::7F ok.", "2001:DB8:0:0:1::7F", "IP"),
        ("Compared to CT of 14MAR2024.", "14MAR2024", "DATE"),
        ("Prior 04jan23 reviewed.", "04jan23", "DATE"),
        ("Address: 77 Birch Lane, Newton MA 02458", "Newton", "LOCATION"),
        ("Lives in Worcester MA 01605.", "Worcester", "LOCATION"),
        ("Moved from Albany NY 12203-1234 last year.", "Albany", "LOCATION"),
        ("Tel +44 20 7946 0958", "+44 20 7946 0958", "PHONE"),
        ("Call +49 (30) 1234-5678 for the report.", "+49 (30) 1234-5678", "PHONE"),
        ("Results to fax 617/555/0199 today.", "617/555/0199", "PHONE"),
        ("Beeper 555 1234 for questions.", "555 1234", "PHONE"),
        ("Contact jdoe at example dot org.", "jdoe at example dot org", "EMAIL"),
        ("Mail j.doe (at) mercy-rad (dot) net.", "j.doe (at) mercy-rad (dot) net", "EMAIL"),
        ("Mail rsmith[at]example.org for images.", "rsmith[at]example.org", "EMAIL"),
        ("Images from Beth Israel Deaconess.", "Beth Israel Deaconess", "INSTITUTION"),
        ("Seen at Brigham and Women's last week.", "Brigham and Women's", "INSTITUTION"),
        ("Outside study from Kaiser Permanente.", "Kaiser Permanente", "INSTITUTION"),
        ("Transferred from Johns Hopkins yesterday.", "Johns Hopkins", "INSTITUTION"),
        ("Prior MRI performed at Mount Sinai Morningside.", "Mount Sinai Morningside", "INSTITUTION"),
        ("Records from Mass General Brigham.", "Mass General Brigham", "INSTITUTION"),
        ("From Portland OR 97201.", "Portland", "LOCATION"),
    ],
)
def test_more_identifier_forms(text: str, phrase: str, kind: str) -> None:
    spans = found(text)
    assert any(t == kind and phrase in s for t, s in spans), spans
    assert removed(text, phrase)


def test_a_city_without_its_comma_keeps_the_words_before_it() -> None:
    assert deid("From Portland OR 97201.", mode="tag").text == "From [LOCATION] OR [ZIP]."
    out = deid("Transferred from Boston MA 02115.", mode="tag").text
    assert out == "Transferred from [LOCATION] MA [ZIP]."


def test_compact_dates_are_shifted_in_their_format() -> None:
    new = date(2024, 3, 14) - SHIFT
    assert f"{new:%d%b%Y}".upper() in deid("Compared to CT of 14MAR2024.").text


@pytest.mark.parametrize(
    "text",
    [
        "Müllerian duct anomaly. Hounsfield units measure 12 HU. Fluid in Morison's pouch.",
        "Müller maneuver performed. Patient with Sjögren syndrome and Ménière disease.",
        "Kienböck disease. Ségond fracture. Grade II Ménétrier disease. Patient Löfgren syndrome.",
        "Growth of E. Coli and S. Aureus; positive for C. Diff toxin. Cultures grew E. coli.",
        "IMPRESSION: A. Small right effusion. B. No pneumothorax.",
        "Findings: 1. Stable nodule, 2. Mild atelectasis, A. Normal heart.",
        "Nodule measures 14 mm. MR from 2021 compared. Ratio 1:1 at 10:30:45, 2::1 dilution, T2:FLAIR.",
        "Images from Prior Study reviewed. Images from Emergency Department PACS.",
        "Study performed at Level One trauma bay. Seen at Outside Hospital.",
        "Compared with CT from Monday. Transferred from ICU. Imaging from Cardiology Department.",
        "Heart rate +12 bpm from baseline, +20 mmHg. BP 120/80. Lesion 1.2 x 3.4 cm.",
        "Images were reviewed on PACS at the Reading Room. Seen at home. The dot sign at the apex.",
        "MA 02115 is a code. Dr. reviewed. Discussed with the doctor on call; dr. on call notified.",
        "Çatal view. Patient T2 hyperintense; the MA and MB segments.",
    ],
)
def test_clinical_words_of_any_script_are_kept(text: str) -> None:
    assert found(text) == [], found(text)
    assert deid(text).text == text


# --- session 14, review of the rules above: each test fails on the textdeid of 0650cdc ---


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Patient lives in Prior Lake, MN 55372.", "Patient lives in [LOCATION], MN [ZIP]."),
        ("Moved here from The Woodlands, TX 77380.", "Moved here from [LOCATION], TX [ZIP]."),
        ("Home: 8 Pine Ct, The Dalles, OR 97058.", "Home: [STREET], [LOCATION], OR [ZIP]."),
        ("Resides in The Villages, FL 32162.", "Resides in [LOCATION], FL [ZIP]."),
        ("Transferred from The Colony, TX.", "Transferred from [LOCATION], TX."),
        ("He lives in Prior Lake MN 55372.", "He lives in [LOCATION] MN [ZIP]."),
    ],
)
def test_a_city_that_begins_with_the_or_prior_is_replaced_whole(text: str, expected: str) -> None:
    # "The [LOCATION]" / "Prior [LOCATION]" would leave the part that gives the city away
    assert deid(text, mode="tag").text == expected
    assert " The " not in deid(text).text and "Prior" not in deid(text).text


def test_a_city_still_loses_a_leading_preposition_or_verb() -> None:
    assert deid("In Portland, OR 97201 since May.", mode="tag").text.startswith("In [LOCATION], OR [ZIP]")


@pytest.mark.parametrize(
    "text",
    [
        "Findings compatible with dissection type A. Aortic root measures 4.5 cm.",
        "Emboli in the lower lobe, type B. Aortic arch is normal.",
        "Ankle fracture, Weber B. Medial clear space is widened.",
        "Known chronic hepatitis B. Cirrhotic liver contour.",
        "Low levels of vitamin D. Bones are osteopenic.",
        "Hepatic steatosis grade B. Spleen is normal.",
        "Pattern of M. Avium complex infection in the upper lobes.",
        "Opacities suggest P. Jiroveci pneumonia.",
        "History of N. Meningitidis meningitis.",
        "Nodes from B. Henselae infection.",
        "Cultures grew S. Aureus. Lungs are clear.",
        "Cavitation seen with M. Avium infection.",
        "Patient evaluated with B. Henselae serology.",
    ],
)
def test_a_letter_and_a_capitalised_word_in_clinical_text_are_kept(text: str) -> None:
    assert found(text) == [], found(text)
    assert deid(text).text == text


@pytest.mark.parametrize(
    "text, name",
    [
        ("J. Smith was informed of the results.", "J. Smith"),
        ("Result read back by T. Okafor, who agreed.", "T. Okafor"),
        ("Images were sent to P. Lindqvist at 09:00.", "P. Lindqvist"),
    ],
)
def test_an_initial_and_surname_in_a_name_context(text: str, name: str) -> None:
    assert removed(text, name)


@pytest.mark.parametrize(
    "text",
    [
        "Portable chest dr obtained at the bedside shows clear lungs.",
        "Compared with the prior dr radiograph, no change.",
        "Upright dr images of the abdomen.",
    ],
)
def test_dr_for_digital_radiography_is_kept(text: str) -> None:
    assert found(text) == [], found(text)
    assert deid(text).text == text


def test_lower_case_dr_with_its_dot_or_after_a_trigger_is_a_name() -> None:
    assert removed("dr. whitcombe reviewed the films.", "whitcombe")
    assert removed("Results discussed with dr hargreaves.", "hargreaves")


@pytest.mark.parametrize(
    "text",
    [
        "Thrombus seen at Common Femoral Vein extending distally.",
        "Clip seen at Anterior Communicating Artery aneurysm neck.",
        "Filter seen at Inferior Vena Cava below the renal veins.",
        "PET/CT imaging from Skull Base to Mid Thigh.",
        "Images obtained from Boston Scientific device interrogation.",
        "Aneurysm seen at Circle of Willis.",
        "Ultrasound at Porta Hepatis shows a patent portal vein.",
        "MRI from Foramen Magnum to Sacrum.",
        "Fluid seen at Morison Pouch.",
    ],
)
def test_capitalised_anatomy_after_seen_at_or_from_is_not_an_institution(text: str) -> None:
    assert found(text) == [], found(text)
    assert deid(text).text == text


def test_an_institution_by_context_needs_an_institution_word() -> None:
    assert removed("Prior MRI performed at Harborview Imaging shows the same.", "Harborview Imaging")
    assert removed("Records from Lakeshore Community were reviewed.", "Lakeshore Community")


@pytest.mark.parametrize(
    "text",
    [
        "Infant born 2100 grams with respiratory distress.",
        "Twin B born 1850 g at 33 weeks.",
        "Neonate born 2050 gm, now day 3.",
    ],
)
def test_a_birth_weight_is_not_a_date_of_birth(text: str) -> None:
    assert found(text) == [], found(text)
    assert deid(text).text == text


@pytest.mark.parametrize(
    "text",
    [
        "Density +1.5 (1.2) 3.4 (2.2) HU across ROIs.",
        "Offset +12 34 56 78 90 mm from isocenter.",
        "Shift +2.5 (0.4) 1.1 (0.3) mm.",
    ],
)
def test_signed_measurements_are_not_international_phone_numbers(text: str) -> None:
    assert found(text) == [], found(text)
    assert deid(text).text == text


def test_dotted_international_numbers_and_labels_before_an_id() -> None:
    assert removed("Call +33.1.23.45.67.89 today.", "+33.1.23.45.67.89")
    text = "Scan Protocol ID 12345 used."  # ID is Idaho's code: a label, not a city
    assert [t for t, _ in found(text)] in ([], ["ZIP"]), found(text)
    assert "Scan Protocol ID" in deid(text).text


# --- session 14, second review: caught by the rules of fd002a0, missed by the first narrowing ---


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("Patient resides in College Station, TX 77840.", "College Station"),  # "station" is no label here
        ("Transferred from College Station, TX.", "College Station"),
        ("Per J. Smith, the line was repositioned.", "Smith"),
        ("Case reviewed per dr smith today.", "smith"),
        ("Per dr smith the tube was advanced.", "smith"),
        ("Findings d/w dr jones at 14:10.", "jones"),
        ("Prior films seen at Riverside Family Practice.", "Riverside"),
        ("Outside CT performed at Lakeshore Urgent Care.", "Lakeshore"),
    ],
)
def test_names_and_places_the_narrowed_rules_must_still_find(text: str, phrase: str) -> None:
    assert removed(text, phrase), (deid(text, mode="tag").text, deid(text).text)
