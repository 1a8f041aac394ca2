"""Recommendations: ``extract_recommendations(text, sentences=None) -> list[Recommendation]``.

Rules, cue words, modalities, intervals and guideline names live in ``rules.json``.

- Sentence by sentence (the whole text is one sentence when ``sentences`` is None). Within a sentence
  each kind found gives one Recommendation whose text runs from its trigger to the next kind's
  trigger ("Recommend clinical correlation and follow-up CT in 3 months" -> clinical_correlation
  "Recommend clinical correlation" + imaging_followup "follow-up CT in 3 months").
- kind: imaging_followup | biopsy | clinical_correlation | comparison | consultation | other |
  **no_followup**. "No follow-up imaging is recommended", "does not require follow-up", "follow-up
  is not needed" give kind "no_followup" (so "no follow-up" is recorded as a decision and never
  counted as a follow-up). "other" is a sentence with a strong cue ("recommend", "advised") but no
  known kind ("Recommend antibiotic therapy").
- A cue ("recommend", "suggest", "consider", "should be performed", "is warranted", "would be
  helpful", "if clinically indicated", ...) is needed for biopsy, consultation, and most comparison
  and imaging triggers; "follow-up"/"surveillance"/"repeat"/"screening" count with a cue or with an
  interval ("Follow-up CT in 6 weeks."); "correlate clinically"/"clinical correlation" and
  "correlate with prior imaging" need none. A trigger after "status post", "prior", "known",
  "after", ... is ignored ("Status post biopsy", "prior follow-up CT"), and so is "biopsy-proven".
- modality (same codes as processors.nlp.exam): CT, MR, US, XR, MG, NM, PET, RF, DXA, XA -- the first
  one named in the recommendation's text.
- interval in days: "in 3-6 months"/"in 3 to 6 months" -> 90..180 (a month is 30 days, but whole
  years of months are years: "12 months" -> 365), "in 6 weeks" -> 42..42, "in one year" /
  "annual" -> 365..365, "within 6 weeks" -> 0..42, "biennial" -> 730, "semiannual" -> 180,
  **"short-interval"/"short-term" follow-up -> 90..180** (3 to 6 months). "3 months ago" is not an
  interval. Only imaging_followup, consultation and other carry an interval.
- guideline: ACR TI-RADS, Fleischner, Lung-RADS, BI-RADS, LI-RADS, PI-RADS, O-RADS, TI-RADS, Bosniak,
  SRU, ATA, NCCN, AASLD, USPSTF, ACR -- in the recommendation's text, else in its sentence.
- Speed: regexes run on a lower-cased copy (not IGNORECASE); each pattern group in ``rules.json`` has
  ``keywords`` (substrings every match contains) and runs only on sentences holding one, and a
  sentence is looked at only if it holds a cue, a no-cue trigger or an interval keyword. **Keep the
  keywords in step when editing patterns.**
- ``parse_interval(text, start, end)`` is public for reuse. ``Recommendation.to_record()`` gives the
  Avro ``Recommendation`` record (``sentence`` is an extra field).
"""

from processors.nlp.recommendations.extract import Recommendation, extract_recommendations, parse_interval

__all__ = ["Recommendation", "extract_recommendations", "parse_interval"]
