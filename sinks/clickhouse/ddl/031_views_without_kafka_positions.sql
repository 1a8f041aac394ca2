-- Privacy (session 14): kafka_partition and kafka_offset of the report tables follow the real order in
-- which reports arrived, as inserted_at does (026): against the shifted received_time they give each
-- patient's date shift (median error ~1.3 days in a simulation). Analysts may not read them
-- (roles/analyst.json denied_columns; refused however a query names them, and SELECT * over
-- report_versions, reports or report_nlp is refused for analysts: they name the columns or use the views).
-- The analysts' views over these tables leave them out, so SELECT * on a view works; the
-- same queries as 026 otherwise. The sink, operators and stewards still read the tables' columns.
CREATE OR REPLACE VIEW {db}.reports_latest AS
SELECT * EXCEPT (kafka_partition, kafka_offset)
FROM {db}.reports FINAL
WHERE status NOT IN ('cancelled', 'entered_in_error');

CREATE OR REPLACE VIEW {db}.nlp_latest AS
SELECT * EXCEPT (kafka_partition, kafka_offset)
FROM {db}.report_nlp FINAL
WHERE sipHash128(site, accession, report_version, nlp_version, processed_time) IN
      (SELECT run_key FROM {db}.report_current FINAL
       WHERE has_nlp AND status NOT IN ('cancelled', 'entered_in_error'));
