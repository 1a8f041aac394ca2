-- Views that show only the latest version of each report (per site, accession), never a mix.
-- The latest version of an accession is the highest version seen in report_versions or report_nlp;
-- its NLP rows are those of the most recent NLP run (processed_time) of that version. Between a
-- correction and its NLP result the accession has no rows in the *_latest NLP views (never stale rows).
-- Cancelled / entered-in-error reports have no rows in the *_latest views.

CREATE OR REPLACE VIEW {db}.latest_versions AS
SELECT site, accession, max(version) AS latest_version
FROM
(
    SELECT site, accession, version FROM {db}.report_versions
    UNION ALL
    SELECT site, accession, report_version AS version FROM {db}.report_nlp
)
GROUP BY site, accession;

CREATE OR REPLACE VIEW {db}.reports_latest AS
SELECT *
FROM {db}.reports FINAL
WHERE status NOT IN ('cancelled', 'entered_in_error');

CREATE OR REPLACE VIEW {db}.nlp_latest AS
SELECT *
FROM {db}.report_nlp FINAL
WHERE (site, accession, report_version, processed_time) IN
(
    SELECT site, accession, report_version, max(processed_time)
    FROM {db}.report_nlp
    WHERE (site, accession, report_version) IN (SELECT site, accession, latest_version FROM {db}.latest_versions)
    GROUP BY site, accession, report_version
)
AND status NOT IN ('cancelled', 'entered_in_error');

CREATE OR REPLACE VIEW {db}.findings_latest AS
SELECT t.*, r.patient_id_is_pseudonym, r.visit_number, r.patient_class, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.body_part, r.exam_time, r.status_time,
       r.status AS report_status
FROM {db}.findings AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.measurements_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time
FROM {db}.measurements AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.recommendations_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality AS report_modality,
       r.study_instance_uid, r.procedure_code, r.exam_time
FROM {db}.recommendations AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.assessments_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.exam_time, r.status_time
FROM {db}.assessments AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.critical_results_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid,
       r.procedure_code, r.exam_time, r.status_time,
       if(t.communication_time IS NULL OR r.status_time IS NULL, NULL,
          dateDiff('minute', r.status_time, t.communication_time)) AS minutes_to_communication
FROM {db}.critical_results AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.chest_labels_latest AS
SELECT t.*, r.patient_id, r.visit_number, r.patient_class, r.modality, r.study_instance_uid, r.exam_time
FROM {db}.chest_labels AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

CREATE OR REPLACE VIEW {db}.sections_latest AS
SELECT t.*
FROM {db}.sections AS t FINAL
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

-- One row per retrieval request with its latest state.
CREATE OR REPLACE VIEW {db}.retrievals_latest AS
SELECT q.request_id AS request_id, q.project_id AS project_id, q.requester AS requester,
       q.accession AS accession, q.study_instance_uid AS requested_study_uid,
       q.destination_ae AS destination_ae, q.priority AS priority, q.requested_time AS requested_time,
       s.state AS state, s.attempt AS attempt, s.completed AS completed, s.failed AS failed,
       s.warning AS warning, s.error AS error, s.last_time AS last_time,
       if(s.request_id = '', NULL, dateDiff('millisecond', q.requested_time, s.last_time) / 1000.0)
           AS seconds_since_request
FROM (SELECT * FROM {db}.retrieval_requests FINAL WHERE action = 'request') AS q
LEFT JOIN
(
    SELECT request_id, argMax(state, time) AS state, argMax(attempt, time) AS attempt,
           argMax(completed, time) AS completed, argMax(failed, time) AS failed,
           argMax(warning, time) AS warning, argMax(error, time) AS error, max(time) AS last_time
    FROM {db}.retrieval_events FINAL
    GROUP BY request_id
) AS s ON s.request_id = q.request_id;
