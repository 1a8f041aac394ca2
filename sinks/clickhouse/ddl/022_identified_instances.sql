-- Instances of projects registered as identified (an IRB reference; a steward's) carry the hospital's own
-- patient id, accession, UIDs and file path. They were written to received_instances, which analysts may
-- read. From here the sink writes them to received_instances_identified (steward-only: not in
-- roles/analyst.json), and received_instances holds de-identified instances only. Rows already written
-- move there; the DELETE is a mutation (ClickHouse applies it in the background on a server).
CREATE TABLE IF NOT EXISTS {db}.received_instances_identified AS {db}.received_instances;

INSERT INTO {db}.received_instances_identified SELECT * FROM {db}.received_instances WHERE NOT deidentified;

ALTER TABLE {db}.received_instances DELETE WHERE NOT deidentified;
