-- radstream warehouse, base tables. {db} is replaced by settings.clickhouse.database.
-- Idempotency: every table is a ReplacingMergeTree whose ORDER BY key is the natural key of a row,
-- so a replayed or re-delivered event collapses into one row (read with FINAL, or the *_latest views,
-- or `radstream sql`, which sets final=1). Kafka position columns say where a row came from.

CREATE TABLE IF NOT EXISTS {db}.report_versions
(
    site LowCardinality(String),
    accession String,
    version Int64 COMMENT 'ordering key of the version: a higher version supersedes a lower one',
    event_id String,
    report_id String,
    status LowCardinality(String) COMMENT 'preliminary | final | corrected | addendum | cancelled | entered_in_error',
    patient_id String COMMENT 'patient identifier or its keyed pseudonym (see patient_id_is_pseudonym)',
    patient_id_is_pseudonym Bool,
    visit_number String COMMENT 'visit / encounter number (HL7 PV1-19), empty when unknown',
    patient_class LowCardinality(String) COMMENT 'inpatient | outpatient | emergency | ..., empty when unknown',
    modality LowCardinality(String),
    procedure_code LowCardinality(String),
    procedure_description LowCardinality(String),
    body_part LowCardinality(String),
    study_instance_uid String,
    observation_time Nullable(DateTime64(6, 'UTC')) COMMENT 'exam performed (OBR-7)',
    status_time Nullable(DateTime64(6, 'UTC')) COMMENT 'report reached this status (OBR-22)',
    received_time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    exam_time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)) COMMENT 'observation_time, else status_time, else received_time',
    author String,
    source_format LowCardinality(String),
    source_message_id String,
    text String CODEC(ZSTD(3)),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX ix_patient patient_id TYPE bloom_filter GRANULARITY 4,
    INDEX ix_study study_instance_uid TYPE bloom_filter GRANULARITY 4,
    INDEX ix_exam_time exam_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(exam_time)
ORDER BY (site, accession, version, event_id);

-- Latest version per (site, accession): ReplacingMergeTree on the version column.
-- Read it as `reports FINAL` (or the view reports_latest); argMax(col, version) GROUP BY site, accession
-- over report_versions gives the same answer.
CREATE TABLE IF NOT EXISTS {db}.reports AS {db}.report_versions
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(exam_time)
ORDER BY (site, accession);

-- One row per NLP result (ReportFindings event): the header of the child tables below.
CREATE TABLE IF NOT EXISTS {db}.report_nlp
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC') COMMENT 'NLP run time: a re-run of the same version gets a new one',
    event_id String,
    status LowCardinality(String),
    patient_id String,
    modality LowCardinality(String),
    body_region LowCardinality(String),
    contrast Nullable(Bool),
    nlp_version LowCardinality(String),
    n_findings UInt16,
    n_critical UInt16,
    communication_text String,
    communication_recipient String,
    communication_time_text String,
    communication_time Nullable(DateTime64(6, 'UTC')),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (site, accession, report_version, processed_time);

CREATE TABLE IF NOT EXISTS {db}.sections
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC'),
    section_idx UInt16,
    name LowCardinality(String),
    title String,
    start UInt32,
    end UInt32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (site, accession, report_version, processed_time, section_idx);

CREATE TABLE IF NOT EXISTS {db}.findings
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC'),
    finding_idx UInt16,
    patient_id String,
    modality LowCardinality(String),
    concept LowCardinality(String),
    category LowCardinality(String),
    text String,
    start UInt32,
    end UInt32,
    sentence UInt32,
    section LowCardinality(String),
    negated Bool,
    uncertain Bool,
    historical Bool,
    hypothetical Bool,
    experiencer LowCardinality(String),
    laterality LowCardinality(String),
    anatomy Array(LowCardinality(String)),
    severity LowCardinality(String),
    change LowCardinality(String),
    size_mm Nullable(Float64),
    source LowCardinality(String),
    nlp_version LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (concept, modality, site, accession, report_version, processed_time, finding_idx);

CREATE TABLE IF NOT EXISTS {db}.measurements
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC'),
    measurement_idx UInt16,
    text String,
    start UInt32,
    end UInt32,
    dims_mm Array(Float64),
    max_mm Float64,
    prior_max_mm Nullable(Float64),
    finding_idx Nullable(Int32) COMMENT 'findings.finding_idx of the finding it describes',
    finding_concept LowCardinality(String) COMMENT 'concept of that finding, empty when none'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (site, accession, report_version, processed_time, measurement_idx);

CREATE TABLE IF NOT EXISTS {db}.recommendations
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC'),
    recommendation_idx UInt16,
    kind LowCardinality(String),
    text String,
    start UInt32,
    end UInt32,
    modality LowCardinality(String),
    interval_days_min Nullable(Int32),
    interval_days_max Nullable(Int32),
    guideline LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (kind, site, accession, report_version, processed_time, recommendation_idx);

CREATE TABLE IF NOT EXISTS {db}.assessments
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC'),
    assessment_idx UInt16,
    system LowCardinality(String) COMMENT 'BI-RADS | Lung-RADS | LI-RADS | PI-RADS | TI-RADS | Bosniak | O-RADS',
    category LowCardinality(String),
    text String,
    start UInt32,
    end UInt32
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (system, category, site, accession, report_version, processed_time, assessment_idx);

CREATE TABLE IF NOT EXISTS {db}.critical_results
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC'),
    critical_idx UInt16,
    concept LowCardinality(String),
    text String,
    start UInt32,
    end UInt32,
    communication_text String,
    communication_recipient String,
    communication_time Nullable(DateTime64(6, 'UTC'))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (concept, site, accession, report_version, processed_time, critical_idx);

CREATE TABLE IF NOT EXISTS {db}.chest_labels
(
    site LowCardinality(String),
    accession String,
    report_version Int64,
    processed_time DateTime64(6, 'UTC'),
    label LowCardinality(String) COMMENT 'ChestX-ray14 label',
    value LowCardinality(String) COMMENT 'positive | negative | uncertain'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(processed_time)
ORDER BY (label, site, accession, report_version, processed_time);

CREATE TABLE IF NOT EXISTS {db}.retrieval_requests
(
    request_id String,
    action LowCardinality(String),
    project_id LowCardinality(String),
    requester LowCardinality(String),
    accession String,
    study_instance_uid String,
    patient_id String,
    study_date String,
    destination_ae LowCardinality(String),
    priority LowCardinality(String),
    not_before Nullable(DateTime64(6, 'UTC')),
    not_after Nullable(DateTime64(6, 'UTC')),
    source LowCardinality(String),
    requested_time DateTime64(6, 'UTC'),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(requested_time)
ORDER BY (request_id, action, requested_time);

CREATE TABLE IF NOT EXISTS {db}.retrieval_events
(
    request_id String,
    project_id LowCardinality(String),
    state LowCardinality(String),
    attempt Int32,
    accession String,
    study_instance_uid String,
    pacs_ae LowCardinality(String),
    destination_ae LowCardinality(String),
    completed Nullable(Int32),
    failed Nullable(Int32),
    warning Nullable(Int32),
    remaining Nullable(Int32),
    dimse_status Nullable(Int32),
    error String,
    time DateTime64(6, 'UTC'),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (request_id, time, state, attempt);

-- original_sop_instance_uid of de-identified instances is deliberately not stored (research-facing table).
CREATE TABLE IF NOT EXISTS {db}.received_instances
(
    project_id LowCardinality(String),
    study_instance_uid String,
    series_instance_uid String,
    sop_instance_uid String,
    sop_class_uid LowCardinality(String),
    accession String,
    modality LowCardinality(String),
    calling_ae LowCardinality(String),
    called_ae LowCardinality(String),
    path String,
    size_bytes Int64,
    deidentified Bool,
    time DateTime64(6, 'UTC'),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (project_id, study_instance_uid, series_instance_uid, sop_instance_uid);

-- original_partition / original_offset are -1 when the rejected input did not come from Kafka.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    stage LowCardinality(String),
    original_topic LowCardinality(String),
    original_partition Int32,
    original_offset Int64,
    value_sha256 FixedString(64),
    key String,
    value String CODEC(ZSTD(3)),
    error_type LowCardinality(String),
    error String,
    time DateTime64(6, 'UTC'),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (stage, original_topic, original_partition, original_offset, value_sha256);
