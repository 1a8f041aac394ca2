-- Warehouse at scale, part 5 (issue 15). Three keys that queries computed for every row of a table,
-- whatever their filter, are now columns written with the row (MATERIALIZED: computed on insert, not in
-- SELECT *, and not insertable, so writers and readers of the tables change nothing):
-- * report_current.run_key: the current run's sipHash128 that the NLP latest and current views (015)
--   check every child row against; the set of them was hashed from five columns of every report on each
--   query (~100 ms at 1M reports);
-- * reports.report_key: sipHash128(site, accession), the key note_nlp (021) joins every current report on;
-- * reports.omop_note_id: the OMOP note_id (003), which note and the documented note_nlp-note join use.
-- The same expressions as before, so the rows and ids are the same (tests/sinks/clickhouse/
-- test_materialized_keys.py). At 1M reports the documented omop_note_nlp query needs about 17% less
-- CPU (docs/benchmarks.md, "Warehouse at scale"); the three columns take 16 + 16 + 8 bytes per report
-- (~40 MB at 1M reports, against ~1.5 GB of warehouse). MATERIALIZE COLUMN writes them for the rows
-- written before (a mutation: the new column's files only).
ALTER TABLE {db}.report_current
    ADD COLUMN IF NOT EXISTS run_key FixedString(16)
        MATERIALIZED sipHash128(site, accession, report_version, nlp_version, processed_time)
        COMMENT 'sipHash128 of the run (site, accession, report_version, nlp_version, processed_time)';

ALTER TABLE {db}.report_current MATERIALIZE COLUMN run_key SETTINGS mutations_sync = 2;

ALTER TABLE {db}.reports
    ADD COLUMN IF NOT EXISTS report_key FixedString(16) MATERIALIZED sipHash128(site, accession)
        COMMENT 'sipHash128(site, accession)',
    ADD COLUMN IF NOT EXISTS omop_note_id Int64
        MATERIALIZED toInt64(bitAnd(cityHash64(site, accession, version), 0x7FFFFFFFFFFFFFFF))
        COMMENT 'the OMOP note_id of this version (view note)';

ALTER TABLE {db}.reports MATERIALIZE COLUMN report_key SETTINGS mutations_sync = 2;

ALTER TABLE {db}.reports MATERIALIZE COLUMN omop_note_id SETTINGS mutations_sync = 2;

-- the views of 015, 003 and 021 over the stored keys, otherwise as they were
CREATE OR REPLACE VIEW {db}.nlp_latest AS
SELECT *
FROM {db}.report_nlp FINAL
WHERE sipHash128(site, accession, report_version, nlp_version, processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.findings_latest AS
SELECT t.*, r.patient_id_is_pseudonym, r.visit_number, r.patient_class, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.body_part, r.exam_time, r.status_time,
       r.status AS report_status
FROM {db}.findings AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.measurements_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time
FROM {db}.measurements AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.recommendations_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality AS report_modality,
       r.study_instance_uid, r.procedure_code, r.exam_time
FROM {db}.recommendations AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.assessments_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.exam_time, r.status_time
FROM {db}.assessments AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.critical_results_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time, r.status_time,
       if(t.communication_time IS NULL OR r.status_time IS NULL, NULL,
          dateDiff('minute', r.status_time, t.communication_time)) AS minutes_to_communication
FROM {db}.critical_results AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.chest_labels_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid, r.exam_time
FROM {db}.chest_labels AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.sections_latest AS
SELECT t.*
FROM {db}.sections AS t FINAL
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.findings_current AS
SELECT t.*
FROM {db}.findings AS t FINAL
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.note AS
SELECT
    omop_note_id AS note_id,
    toInt64(bitAnd(cityHash64(site, patient_id), 0x7FFFFFFFFFFFFFFF)) AS person_id,
    toDate(coalesce(status_time, exam_time)) AS note_date,
    coalesce(status_time, exam_time) AS note_datetime,
    32817 AS note_type_concept_id,          -- EHR
    0 AS note_class_concept_id,
    procedure_description AS note_title,
    text AS note_text,
    32678 AS encoding_concept_id,           -- UTF-8
    4180186 AS language_concept_id,         -- English
    CAST(NULL AS Nullable(Int64)) AS provider_id,
    CAST(NULL AS Nullable(Int64)) AS visit_occurrence_id,
    CAST(NULL AS Nullable(Int64)) AS visit_detail_id,
    concat(site, '|', accession, '|', toString(version)) AS note_source_value,
    CAST(NULL AS Nullable(Int64)) AS note_event_id,
    CAST(NULL AS Nullable(Int64)) AS note_event_field_concept_id,
    site AS rs_site, accession AS rs_accession, version AS rs_version, status AS rs_status,
    patient_id AS rs_patient_id, visit_number AS rs_visit_number, patient_class AS rs_patient_class,
    modality AS rs_modality, procedure_code AS rs_procedure_code, study_instance_uid AS rs_study_instance_uid,
    exam_time AS rs_exam_time
FROM {db}.reports FINAL
WHERE status NOT IN ('cancelled', 'entered_in_error');

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
    SELECT report_key, study_instance_uid, text FROM {db}.reports FINAL
    WHERE status NOT IN ('cancelled', 'entered_in_error')
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
