"""Assessment categories: ``extract_assessments(text, *, include_prior=False) -> list[Assessment]``.

Systems and normalised categories (patterns in ``systems.json``):

- BI-RADS "0".."6", "4A"/"4B"/"4C" ("BI-RADS 4A", "BIRADS: 2", "ACR BI-RADS Category 1 - Negative",
  and a bare "Category 3: Probably benign" when followed by a BI-RADS category name). No roman numerals.
- Lung-RADS "0", "1", "2", "3", "4A", "4B", "4X", with the S modifier appended ("2S", "4BS"), and "S"
  when written alone ("Lung-RADS S", "Lung-RADS category S").
- LI-RADS "LR-1".."LR-5", "LR-M", "LR-TIV", "LR-NC" ("LR-5", "LR5", "LI-RADS 4", "LI-RADS LR-M";
  bare "LR" is read only upper-case).
- PI-RADS "1".."5"; TI-RADS "TR1".."TR5" ("ACR TI-RADS TR4", "TI-RADS 3", bare upper-case "TR4";
  "TI-RADS 4 points" is a points total, not a category, and is skipped).
- Bosniak "I", "II", "IIF", "III", "IV" (arabic "2F" -> "IIF", "3" -> "III").
- O-RADS "0".."5"; the variant ("US"/"MRI") is kept in ``variant`` when written (not in the Avro
  record; O-RADS MRI has no category 0).

Skipped: negated mentions ("no BI-RADS 3 lesions") and, unless ``include_prior``, mentions of an
earlier exam: a prior cue before it in the same clause ("previously BI-RADS 3, now BI-RADS 2",
"upgraded from BI-RADS 3 to BI-RADS 4", "Prior mammogram (BI-RADS 2)") or after it ("BI-RADS 3 on
the prior study"). With ``include_prior`` they are returned with ``prior=True``.
``Assessment.to_record()`` gives the Avro ``Assessment`` record. Speed: each pattern in ``systems.json``
has a ``keyword`` and only runs in windows around its occurrences (keep it in step with the pattern).
"""

from processors.nlp.assessments.extract import Assessment, extract_assessments

__all__ = ["Assessment", "extract_assessments"]
