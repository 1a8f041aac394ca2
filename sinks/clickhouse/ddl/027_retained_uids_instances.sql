-- Privacy (session 11): a de-identified project registered with "Retain UIDs" stores instances that keep
-- the hospital's Study, Series and SOP Instance UIDs, and the DICOM worker names its studies in status
-- events by those UIDs. The sink now writes them as for an identified project (sink.py:
-- uid_retaining_projects, deidentified_projects); rows written before move the same way as in 022 and 024
-- (the DELETE and UPDATE are mutations, applied in the background on a server).
INSERT INTO {db}.received_instances_identified SELECT * FROM {db}.received_instances
WHERE project_id IN (SELECT project_id FROM {db}.projects GROUP BY project_id
                     HAVING NOT argMax(identified, time) AND argMax(retain_uids, time));

ALTER TABLE {db}.received_instances DELETE
WHERE project_id IN (SELECT project_id FROM {db}.projects GROUP BY project_id
                     HAVING NOT argMax(identified, time) AND argMax(retain_uids, time));

INSERT INTO {db}.retrieval_events_identified SELECT * FROM {db}.retrieval_events
WHERE project_id IN (SELECT project_id FROM {db}.projects GROUP BY project_id
                     HAVING NOT argMax(identified, time) AND argMax(retain_uids, time));

ALTER TABLE {db}.retrieval_events
UPDATE study_instance_uid = '', study_instance_uids = [], missing_sop_instance_uids = [], error = ''
WHERE project_id IN (SELECT project_id FROM {db}.projects GROUP BY project_id
                     HAVING NOT argMax(identified, time) AND argMax(retain_uids, time));
