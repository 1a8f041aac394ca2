-- Report-text de-identification (processors.textdeid). The analysts' report tables (report_versions,
-- reports, reports_latest) hold the DE-IDENTIFIED text, written from the reports_deidentified topic that
-- the NLP agent fills; findings, sections, measurements, ... offsets and snippets point into that text.
-- The original text goes only here. RESTRICTED: it identifies patients and staff. Stewards only (e.g.
-- REVOKE SELECT ON {db}.report_text_original FROM analyst).
CREATE TABLE IF NOT EXISTS {db}.report_text_original
(
    site LowCardinality(String),
    accession String,
    version Int64,
    event_id String,
    patient_id String COMMENT 'as on the reports topic (the research pseudonym when ingest pseudonymises)',
    status LowCardinality(String),
    received_time DateTime64(6, 'UTC'),
    text String CODEC(ZSTD(3)) COMMENT 'the report text as written (identifying)',
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (site, accession, version, event_id);
