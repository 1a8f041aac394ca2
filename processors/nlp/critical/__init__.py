"""Critical results and their communication.

- ``concepts.json``: critical (level 1, minutes) and urgent (level 2, hours) actionable findings after
  the ACR communication practice parameter / actionable-findings categories, each a concept name with
  synonyms (pneumothorax, tension pneumothorax, pulmonary embolism, aortic dissection/rupture,
  intracranial hemorrhage incl. subdural/epidural/subarachnoid/intraparenchymal/intraventricular,
  acute stroke/LVO, herniation, midline shift, pneumoperitoneum/free air, perforation, bowel
  ischemia, volvulus, bowel obstruction, appendicitis, cholecystitis, ectopic pregnancy,
  testicular/ovarian torsion, cord compression, unstable spine injury, malpositioned tubes/lines,
  tamponade, active hemorrhage, solid organ injury, airway compromise, necrotizing fasciitis,
  DVT, ...). ``critical_concepts()``, ``critical_synonyms()`` (concept -> normalised synonyms, to add
  missing ones to the core lexicon) and ``critical_level(concept)`` expose it.
- ``match_critical(concept, text)``: a finding is critical when its text contains a synonym (longest
  synonym wins: "tension pneumothorax" -> tension_pneumothorax) or its concept name is one of the
  concepts/synonyms; names are compared lower-case with "_", "-", "/" as spaces.
- ``critical_results(findings, *, include_uncertain=False, sections=REPORTED_SECTIONS)``: findings of
  this exam only (a finding whose ``section`` is the indication/history, exam, technique or comparison
  is left out: ``reported_sections`` in concepts.json), and **positive mentions only**: not negated,
  not hypothetical ("evaluate for PE"), not historical, experiencer "patient", and not resolved
  (optional ``change`` attribute). "Probable" mentions (optional ``certainty`` == "probable", e.g.
  "findings likely representing a small pneumothorax") count, flagged ``uncertain=True``. Other
  uncertain mentions ("cannot exclude a small pneumothorax") are left out by default: hedged
  mentions are common and an automatic critical flag on them would mostly be false alarms;
  ``include_uncertain=True`` returns them with ``uncertain=True`` for a separate review queue.
  One CriticalResult per finding; ``finding`` is its index in the sequence given.
- ``find_communication(text, sentences=None, *, dayfirst=False)``: the first sentence saying results
  were communicated ("discussed with Dr. Smith by telephone at 14:35 on 1/2/2024", "communicated to
  the ED physician", "called to and read back by ...", "Dr. X was notified at ..."), skipping future
  or negated ones ("will be discussed with") and verbs with neither a recipient nor a time
  ("informed consent was obtained"). ``recipient``: a titled name, else the role phrase
  ("the ED physician"). ``time_text``: the raw date/time words. ``time``: a naive datetime (local
  time as written) only when both a full date (with year; M/D/Y unless ``dayfirst``) and a time of
  day are given -- a date alone gives None rather than a made-up midnight.
- ``to_record()`` on CriticalResult / Communication gives the Avro records.
"""

from processors.nlp.critical.extract import (
    REPORTED_SECTIONS,
    Communication,
    CriticalResult,
    critical_concepts,
    critical_level,
    critical_results,
    critical_synonyms,
    find_communication,
    match_critical,
    normalise,
)

__all__ = [
    "REPORTED_SECTIONS",
    "Communication",
    "CriticalResult",
    "critical_concepts",
    "critical_level",
    "critical_results",
    "critical_synonyms",
    "find_communication",
    "match_critical",
    "normalise",
]
