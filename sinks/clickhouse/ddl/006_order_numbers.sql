-- report_finalized v2: the placer and filler order numbers of each report version (HL7 OBR-2 / ORC-2 and
-- OBR-3 / ORC-3; FHIR identifiers typed PLAC / FILL). '' when the source sent none, as for every optional
-- string. Rows written before this migration have ''.
ALTER TABLE {db}.report_versions ADD COLUMN IF NOT EXISTS placer_order_number String DEFAULT ''
    COMMENT 'placer order number: the ordering system''s id of the order (OBR-2, else ORC-2)' AFTER body_part;

ALTER TABLE {db}.report_versions ADD COLUMN IF NOT EXISTS filler_order_number String DEFAULT ''
    COMMENT 'filler order number: the RIS''s id of the order (OBR-3, else ORC-3)' AFTER placer_order_number;

ALTER TABLE {db}.reports ADD COLUMN IF NOT EXISTS placer_order_number String DEFAULT ''
    COMMENT 'placer order number: the ordering system''s id of the order (OBR-2, else ORC-2)' AFTER body_part;

ALTER TABLE {db}.reports ADD COLUMN IF NOT EXISTS filler_order_number String DEFAULT ''
    COMMENT 'filler order number: the RIS''s id of the order (OBR-3, else ORC-3)' AFTER placer_order_number;

-- a view over an altered table takes the new columns only when re-created (same definition as 002)
CREATE OR REPLACE VIEW {db}.reports_latest AS
SELECT *
FROM {db}.reports FINAL
WHERE status NOT IN ('cancelled', 'entered_in_error');
