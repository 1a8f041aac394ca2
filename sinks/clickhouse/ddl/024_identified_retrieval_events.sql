-- Status events of a project registered as identified name the PACS's own studies and instances (the DICOM
-- worker keys the UIDs only for de-identified projects), and retrieval_events is the analysts'. From here
-- the sink writes such a row whole to retrieval_events_identified (steward-only: not in
-- roles/analyst.json) and to retrieval_events without its UIDs and error text, so that the analysts'
-- dashboards keep the state and the counts (sinks/clickhouse/rows.py for_identified_project). A project
-- not registered as de-identified counts as identified. Rows written before move the same way.
CREATE TABLE IF NOT EXISTS {db}.retrieval_events_identified AS {db}.retrieval_events;

INSERT INTO {db}.retrieval_events_identified SELECT * FROM {db}.retrieval_events
WHERE project_id NOT IN (SELECT project_id FROM {db}.projects GROUP BY project_id HAVING NOT argMax(identified, time));

ALTER TABLE {db}.retrieval_events
UPDATE study_instance_uid = '', study_instance_uids = [], missing_sop_instance_uids = [], error = ''
WHERE project_id NOT IN (SELECT project_id FROM {db}.projects GROUP BY project_id HAVING NOT argMax(identified, time));
