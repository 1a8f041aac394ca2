-- Acknowledge only what is durable (review s16 r9, finding 4). The sink commits its Kafka offsets as soon as
-- its INSERT returns (streams/loop.py: flush, then commit). MergeTree's defaults (fsync_after_insert = 0,
-- fsync_part_directory = 0) leave a new part in the page cache at that point: an OS crash or a power loss
-- of the warehouse host before the kernel wrote it back loses the part (or ClickHouse detaches it as
-- broken on restart) while its offsets are committed, and the rows never come again. With both settings
-- an INSERT returns only after the part's files and its directory are fsync'd. The cost is one set of
-- fsyncs per part written (docs/benchmarks.md, "Sink inserts with fsync").
-- Every MergeTree table of the warehouse gets them, the ones the sink writes and schema_migrations and the
-- vocabulary (concept) too: one rule, checked by tests/sinks/clickhouse/test_sink_durability.py, which
-- fails for a table a later migration creates without them (a new table or a re-key must say
-- SETTINGS fsync_after_insert = 1, fsync_part_directory = 1 itself). MODIFY SETTING changes metadata only.
-- On a cluster, `db migrate --cluster` renders the settings into the replicated tables; a running cluster
-- gets them from its DBA (ALTER TABLE <t>_local ON CLUSTER ... MODIFY SETTING ..., docs/operations.md).

ALTER TABLE {db}.assessments MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.audit_log MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.chest_labels MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.concept MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.critical_results MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.dead_letters MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.deid_map MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.findings MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.measurements MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.projects MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.quarantine MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.received_instances MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.received_instances_identified MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.recommendations MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.report_current MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.report_nlp MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.report_search MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.report_text_original MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.report_versions MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.reports MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.retrieval_events MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.retrieval_events_identified MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.retrieval_requests MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.schema_migrations MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE {db}.sections MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
