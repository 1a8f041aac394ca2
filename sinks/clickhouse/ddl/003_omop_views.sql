-- OMOP CDM 5.4-shaped views over the latest report versions, and an MI-CDM-like image_occurrence.
-- Integer ids are stable 63-bit hashes of our natural keys (same input -> same id on every load).
-- Concept ids we cannot map are 0, as the CDM asks; *_source_value columns keep our values.
-- Columns after the CDM ones (prefixed rs_) are radstream extensions: join keys for the warehouse.

CREATE OR REPLACE VIEW {db}.note AS
SELECT
    toInt64(bitAnd(cityHash64(site, accession, version), 0x7FFFFFFFFFFFFFFF)) AS note_id,
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
FROM {db}.reports_latest;

-- term_exists 'N' when the finding is negated, not about the patient, hypothetical or uncertain;
-- term_temporal 'past' for historical findings, else 'present'.
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
    0 AS note_nlp_concept_id,
    0 AS note_nlp_source_concept_id,
    concat('radstream ', f.nlp_version) AS nlp_system,
    toDate(f.processed_time) AS nlp_date,
    f.processed_time AS nlp_datetime,
    if(f.negated OR f.uncertain OR f.hypothetical OR f.experiencer != 'patient', 'N', 'Y') AS term_exists,
    if(f.historical, 'past', 'present') AS term_temporal,
    concat('negated=', if(f.negated, 'yes', 'no'),
           ',subject=', f.experiencer,
           ',certainty=', if(f.uncertain, 'uncertain', 'certain'),
           ',hypothetical=', if(f.hypothetical, 'yes', 'no'),
           ',historical=', if(f.historical, 'yes', 'no'),
           ',section=', f.section,
           if(f.laterality = '', '', concat(',laterality=', f.laterality)),
           if(f.severity = '', '', concat(',severity=', f.severity)),
           if(f.change = '', '', concat(',change=', f.change)),
           if(f.size_mm IS NULL, '', concat(',size_mm=', toString(f.size_mm)))) AS term_modifiers,
    f.concept AS rs_concept, f.category AS rs_category, f.site AS rs_site, f.accession AS rs_accession,
    f.report_version AS rs_version, f.patient_id AS rs_patient_id, f.study_instance_uid AS rs_study_instance_uid
FROM {db}.findings_latest AS f
LEFT JOIN {db}.reports_latest AS r ON r.site = f.site AND r.accession = f.accession;

-- One row per received series (MI-CDM IMAGE_OCCURRENCE is series-level).
CREATE OR REPLACE VIEW {db}.image_occurrence AS
SELECT
    toInt64(bitAnd(cityHash64(i.project_id, i.study_instance_uid, i.series_instance_uid), 0x7FFFFFFFFFFFFFFF))
        AS image_occurrence_id,
    if(p.patient_id = '', NULL,
       toInt64(bitAnd(cityHash64(p.site, p.patient_id), 0x7FFFFFFFFFFFFFFF))) AS person_id,
    CAST(NULL AS Nullable(Int64)) AS procedure_occurrence_id,
    CAST(NULL AS Nullable(Int64)) AS visit_occurrence_id,
    0 AS anatomic_site_concept_id,
    '' AS wadors_uri,
    i.local_path AS local_path,
    toDate(i.first_time) AS image_occurrence_date,
    i.study_instance_uid AS image_study_uid,
    i.series_instance_uid AS image_series_uid,
    0 AS modality_concept_id,
    i.modality AS modality_source_value,
    i.project_id AS rs_project_id, i.accession AS rs_accession, p.patient_id AS rs_patient_id,
    i.n_instances AS rs_n_instances, i.total_bytes AS rs_total_bytes
FROM
(
    SELECT project_id, study_instance_uid, series_instance_uid, any(accession) AS accession,
           any(modality) AS modality, any(dirname) AS local_path, min(time) AS first_time,
           count() AS n_instances, sum(size_bytes) AS total_bytes
    FROM (SELECT *, replaceRegexpOne(path, '/[^/]*$', '') AS dirname FROM {db}.received_instances FINAL)
    GROUP BY project_id, study_instance_uid, series_instance_uid
) AS i
LEFT JOIN
(
    SELECT accession, any(site) AS site, any(patient_id) AS patient_id FROM {db}.reports_latest GROUP BY accession
) AS p ON p.accession = i.accession;
