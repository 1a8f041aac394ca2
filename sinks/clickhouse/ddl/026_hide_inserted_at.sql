-- Privacy (session 11): inserted_at of the analysts' report tables (report_versions, reports, report_nlp) is the real time a row was stored; the
-- research copy's received_time (and processed_time) are moved back by the patient's days, so
-- inserted_at - received_time gave each patient's date shift. Analysts may not read these columns
-- (roles/analyst.json denied_columns; server: column GRANTs, grants.py). MATERIALIZED (the same value,
-- computed on insert) leaves them out of SELECT * and so out of analysts' SELECT * queries and of the views
-- built with SELECT *; a metadata change, no data rewritten. Operators (the pipeline page for stewards,
-- benchmarks) still read them by name.
ALTER TABLE {db}.report_versions MODIFY COLUMN inserted_at DateTime64(3, 'UTC') MATERIALIZED now64(3);

ALTER TABLE {db}.reports MODIFY COLUMN inserted_at DateTime64(3, 'UTC') MATERIALIZED now64(3);

ALTER TABLE {db}.report_nlp MODIFY COLUMN inserted_at DateTime64(3, 'UTC') MATERIALIZED now64(3);

-- a view keeps the columns its SELECT * had when it was created: made again, it no longer has inserted_at
-- (the same queries as 013 and 025)
CREATE OR REPLACE VIEW {db}.reports_latest AS
SELECT *
FROM {db}.reports FINAL
WHERE status NOT IN ('cancelled', 'entered_in_error');

CREATE OR REPLACE VIEW {db}.nlp_latest AS
SELECT *
FROM {db}.report_nlp FINAL
WHERE sipHash128(site, accession, report_version, nlp_version, processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));
