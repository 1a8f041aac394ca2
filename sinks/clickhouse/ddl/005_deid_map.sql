-- received_instance v2: the de-identification mapping of every de-identified instance, original ->
-- pseudonym, one row per identifier. RESTRICTED: it re-identifies research data. Analysts' roles
-- must not be granted it (e.g. REVOKE SELECT ON {db}.deid_map FROM analyst); the research-facing
-- received_instances table holds only the pseudonymised values.
CREATE TABLE IF NOT EXISTS {db}.deid_map
(
    project_id LowCardinality(String),
    kind LowCardinality(String) COMMENT 'patient_id | accession | study_instance_uid | series_instance_uid | sop_instance_uid',
    original String,
    pseudonym String,
    time DateTime64(6, 'UTC') COMMENT 'when the instance was stored',
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, kind, pseudonym, original);

ALTER TABLE {db}.received_instances ADD COLUMN IF NOT EXISTS patient_id String DEFAULT ''
    COMMENT 'PatientID of the instance (the research pseudonym when de-identified)' AFTER accession;
