-- Privacy (session 13): received_instance v4 says whether the stored instance kept the hospital's Study,
-- Series and SOP Instance UIDs (uids_retained: an identified project's instance, or one de-identified with
-- "Retain UIDs"). The sink routes by it first: such an instance goes to the stewards'
-- received_instances_identified whatever its project's registrations say, and release_instances never
-- moves a row with it set (sink.py). NULL: written by an SCP older than v4 (unknown; the registrations
-- decide, as before). Both tables have the column, so a released row is copied whole (its value there is
-- false or NULL). Rows already written stay where they are: nothing tells what an older SCP applied.
ALTER TABLE {db}.received_instances ADD COLUMN IF NOT EXISTS uids_retained Nullable(Bool) AFTER deidentified;

ALTER TABLE {db}.received_instances_identified
    ADD COLUMN IF NOT EXISTS uids_retained Nullable(Bool) AFTER deidentified;
