-- report_finalized v3 / retrieval_requested v2: the analysts' tables carry keyed identifiers (accession,
-- order/visit numbers, author, study UID, patient) and shifted times (processors/ingest/research.py);
-- study_ref is the encrypted reference that turns a research row back into a retrieval request (opened
-- only by the DICOM worker or a steward's `radstream reidentify`).
ALTER TABLE {db}.report_versions ADD COLUMN IF NOT EXISTS study_ref String DEFAULT ''
    COMMENT 'encrypted retrieval reference of the study (pass it to radstream retrieve --study-ref)'
    AFTER study_instance_uid;

ALTER TABLE {db}.reports ADD COLUMN IF NOT EXISTS study_ref String DEFAULT ''
    COMMENT 'encrypted retrieval reference of the study (pass it to radstream retrieve --study-ref)'
    AFTER study_instance_uid;

ALTER TABLE {db}.retrieval_requests ADD COLUMN IF NOT EXISTS study_ref String DEFAULT ''
    COMMENT 'the study by its encrypted reference, when requested so' AFTER study_instance_uid;

-- a view's * is expanded when it is created: again, to include the new column
CREATE OR REPLACE VIEW {db}.reports_latest AS
SELECT *
FROM {db}.reports FINAL
WHERE status NOT IN ('cancelled', 'entered_in_error');
