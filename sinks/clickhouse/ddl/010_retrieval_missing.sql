-- retrieval_status v3: the reconciliation of a request's listed instances (C-FIND at IMAGE level) with what
-- the research store recorded: counts and the SOP Instance UIDs still missing. NULL / [] when not
-- reconciled (another destination, or rows written before this migration).
ALTER TABLE {db}.retrieval_events ADD COLUMN IF NOT EXISTS stored Nullable(Int32)
    COMMENT 'listed instances the research store stored, as of the last reconciliation' AFTER expected_instances;

ALTER TABLE {db}.retrieval_events ADD COLUMN IF NOT EXISTS quarantined Nullable(Int32)
    COMMENT 'listed instances the research store quarantined with a reason' AFTER stored;

ALTER TABLE {db}.retrieval_events ADD COLUMN IF NOT EXISTS missing Nullable(Int32)
    COMMENT 'listed instances neither stored nor quarantined' AFTER quarantined;

ALTER TABLE {db}.retrieval_events ADD COLUMN IF NOT EXISTS missing_sop_instance_uids Array(String)
    COMMENT 'SOP Instance UIDs of the missing instances (at most 1000 per event)' AFTER missing;

-- the latest state per request, with the reconciliation (replaces the 004 definition)
CREATE OR REPLACE VIEW {db}.retrievals_latest AS
SELECT q.request_id AS request_id, q.project_id AS project_id, q.requester AS requester,
       q.accession AS accession, q.study_instance_uid AS requested_study_uid,
       q.destination_ae AS destination_ae, q.priority AS priority, q.requested_time AS requested_time,
       s.state AS state, s.attempt AS attempt, s.study_instance_uids AS study_instance_uids,
       s.expected_instances AS expected_instances, s.completed AS completed, s.failed AS failed,
       s.warning AS warning, s.stored AS stored, s.quarantined AS quarantined, s.missing AS missing,
       s.missing_sop_instance_uids AS missing_sop_instance_uids, s.error AS error, s.last_time AS last_time,
       if(s.request_id = '', NULL, dateDiff('millisecond', q.requested_time, s.last_time) / 1000.0)
           AS seconds_since_request
FROM (SELECT * FROM {db}.retrieval_requests FINAL WHERE action = 'request') AS q
LEFT JOIN
(
    SELECT request_id, argMax(state, time) AS state, argMax(attempt, time) AS attempt,
           argMax(study_instance_uids, time) AS study_instance_uids,
           argMax(expected_instances, time) AS expected_instances,
           argMax(completed, time) AS completed, argMax(failed, time) AS failed,
           argMax(warning, time) AS warning, argMax(stored, time) AS stored,
           argMax(quarantined, time) AS quarantined, argMax(missing, time) AS missing,
           argMax(missing_sop_instance_uids, time) AS missing_sop_instance_uids,
           argMax(error, time) AS error, max(time) AS last_time
    FROM {db}.retrieval_events FINAL
    GROUP BY request_id
) AS s ON s.request_id = q.request_id;
