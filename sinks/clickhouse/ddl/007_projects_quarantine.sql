-- Registered research projects: every registration as it was made (append-only history; the current one
-- per project is the latest by time). A project is de-identified unless identified = true, which needs
-- an IRB approval or waiver reference (checked by `radstream project add`).
CREATE TABLE IF NOT EXISTS {db}.projects
(
    project_id LowCardinality(String),
    identified Bool,
    irb_reference String,
    retain_modified_dates Bool COMMENT 'PS3.15 E.1 option 113107',
    retain_patient_characteristics Bool COMMENT '113108',
    retain_device_identity Bool COMMENT '113109',
    retain_uids Bool COMMENT '113110',
    clean_descriptors Bool COMMENT '113105',
    private_safe_list Array(String),
    allow_burned_in_risk Bool COMMENT 'burned-in-risk SOP classes/modalities stored instead of quarantined',
    destination_ae LowCardinality(String),
    owner String,
    registered_by String,
    active Bool,
    time DateTime64(6, 'UTC') COMMENT 'when it was registered',
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, time);

-- Instances of de-identified projects that could not be made safe (kept as received, outside the project
-- tree), and what a data steward did with them: one row per action (quarantined, released, purged) with
-- who (actor) and why (reason, note). RESTRICTED: it names original UIDs; stewards only (like deid_map).
CREATE TABLE IF NOT EXISTS {db}.quarantine
(
    action LowCardinality(String) COMMENT 'quarantined | released | purged',
    project_id LowCardinality(String),
    request_id String,
    study_instance_uid String COMMENT 'original',
    series_instance_uid String,
    sop_instance_uid String,
    sop_class_uid LowCardinality(String),
    modality LowCardinality(String),
    reason String,
    path String,
    size_bytes Int64,
    actor String COMMENT 'quarantined: the calling AE; released/purged: the user',
    note String,
    time DateTime64(6, 'UTC'),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (project_id, sop_instance_uid, action, time);
