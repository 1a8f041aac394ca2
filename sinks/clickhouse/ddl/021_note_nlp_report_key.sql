-- Warehouse at scale, part 4 (issue 15). note_nlp (017) joins every current finding it shows to its report in
-- reports_latest for the study UID and the snippet's text. The right side of that join is every current report
-- (1M at 1M reports) whatever the query's filter, and its hash table was keyed on (site, accession): a
-- LowCardinality and a String column, hashed and compared as strings. Keyed on one 128-bit hash of the two
-- (sipHash128, as the latest views' run check since 015; a collision among 10^9 reports has a probability
-- near 1e-21) and holding only the columns the view uses, queries of note_nlp need 10-26% less CPU at 1M
-- reports (docs/benchmarks.md, "Warehouse at scale"). The text is the same (reports_latest.text, de-identified),
-- the rows and columns are the same (tests/sinks/clickhouse/test_note_nlp_017.py). Only the view changes:
-- safe on a live warehouse.
CREATE OR REPLACE VIEW {db}.note_nlp AS
SELECT
    toInt64(bitAnd(cityHash64(f.site, f.accession, f.report_version, f.processed_time, f.finding_idx),
                   0x7FFFFFFFFFFFFFFF)) AS note_nlp_id,
    toInt64(bitAnd(cityHash64(f.site, f.accession, f.report_version), 0x7FFFFFFFFFFFFFFF)) AS note_id,
    0 AS section_concept_id,
    substringUTF8(r.text, greatest(toInt64(f.start) - 60, 0) + 1,
                  toInt64(f.end) - greatest(toInt64(f.start) - 60, 0) + 60) AS snippet,
    toString(f.start) AS offset,
    f.text AS lexical_variant,
    toInt64(coalesce(m.standard_id, 0)) AS note_nlp_concept_id,
    toInt64(coalesce(m.source_id, 0)) AS note_nlp_source_concept_id,
    concat('radstream ', f.nlp_version) AS nlp_system,
    toDate(f.processed_time) AS nlp_date,
    f.processed_time AS nlp_datetime,
    if(f.negated OR f.uncertain OR f.hypothetical OR f.experiencer != 'patient', 'N', 'Y') AS term_exists,
    if(f.historical, 'past', 'present') AS term_temporal,
    concat('negated=', if(f.negated, 'yes', 'no'),
           ',subject=', f.experiencer,
           ',certainty=', if(f.uncertain AND f.certainty = 'definite', 'uncertain', f.certainty),
           ',hypothetical=', if(f.hypothetical, 'yes', 'no'),
           ',historical=', if(f.historical, 'yes', 'no'),
           ',section=', f.section,
           if(f.laterality = '', '', concat(',laterality=', f.laterality)),
           if(f.severity = '', '', concat(',severity=', f.severity)),
           if(f.change = '', '', concat(',change=', f.change)),
           if(f.size_mm IS NULL, '', concat(',size_mm=', toString(f.size_mm)))) AS term_modifiers,
    f.concept AS rs_concept, f.category AS rs_category, f.site AS rs_site, f.accession AS rs_accession,
    f.report_version AS rs_version, f.patient_id AS rs_patient_id, r.study_instance_uid AS rs_study_instance_uid,
    coalesce(m.source_code, '') AS rs_source_code
FROM {db}.findings_current AS f
LEFT JOIN
(
    -- the join's build side: every current report, so only the columns used, under one fixed-size key
    SELECT sipHash128(site, accession) AS report_key, study_instance_uid, text FROM {db}.reports_latest
) AS r ON r.report_key = sipHash128(f.site, f.accession)
LEFT JOIN
(
    -- per lexicon concept: its preferred code (SNOMED before RadLex), and the ids of its codes in the
    -- site's concept table: the first valid one (source), the first valid standard one (standard)
    SELECT c.concept AS concept,
           argMin(concat(c.vocabulary_id, ':', c.concept_code), c.preference) AS source_code,
           argMinIf(k.concept_id, c.preference, k.concept_id != 0) AS source_id,
           argMinIf(k.concept_id, c.preference, k.standard_concept = 'S') AS standard_id
    FROM {db}.concept_codes AS c
    LEFT JOIN
    (
        SELECT concept_id, vocabulary_id, concept_code, standard_concept FROM {db}.concept FINAL
        WHERE coalesce(invalid_reason, '') = ''
    ) AS k ON k.vocabulary_id = c.vocabulary_id AND k.concept_code = c.concept_code
    GROUP BY c.concept
) AS m ON m.concept = f.concept;
