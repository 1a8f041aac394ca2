-- Acknowledge only what is durable, merges too. 033 makes an INSERT fsync its new part, but a merge writes a
-- new part from the inserted ones and, with MergeTree's default min_rows_to_fsync_after_merge = 0, does not
-- fsync its files (only its directory, fsync_part_directory = 1). ClickHouse keeps the merged-away parts for
-- old_parts_lifetime (480 s on a server) against exactly that; the embedded engine (chDB) has it at 0 and
-- deletes them at once, so an OS crash or a power loss soon after a merge could leave a broken merged part
-- and nothing to restore it from, rows whose Kafka offsets were committed long ago. With the setting every
-- merged part is fsync'd before it replaces the old ones. The cost is paid by the background merges, not
-- by the INSERT the sink waits on. tests/sinks/clickhouse/test_sink_durability.py checks that every
-- MergeTree table has it and that a merge fsyncs files. MODIFY SETTING changes metadata only.
-- On a cluster, `db migrate --cluster` renders the setting into the replicated tables (docs/operations.md).

ALTER TABLE {db}.assessments MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.audit_log MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.chest_labels MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.concept MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.critical_results MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.dead_letters MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.deid_map MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.findings MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.measurements MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.projects MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.quarantine MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.received_instances MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.received_instances_identified MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.recommendations MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.report_current MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.report_nlp MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.report_search MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.report_text_original MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.report_versions MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.reports MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.retrieval_events MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.retrieval_events_identified MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.retrieval_requests MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.schema_migrations MODIFY SETTING min_rows_to_fsync_after_merge = 1;
ALTER TABLE {db}.sections MODIFY SETTING min_rows_to_fsync_after_merge = 1;
