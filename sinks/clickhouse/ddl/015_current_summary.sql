-- Warehouse at scale, part 2 (issues 15 and 16). A search over NLP results ("nodule >= 6 mm, present",
-- "BI-RADS >= 4", "critical") went through findings_latest / assessments_latest / critical_results_latest:
-- every child row of the whole warehouse FINAL, checked against every current run. report_current (014)
-- already holds one row per accession once merged, the latest version's newest NLP run; it now also carries
-- that run's findings, assessments, critical results and recommendations as parallel arrays (index i of
-- each finding_* array is finding i). A search reads one row per accession, and a superseded run's arrays
-- go with its row: the sink writes them from the same NLP record as the row (sinks/clickhouse/rows.py), a
-- report version's bare row has empty arrays, and the rank decides as before.
ALTER TABLE {db}.report_current
    ADD COLUMN IF NOT EXISTS body_region LowCardinality(String) DEFAULT '' COMMENT 'of the NLP run (report_nlp)',
    ADD COLUMN IF NOT EXISTS finding_concepts Array(LowCardinality(String)) COMMENT 'findings of the run, by finding_idx',
    ADD COLUMN IF NOT EXISTS finding_negated Array(Bool),
    ADD COLUMN IF NOT EXISTS finding_uncertain Array(Bool),
    ADD COLUMN IF NOT EXISTS finding_size_mm Array(Nullable(Float64)),
    ADD COLUMN IF NOT EXISTS assessment_systems Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS assessment_categories Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS critical_concepts Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS recommendation_kinds Array(LowCardinality(String)),
    ADD COLUMN IF NOT EXISTS recommendation_days Array(Nullable(Int32)) COMMENT 'interval_days_min of each';

-- existing warehouses: the current run of each accession again, with its arrays. Its rank equals the row
-- already there, and of equal ranks ReplacingMergeTree keeps the last inserted. A repeat inserts equal rows.
INSERT INTO {db}.report_current
    (site, accession, report_version, processed_time, nlp_version, status, has_nlp, body_region,
     finding_concepts, finding_negated, finding_uncertain, finding_size_mm, assessment_systems,
     assessment_categories, critical_concepts, recommendation_kinds, recommendation_days)
SELECT c.site, c.accession, c.report_version, c.processed_time, c.nlp_version, c.status, true, n.body_region,
       f.f_concepts, f.f_negated, f.f_uncertain, f.f_sizes, a.a_systems, a.a_categories, k.k_concepts,
       m.m_kinds, m.m_days
FROM (SELECT site, accession, report_version, processed_time, nlp_version, status
      FROM {db}.report_current FINAL WHERE has_nlp) AS c
LEFT JOIN (SELECT site, accession, report_version, nlp_version, processed_time, body_region
           FROM {db}.report_nlp FINAL) AS n
    USING (site, accession, report_version, nlp_version, processed_time)
LEFT JOIN (SELECT site, accession, report_version, nlp_version, processed_time,
                  arraySort(groupArray((finding_idx, concept, negated, uncertain, size_mm))) AS f_sorted,
                  arrayMap(x -> x.2, f_sorted) AS f_concepts, arrayMap(x -> x.3, f_sorted) AS f_negated,
                  arrayMap(x -> x.4, f_sorted) AS f_uncertain, arrayMap(x -> x.5, f_sorted) AS f_sizes
           FROM {db}.findings FINAL GROUP BY site, accession, report_version, nlp_version, processed_time) AS f
    USING (site, accession, report_version, nlp_version, processed_time)
LEFT JOIN (SELECT site, accession, report_version, nlp_version, processed_time,
                  arraySort(groupArray((assessment_idx, system, category))) AS a_sorted,
                  arrayMap(x -> x.2, a_sorted) AS a_systems, arrayMap(x -> x.3, a_sorted) AS a_categories
           FROM {db}.assessments FINAL GROUP BY site, accession, report_version, nlp_version, processed_time) AS a
    USING (site, accession, report_version, nlp_version, processed_time)
LEFT JOIN (SELECT site, accession, report_version, nlp_version, processed_time,
                  arrayMap(x -> x.2, arraySort(groupArray((critical_idx, concept)))) AS k_concepts
           FROM {db}.critical_results FINAL
           GROUP BY site, accession, report_version, nlp_version, processed_time) AS k
    USING (site, accession, report_version, nlp_version, processed_time)
LEFT JOIN (SELECT site, accession, report_version, nlp_version, processed_time,
                  arraySort(groupArray((recommendation_idx, kind, interval_days_min))) AS m_sorted,
                  arrayMap(x -> x.2, m_sorted) AS m_kinds, arrayMap(x -> x.3, m_sorted) AS m_days
           FROM {db}.recommendations FINAL
           GROUP BY site, accession, report_version, nlp_version, processed_time) AS m
    USING (site, accession, report_version, nlp_version, processed_time);

-- The NLP latest views checked each child row against the current runs as a 5-column tuple IN: a set of
-- every current run's (site, accession, version, NLP version, run time), ~1.4 s per pass at 1M reports.
-- A 128-bit hash of the same five values is one fixed-size key per run (sipHash128: a collision among
-- a billion runs has a probability near 1e-21) and halves that; the rows are the same.
CREATE OR REPLACE VIEW {db}.nlp_latest AS
SELECT *
FROM {db}.report_nlp FINAL
WHERE sipHash128(site, accession, report_version, nlp_version, processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.findings_latest AS
SELECT t.*, r.patient_id_is_pseudonym, r.visit_number, r.patient_class, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.body_part, r.exam_time, r.status_time,
       r.status AS report_status
FROM {db}.findings AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.measurements_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time
FROM {db}.measurements AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.recommendations_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality AS report_modality,
       r.study_instance_uid, r.procedure_code, r.exam_time
FROM {db}.recommendations AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.assessments_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.exam_time, r.status_time
FROM {db}.assessments AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.critical_results_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time, r.status_time,
       if(t.communication_time IS NULL OR r.status_time IS NULL, NULL,
          dateDiff('minute', r.status_time, t.communication_time)) AS minutes_to_communication
FROM {db}.critical_results AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.chest_labels_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid, r.exam_time
FROM {db}.chest_labels AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.sections_latest AS
SELECT t.*
FROM {db}.sections AS t FINAL
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.findings_current AS
SELECT t.*
FROM {db}.findings AS t FINAL
WHERE sipHash128(t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT sipHash128(site, accession, report_version, nlp_version, processed_time) FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

-- one row per accession again (the rows above doubled it until the background merges get to them)
OPTIMIZE TABLE {db}.report_current FINAL;
