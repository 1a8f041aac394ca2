-- Warehouse at scale (issue 15, bench/warehouse_scale.py). The *_latest views found the latest version of
-- every accession at query time: a GROUP BY over report_versions UNION ALL report_nlp (latest_versions),
-- then argMax(nlp_version, processed_time) over report_nlp, then a tuple IN over both, then the child table.
-- Every query through a latest view paid for the whole warehouse three times over.
--
-- report_current holds that answer, one row per (site, accession) once merged: the sink writes a row for
-- every report version (rank = version, has_nlp false) and for every NLP run (rank = report_version, then
-- processed_time, has_nlp true) beside the rows it writes anyway (sinks/clickhouse/rows.py), and
-- ReplacingMergeTree(rank) keeps the highest rank. So the row of an accession is its latest version's
-- newest NLP run, or, while that version waits for its NLP result, the bare version (no NLP rows shown:
-- never stale ones). A redelivered or replayed row has the same rank, and one copy stays. Read it FINAL
-- (radstream sql sets final=1, the views below say it).
-- FINAL merges every part that can hold a key. reports and report_versions were partitioned by the month of
-- exam_time: ~80 partitions for 7 years, a few parts each, so FINAL k-way merged some hundred parts on every
-- read (0.2 s per 100k reports for `SELECT max(exam_time) FROM reports FINAL` on this machine), point
-- look-ups by accession opened a granule in every part, and a backfill of an archive spanning more than 100
-- months failed (max_partitions_per_insert_block). Partitioned by a hash of the accession (a sorting-key
-- column), the engine knows no key spans two partitions and merges each alone (ClickHouse's
-- enable_automatic_decision_for_merging_across_partitions_for_final): FINAL is then nearly free once the
-- background merges have run (the same query: 0.004 s). report_current is partitioned the same way.
-- The tables are rebuilt as in 012: run it with the writers stopped, the RENAME is not repeatable (the
-- *_pre014 tables are the old ones if it fails after it).

CREATE TABLE IF NOT EXISTS {db}.report_versions_rekey AS {db}.report_versions
ENGINE = ReplacingMergeTree
PARTITION BY cityHash64(accession) % 8
ORDER BY (site, accession, version, event_id);

INSERT INTO {db}.report_versions_rekey SELECT * FROM {db}.report_versions;

CREATE TABLE IF NOT EXISTS {db}.reports_rekey AS {db}.reports
ENGINE = ReplacingMergeTree(version)
PARTITION BY cityHash64(accession) % 8
ORDER BY (site, accession);

INSERT INTO {db}.reports_rekey SELECT * FROM {db}.reports;

RENAME TABLE
    {db}.report_versions TO {db}.report_versions_pre014, {db}.report_versions_rekey TO {db}.report_versions,
    {db}.reports TO {db}.reports_pre014, {db}.reports_rekey TO {db}.reports;

DROP TABLE IF EXISTS {db}.report_versions_pre014;
DROP TABLE IF EXISTS {db}.reports_pre014;

CREATE TABLE IF NOT EXISTS {db}.report_current
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC') DEFAULT toDateTime64(0, 6, 'UTC') COMMENT 'of the NLP run; 0 without one',
    nlp_version LowCardinality(String) DEFAULT '',
    status LowCardinality(String),
    has_nlp Bool DEFAULT false COMMENT 'false: the latest version has no NLP result yet',
    -- version in the high 64 bits, then the NLP run's time (+1, so a run outranks its bare version),
    -- the sink computes the same (rows.current_rank)
    rank UInt128 DEFAULT bitShiftLeft(toUInt128(greatest(report_version, 0)), 64)
        + if(has_nlp, toUInt64(toUnixTimestamp64Micro(processed_time)) + 1, 0)
)
ENGINE = ReplacingMergeTree(rank)
PARTITION BY cityHash64(accession) % 8
ORDER BY (site, accession);

-- existing warehouses: fill it from what is there (a repeat inserts equal rows, which collapse)
INSERT INTO {db}.report_current (site, accession, report_version, status, has_nlp)
SELECT site, accession, version, status, false FROM {db}.report_versions;

INSERT INTO {db}.report_current (site, accession, report_version, nlp_version, processed_time, status, has_nlp)
SELECT site, accession, report_version, nlp_version, processed_time, status, true FROM {db}.report_nlp;

-- the same answers as before (tests/sinks/clickhouse), from report_current instead of three aggregations
CREATE OR REPLACE VIEW {db}.latest_versions AS
SELECT site, accession, report_version AS latest_version
FROM {db}.report_current FINAL;

CREATE OR REPLACE VIEW {db}.nlp_latest AS
SELECT *
FROM {db}.report_nlp FINAL
WHERE (site, accession, report_version, nlp_version, processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.findings_latest AS
SELECT t.*, r.patient_id_is_pseudonym, r.visit_number, r.patient_class, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.body_part, r.exam_time, r.status_time,
       r.status AS report_status
FROM {db}.findings AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.measurements_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time
FROM {db}.measurements AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.recommendations_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality AS report_modality,
       r.study_instance_uid, r.procedure_code, r.exam_time
FROM {db}.recommendations AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.assessments_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.exam_time, r.status_time
FROM {db}.assessments AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.critical_results_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time, r.status_time,
       if(t.communication_time IS NULL OR r.status_time IS NULL, NULL,
          dateDiff('minute', r.status_time, t.communication_time)) AS minutes_to_communication
FROM {db}.critical_results AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.chest_labels_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid, r.exam_time
FROM {db}.chest_labels AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

CREATE OR REPLACE VIEW {db}.sections_latest AS
SELECT t.*
FROM {db}.sections AS t FINAL
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));

-- findings_latest without the report's context: the same rows, no join with reports_latest. A query that
-- needs only the finding columns (a key set for IN, facet counts) reads it without that join.
CREATE OR REPLACE VIEW {db}.findings_current AS
SELECT t.*
FROM {db}.findings AS t FINAL
WHERE (t.site, t.accession, t.report_version, t.nlp_version, t.processed_time) IN
      (SELECT site, accession, report_version, nlp_version, processed_time FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));
