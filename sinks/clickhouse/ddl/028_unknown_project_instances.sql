-- Privacy (session 12): the sink wrote a received instance to the analysts' received_instances unless it
-- knew the project as identified or retaining UIDs, so an instance of a project whose registration was not
-- in the warehouse yet went there, with the hospital's UIDs if the project retained them. From here it goes
-- there only when every registration of the project is de-identified without "Retain UIDs" (a project once
-- identified or retaining UIDs stays private: an instance of that time may come late); every other
-- instance goes to the stewards' received_instances_identified (sink.py: deidentified_projects,
-- rows.restricted_instances), and the sink moves it back once such a registration arrives
-- (release_instances). Rows written before move the same way as in 022, 024 and 027 (the DELETE is a
-- mutation, applied in the background on a server).
INSERT INTO {db}.received_instances_identified SELECT * FROM {db}.received_instances
WHERE project_id NOT IN (SELECT project_id FROM {db}.projects GROUP BY project_id
                         HAVING countIf(identified OR retain_uids) = 0);

ALTER TABLE {db}.received_instances DELETE
WHERE project_id NOT IN (SELECT project_id FROM {db}.projects GROUP BY project_id
                         HAVING countIf(identified OR retain_uids) = 0);
