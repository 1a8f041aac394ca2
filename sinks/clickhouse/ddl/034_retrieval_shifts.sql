-- Privacy (session 17): the times of the analysts' retrieval tables (retrieval_requests' requested_time,
-- not_before and not_after, retrieval_events.time, received_instances.time, and so retrievals_latest's)
-- are moved back by the days of the request's patient, as every other time of that patient is: a
-- standing cohort asks seconds after its report arrives, so a real request time beside the report's
-- shifted received_time gave the patient's date shift. The sink (which holds the key in the worker)
-- writes the shifted times; this steward-only table (not in roles/analyst.json) keeps each request's
-- days and its real requested time, so that stewards get the real times back (retrievals_latest_real).
-- Rows written before this migration keep the real times they were written with.
CREATE TABLE IF NOT EXISTS {db}.retrieval_shifts
(
    request_id String COMMENT 'the request; empty on a row of a patient only (a received instance)',
    patient_id String COMMENT 'the research pseudonym whose days these are; empty when the request names no patient',
    shift_days Int32 COMMENT 'days the analysts'' times of the request (or the patient''s instances) are moved back',
    requested_time Nullable(DateTime64(6, 'UTC')) COMMENT 'the real time of the request (NULL on a patient row)',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (request_id, patient_id)
SETTINGS fsync_after_insert = 1, fsync_part_directory = 1; -- durable before the sink commits (033)

-- stewards: each request with its latest state at real times (retrievals_latest moved forward again; a
-- request without a row here, written before this migration, has real times already: 0 days)
CREATE OR REPLACE VIEW {db}.retrievals_latest_real AS
SELECT l.* REPLACE (l.requested_time + toIntervalDay(s.shift_days) AS requested_time,
                    l.last_time + toIntervalDay(s.shift_days) AS last_time),
       s.shift_days AS shift_days
FROM {db}.retrievals_latest AS l
LEFT JOIN (SELECT request_id, any(shift_days) AS shift_days FROM {db}.retrieval_shifts FINAL
           WHERE request_id != '' GROUP BY request_id) AS s ON s.request_id = l.request_id;
