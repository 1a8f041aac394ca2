-- report_findings v2: Finding.certainty (definite | probable | possible).
-- retrieval_status: every study a request resolved to, and the instances C-FIND announced.
ALTER TABLE {db}.findings ADD COLUMN IF NOT EXISTS certainty LowCardinality(String) DEFAULT 'definite'
    COMMENT 'definite | probable | possible (uncertain is true unless definite)' AFTER experiencer;

ALTER TABLE {db}.retrieval_events ADD COLUMN IF NOT EXISTS study_instance_uids Array(String)
    COMMENT 'every study the request resolved to' AFTER study_instance_uid;

ALTER TABLE {db}.retrieval_events ADD COLUMN IF NOT EXISTS expected_instances Nullable(Int32)
    COMMENT 'instances announced by C-FIND, summed over studies' AFTER remaining;

-- views over the altered tables take their new columns only when re-created
CREATE OR REPLACE VIEW {db}.findings_latest AS
SELECT t.*, r.patient_id_is_pseudonym, r.visit_number, r.patient_class, r.study_instance_uid,
       r.procedure_code, r.procedure_description, r.body_part, r.exam_time, r.status_time,
       r.status AS report_status
FROM {db}.findings AS t FINAL
LEFT JOIN {db}.reports_latest AS r ON r.site = t.site AND r.accession = t.accession
WHERE (t.site, t.accession, t.report_version, t.processed_time) IN
      (SELECT site, accession, report_version, processed_time FROM {db}.nlp_latest);

-- note_nlp with the certainty modifier (replaces the 003 definition)
CREATE OR REPLACE VIEW {db}.note_nlp AS
SELECT
    toInt64(bitAnd(cityHash64(f.site, f.accession, f.report_version, f.processed_time, f.finding_idx),
                   0x7FFFFFFFFFFFFFFF)) AS note_nlp_id,
    toInt64(bitAnd(cityHash64(f.site, f.accession, f.report_version), 0x7FFFFFFFFFFFFFFF)) AS note_id,
    0 AS section_concept_id,
    substringUTF8(r.text, greatest(toInt64(f.start) - 60, 0) + 1,
                  toInt64(f.end) - greatest(toInt64(f.start) - 60, 0) + 60) AS snippet,
    toString(f.start) AS offset,
    f.text AS lexical_variant,
    0 AS note_nlp_concept_id,
    0 AS note_nlp_source_concept_id,
    concat('radstream ', f.nlp_version) AS nlp_system,
    toDate(f.processed_time) AS nlp_date,
    f.processed_time AS nlp_datetime,
    if(f.negated OR f.uncertain OR f.hypothetical OR f.experiencer != 'patient', 'N', 'Y') AS term_exists,
    if(f.historical, 'past', 'present') AS term_temporal,
    concat('negated=', if(f.negated, 'yes', 'no'),
           ',subject=', f.experiencer,
           ',certainty=', if(f.uncertain AND f.certainty = 'definite', 'uncertain', f.certainty),
           ',hypothetical=', if(f.hypothetical, 'yes', 'no'),
           ',historical=', if(f.historical, 'yes', 'no'),
           ',section=', f.section,
           if(f.laterality = '', '', concat(',laterality=', f.laterality)),
           if(f.severity = '', '', concat(',severity=', f.severity)),
           if(f.change = '', '', concat(',change=', f.change)),
           if(f.size_mm IS NULL, '', concat(',size_mm=', toString(f.size_mm)))) AS term_modifiers,
    f.concept AS rs_concept, f.category AS rs_category, f.site AS rs_site, f.accession AS rs_accession,
    f.report_version AS rs_version, f.patient_id AS rs_patient_id, f.study_instance_uid AS rs_study_instance_uid
FROM {db}.findings_latest AS f
LEFT JOIN {db}.reports_latest AS r ON r.site = f.site AND r.accession = f.accession;

CREATE OR REPLACE VIEW {db}.retrievals_latest AS
SELECT q.request_id AS request_id, q.project_id AS project_id, q.requester AS requester,
       q.accession AS accession, q.study_instance_uid AS requested_study_uid,
       q.destination_ae AS destination_ae, q.priority AS priority, q.requested_time AS requested_time,
       s.state AS state, s.attempt AS attempt, s.study_instance_uids AS study_instance_uids,
       s.expected_instances AS expected_instances, s.completed AS completed, s.failed AS failed,
       s.warning AS warning, s.error AS error, s.last_time AS last_time,
       if(s.request_id = '', NULL, dateDiff('millisecond', q.requested_time, s.last_time) / 1000.0)
           AS seconds_since_request
FROM (SELECT * FROM {db}.retrieval_requests FINAL WHERE action = 'request') AS q
LEFT JOIN
(
    SELECT request_id, argMax(state, time) AS state, argMax(attempt, time) AS attempt,
           argMax(study_instance_uids, time) AS study_instance_uids,
           argMax(expected_instances, time) AS expected_instances,
           argMax(completed, time) AS completed, argMax(failed, time) AS failed,
           argMax(warning, time) AS warning, argMax(error, time) AS error, max(time) AS last_time
    FROM {db}.retrieval_events FINAL
    GROUP BY request_id
) AS s ON s.request_id = q.request_id;
