-- The web app's report search (issue 16). A search read reports FINAL, report_current and report_versions
-- and met them by tuple IN sets of up to a million (site, accession) keys, and its cheap filters (modality,
-- exam date) saved no reading of the text: reports is sorted by accession, so the reports of one modality
-- and month sit in every granule and every text block was decompressed to test a few rows of it.
--
-- report_search holds every report version's own search columns and text (the de-identified text, as in
-- report_versions), sorted by modality and exam month: a search reads the granules of its modality and
-- dates only, and the text of the rows those filters leave (PREWHERE). A row is one report version and
-- never changes (its key holds its own modality and month), so a correction that moves a report to another
-- month or modality is a new row under its own key, and the search keeps a row only when its version is
-- the accession's current one (report_current, ddl/014), the same set that applies the NLP filters.
-- Written by the sink beside report_versions (sinks/clickhouse/rows.py). Analysts may read it
-- (roles/analyst.json): it holds nothing report_versions does not.
CREATE TABLE IF NOT EXISTS {db}.report_search
(
    site LowCardinality(String),
    accession String,
    version Int64,
    status LowCardinality(String),
    patient_class LowCardinality(String),
    modality LowCardinality(String),
    procedure_description LowCardinality(String),
    study_ref String,
    exam_time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    text String CODEC(ZSTD(3)),
    INDEX ix_exam_time exam_time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY cityHash64(accession) % 8
ORDER BY (site, modality, toStartOfMonth(exam_time), accession, version);

-- existing warehouses: every version there is (a repeat inserts equal rows, which collapse)
INSERT INTO {db}.report_search
    (site, accession, version, status, patient_class, modality, procedure_description, study_ref, exam_time, text)
SELECT site, accession, version, status, patient_class, modality, procedure_description, study_ref, exam_time, text
FROM {db}.report_versions FINAL;

OPTIMIZE TABLE {db}.report_search FINAL;
