"""Standing-cohort rules: does one report version's NLP result match a project's criteria?

Rules are data (JSON), one object per rule; every key given must hold (AND); lists mean "any of".
Keys: ``modality``, ``body_region``, ``status``, ``finding`` (``concept``, ``min_size_mm``,
``sections``, ``allow_uncertain``), ``assessment`` (``system``, ``categories``), ``after`` /
``before`` (ISO dates, compared with the exam's observation time when the record has one, else the
processing time). A finding counts only when it is present for the patient: not negated, not
hypothetical, not historical, experiencer ``patient``, and not uncertain unless
``allow_uncertain`` is true.
"""

from processors.cohort.rules import CohortRule, RuleError, load_rule, matches

__all__ = ["CohortRule", "RuleError", "load_rule", "matches"]
