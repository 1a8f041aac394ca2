-- Idempotent NLP rows (issue 14). The NLP tables were keyed on processed_time (the time of the NLP run),
-- so an exact resend or a replay of a report added a second set of rows under a new key. Now the key of
-- an NLP row is (report version, nlp_version, row index): the same report version analysed again by the
-- same NLP version replaces its rows when the table merges (ReplacingMergeTree(processed_time) keeps the
-- newest run), and a new NLP version adds its own rows, which the *_latest views prefer (newest
-- processed_time per report version). Partitions are by nlp_version, never by run time: rows that must
-- replace each other sit in one partition, and an old NLP version's rows can be dropped as a partition.
--
-- ClickHouse cannot change a sort key in place, so each table is rebuilt: the child tables get an
-- nlp_version column (filled from report_nlp for existing rows), a copy with the new key is filled from
-- the old table (duplicates collapse there), the two are swapped by RENAME and the old one dropped.
-- Run it with the writers stopped. The RENAME is not repeatable: if this file fails after the RENAME,
-- finish the remaining statements by hand (the *_pre012 tables are the old ones) and record it.

CREATE TABLE IF NOT EXISTS {db}.report_nlp_rekey AS {db}.report_nlp
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (site, accession, report_version, nlp_version);

INSERT INTO {db}.report_nlp_rekey SELECT * FROM {db}.report_nlp;

ALTER TABLE {db}.sections ADD COLUMN IF NOT EXISTS nlp_version LowCardinality(String) AFTER processed_time;

CREATE TABLE IF NOT EXISTS {db}.sections_rekey AS {db}.sections
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (site, accession, report_version, nlp_version, section_idx);

INSERT INTO {db}.sections_rekey
SELECT t.* REPLACE (n.nlp_version AS nlp_version)
FROM {db}.sections AS t
LEFT JOIN (SELECT DISTINCT site, accession, report_version, processed_time, nlp_version FROM {db}.report_nlp) AS n
    ON n.site = t.site AND n.accession = t.accession AND n.report_version = t.report_version
   AND n.processed_time = t.processed_time;

CREATE TABLE IF NOT EXISTS {db}.findings_rekey AS {db}.findings
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (concept, modality, site, accession, report_version, nlp_version, finding_idx);

INSERT INTO {db}.findings_rekey SELECT * FROM {db}.findings;

ALTER TABLE {db}.measurements ADD COLUMN IF NOT EXISTS nlp_version LowCardinality(String) AFTER processed_time;

CREATE TABLE IF NOT EXISTS {db}.measurements_rekey AS {db}.measurements
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (site, accession, report_version, nlp_version, measurement_idx);

INSERT INTO {db}.measurements_rekey
SELECT t.* REPLACE (n.nlp_version AS nlp_version)
FROM {db}.measurements AS t
LEFT JOIN (SELECT DISTINCT site, accession, report_version, processed_time, nlp_version FROM {db}.report_nlp) AS n
    ON n.site = t.site AND n.accession = t.accession AND n.report_version = t.report_version
   AND n.processed_time = t.processed_time;

ALTER TABLE {db}.recommendations ADD COLUMN IF NOT EXISTS nlp_version LowCardinality(String) AFTER processed_time;

CREATE TABLE IF NOT EXISTS {db}.recommendations_rekey AS {db}.recommendations
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (kind, site, accession, report_version, nlp_version, recommendation_idx);

INSERT INTO {db}.recommendations_rekey
SELECT t.* REPLACE (n.nlp_version AS nlp_version)
FROM {db}.recommendations AS t
LEFT JOIN (SELECT DISTINCT site, accession, report_version, processed_time, nlp_version FROM {db}.report_nlp) AS n
    ON n.site = t.site AND n.accession = t.accession AND n.report_version = t.report_version
   AND n.processed_time = t.processed_time;

ALTER TABLE {db}.assessments ADD COLUMN IF NOT EXISTS nlp_version LowCardinality(String) AFTER processed_time;

CREATE TABLE IF NOT EXISTS {db}.assessments_rekey AS {db}.assessments
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (system, category, site, accession, report_version, nlp_version, assessment_idx);

INSERT INTO {db}.assessments_rekey
SELECT t.* REPLACE (n.nlp_version AS nlp_version)
FROM {db}.assessments AS t
LEFT JOIN (SELECT DISTINCT site, accession, report_version, processed_time, nlp_version FROM {db}.report_nlp) AS n
    ON n.site = t.site AND n.accession = t.accession AND n.report_version = t.report_version
   AND n.processed_time = t.processed_time;

ALTER TABLE {db}.critical_results ADD COLUMN IF NOT EXISTS nlp_version LowCardinality(String) AFTER processed_time;

CREATE TABLE IF NOT EXISTS {db}.critical_results_rekey AS {db}.critical_results
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (concept, site, accession, report_version, nlp_version, critical_idx);

INSERT INTO {db}.critical_results_rekey
SELECT t.* REPLACE (n.nlp_version AS nlp_version)
FROM {db}.critical_results AS t
LEFT JOIN (SELECT DISTINCT site, accession, report_version, processed_time, nlp_version FROM {db}.report_nlp) AS n
    ON n.site = t.site AND n.accession = t.accession AND n.report_version = t.report_version
   AND n.processed_time = t.processed_time;

ALTER TABLE {db}.chest_labels ADD COLUMN IF NOT EXISTS nlp_version LowCardinality(String) AFTER processed_time;

CREATE TABLE IF NOT EXISTS {db}.chest_labels_rekey AS {db}.chest_labels
ENGINE = ReplacingMergeTree(processed_time)
PARTITION BY nlp_version
ORDER BY (label, site, accession, report_version, nlp_version);

INSERT INTO {db}.chest_labels_rekey
SELECT t.* REPLACE (n.nlp_version AS nlp_version)
FROM {db}.chest_labels AS t
LEFT JOIN (SELECT DISTINCT site, accession, report_version, processed_time, nlp_version FROM {db}.report_nlp) AS n
    ON n.site = t.site AND n.accession = t.accession AND n.report_version = t.report_version
   AND n.processed_time = t.processed_time;

RENAME TABLE
    {db}.report_nlp TO {db}.report_nlp_pre012, {db}.report_nlp_rekey TO {db}.report_nlp,
    {db}.sections TO {db}.sections_pre012, {db}.sections_rekey TO {db}.sections,
    {db}.findings TO {db}.findings_pre012, {db}.findings_rekey TO {db}.findings,
    {db}.measurements TO {db}.measurements_pre012, {db}.measurements_rekey TO {db}.measurements,
    {db}.recommendations TO {db}.recommendations_pre012, {db}.recommendations_rekey TO {db}.recommendations,
    {db}.assessments TO {db}.assessments_pre012, {db}.assessments_rekey TO {db}.assessments,
    {db}.critical_results TO {db}.critical_results_pre012, {db}.critical_results_rekey TO {db}.critical_results,
    {db}.chest_labels TO {db}.chest_labels_pre012, {db}.chest_labels_rekey TO {db}.chest_labels;

DROP TABLE IF EXISTS {db}.report_nlp_pre012;
DROP TABLE IF EXISTS {db}.sections_pre012;
DROP TABLE IF EXISTS {db}.findings_pre012;
DROP TABLE IF EXISTS {db}.measurements_pre012;
DROP TABLE IF EXISTS {db}.recommendations_pre012;
DROP TABLE IF EXISTS {db}.assessments_pre012;
DROP TABLE IF EXISTS {db}.critical_results_pre012;
DROP TABLE IF EXISTS {db}.chest_labels_pre012;

-- The latest views: the latest version of each report (002), and of its NLP results those of the newest
-- run (processed_time), so results of a new NLP version replace the old ones here. A child row must carry
-- that run's processed_time too: FINAL gives every key the time of its newest run, so rows of an older
-- run of the same NLP version that the newer run did not write again (say a finding fewer) stay hidden.
CREATE OR REPLACE VIEW {db}.nlp_latest AS
SELECT *
FROM {db}.report_nlp FINAL
WHERE (site, accession, report_version, nlp_version) IN
(
    SELECT site, accession, report_version, argMax(nlp_version, processed_time)
    FROM {db}.report_nlp
    WHERE (site, accession, report_version) IN (SELECT site, accession, latest_version FROM {db}.latest_versions)
    GROUP BY site, accession, report_version
)
AND status NOT IN ('cancelled', 'entered_in_error');

CREATE OR REPLACE VIEW {db}.findings_latest AS
SELECT t.*, r.patient_id_is_pseudonym, r.visit_number, r.patient_class, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.body_part, r.exam_time, r.status_time,
       r.status AS report_status
FROM {db}.findings AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.measurements_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time
FROM {db}.measurements AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.recommendations_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality AS report_modality,
       r.study_instance_uid, r.procedure_code, r.exam_time
FROM {db}.recommendations AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.assessments_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.exam_time, r.status_time
FROM {db}.assessments AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.critical_results_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time, r.status_time,
       if(t.communication_time IS NULL OR r.status_time IS NULL, NULL,
          dateDiff('minute', r.status_time, t.communication_time)) AS minutes_to_communication
FROM {db}.critical_results AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.chest_labels_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid, r.exam_time
FROM {db}.chest_labels AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.sections_latest AS
SELECT t.*
FROM {db}.sections AS t FINAL
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.nlp_latest);
