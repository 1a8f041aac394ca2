"""Exam normalisation: ``normalize_exam(description, modality=None) -> ExamInfo``.

``ExamInfo`` has ``modality``, ``body_region`` and ``contrast`` (the ReportFindings fields).

Vocabulary in ``vocabulary.json``:

- modality codes (DICOM-style, shared with processors.nlp.recommendations): CT, MR, XR (CR, DX, DR,
  "XR", radiographs, "2 VIEWS"), US, MG (mammography, tomosynthesis), NM, PET (PT, PET/CT, PET/MR),
  XA (angiography/IR), RF (fluoroscopy, UGI, esophagram), DXA. A recognised DICOM ``modality`` code
  wins over the description, except that a description naming PET wins over a CT/NM/MR code (hybrid
  exams). ``normalize_modality(code)`` maps a code alone.
- body_region (``BODY_REGIONS``): head, neck, spine, chest, cardiac, abdomen, pelvis, breast, extremity,
  whole_body and the combinations abdomen_pelvis, chest_abdomen_pelvis, chest_abdomen, head_neck,
  neck_chest ("CT A/P", "CT CAP", "CT ABD/PELVIS", "CTA HEAD AND NECK"). whole_body ("SKULL BASE TO
  MID THIGH", "WHOLE BODY", bone scan, skeletal survey) wins over any other region; otherwise an
  unlisted combination falls back to the first region in the data's priority order.
- contrast: True for "W/", "WITH CONTRAST", "W/WO", "WITH AND WITHOUT", "CONTRAST-ENHANCED", and for
  procedures that always use contrast (CTA, PE protocol, angiography, arthrography, myelography,
  urography, perfusion); False for "W/O", "WO", "WITHOUT", "NON-CONTRAST", "UNENHANCED", "NC";
  None when not stated (also for radiographs, mammography and ultrasound: "not stated", not "no").
  "WITH DOPPLER" is not contrast.
- Results are cached per (description, modality) (LRU, 8192 entries): descriptions repeat in a stream.
"""

from processors.nlp.exam.extract import (
    BODY_REGIONS,
    MODALITY_CODES,
    ExamInfo,
    normalize_exam,
    normalize_modality,
)

__all__ = ["BODY_REGIONS", "MODALITY_CODES", "ExamInfo", "normalize_exam", "normalize_modality"]
