import pytest

from processors.nlp.exam import BODY_REGIONS, MODALITY_CODES, ExamInfo, normalize_exam, normalize_modality


@pytest.mark.parametrize(
    ("description", "modality", "region", "contrast"),
    [
        ("CT CHEST W/O CONTRAST", "CT", "chest", False),
        ("MRI BRAIN W/WO", "MR", "head", True),
        ("XR CHEST 2 VIEWS PA/LAT", "XR", "chest", None),
        ("US ABDOMEN LIMITED", "US", "abdomen", None),
        ("CTA CHEST PE PROTOCOL", "CT", "chest", True),
        ("MAMMO SCREENING BILATERAL DIGITAL", "MG", "breast", None),
        ("PET/CT SKULL BASE TO MID THIGH", "PET", "whole_body", None),
        ("NM BONE SCAN WHOLE BODY", "NM", "whole_body", None),
        ("FLUORO UGI", "RF", "abdomen", None),
        ("CR CHEST PORTABLE", "XR", "chest", None),
        ("CT ABD/PELVIS W CONTRAST", "CT", "abdomen_pelvis", True),
        ("CT A/P WITH IV CONTRAST", "CT", "abdomen_pelvis", True),
        ("CT CAP WITH IV CONTRAST", "CT", "chest_abdomen_pelvis", True),
        ("CT CHEST ABDOMEN PELVIS W/ CONTRAST", "CT", "chest_abdomen_pelvis", True),
        ("CTA HEAD AND NECK", "CT", "head_neck", True),
        ("MR LUMBAR SPINE WO", "MR", "spine", False),
        ("MRI C-SPINE WITHOUT CONTRAST", "MR", "spine", False),
        ("US RENAL", "US", "abdomen", None),
        ("XR KNEE 3 VIEWS LEFT", "XR", "extremity", None),
        ("US VENOUS DUPLEX LOWER EXTREMITY BILATERAL", "US", "extremity", None),
        ("CT HEAD NON-CONTRAST", "CT", "head", False),
        ("CT HEAD WO CONTRAST", "CT", "head", False),
        ("MRI PROSTATE W/WO", "MR", "pelvis", True),
        ("MR ABDOMEN WITH AND WITHOUT CONTRAST", "MR", "abdomen", True),
        ("US PELVIS TRANSVAGINAL", "US", "pelvis", None),
        ("DEXA BONE DENSITY", "DXA", None, None),
        ("CT CARDIAC CALCIUM SCORE", "CT", "cardiac", None),
        ("US ABDOMEN WITH DOPPLER", "US", "abdomen", None),
        ("MR BREAST BILATERAL W/WO", "MR", "breast", True),
        ("Ct chest with contrast", "CT", "chest", True),
        ("CT_HEAD_WO", "CT", "head", False),
        ("US THYROID", "US", "neck", None),
        ("XR SHOULDER RIGHT 2 VIEWS", "XR", "extremity", None),
        ("ECHOCARDIOGRAM TRANSTHORACIC", "US", "cardiac", None),
        ("MRCP", "MR", "abdomen", None),
    ],
)
def test_descriptions(description, modality, region, contrast):
    info = normalize_exam(description)
    assert info == ExamInfo(modality, region, contrast)
    assert info.modality is None or info.modality in MODALITY_CODES
    assert info.body_region is None or info.body_region in BODY_REGIONS


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("CT", "CT"),
        ("MR", "MR"),
        ("CR", "XR"),
        ("DX", "XR"),
        ("US", "US"),
        ("MG", "MG"),
        ("NM", "NM"),
        ("PT", "PET"),
        ("XA", "XA"),
        ("RF", "RF"),
        ("mr", "MR"),
        (" dx ", "XR"),
        ("MRI", "MR"),
        ("OT", None),
        (None, None),
        ("", None),
    ],
)
def test_dicom_codes(code, expected):
    assert normalize_modality(code) == expected
    assert normalize_exam(None, code).modality == expected


def test_code_wins_except_hybrid_pet():
    assert normalize_exam("XR CHEST", "DX").modality == "XR"
    assert normalize_exam("CHEST 1 VIEW", "CR") == ExamInfo("XR", "chest", None)
    assert normalize_exam("PET CT WHOLE BODY", "CT").modality == "PET"
    assert normalize_exam("ANGIO LOWER EXTREMITY", "RF").modality == "RF"


def test_empty():
    assert normalize_exam(None) == ExamInfo(None, None, None)
    assert normalize_exam("") == ExamInfo(None, None, None)
    assert normalize_exam("OUTSIDE FILM READ").to_record() == {
        "modality": None,
        "body_region": None,
        "contrast": None,
    }
