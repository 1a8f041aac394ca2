-- The audit trail must not be rewritable through its own feed. audit_log was a ReplacingMergeTree sorted by
-- (time, event_id): any writer of the audit topic (stewards, the ingest processes) could send an event with
-- the id and time of an existing one and different content, and the merge (or FINAL) kept the later copy,
-- replacing what was recorded. The sorting key now ends with a hash of the whole event: a replay of the same
-- event (the at-least-once sink, a re-read of the topic) still collapses into one row, and any other event
-- under that id stays beside it, visible (radstream audit lists both). The table is rebuilt as in 012/014:
-- run it with the writers stopped; the RENAME is not repeatable (audit_log_pre023 is the old table if it
-- fails after it).
CREATE TABLE IF NOT EXISTS {db}.audit_log_rekey AS {db}.audit_log
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (time, event_id, cityHash64(actor, action, allowed, project, query, tables, ifNull(rows, -1),
                                    ifNull(duration_ms, -1), detail, host, process));

INSERT INTO {db}.audit_log_rekey SELECT * FROM {db}.audit_log;

RENAME TABLE {db}.audit_log TO {db}.audit_log_pre023, {db}.audit_log_rekey TO {db}.audit_log;

DROP TABLE IF EXISTS {db}.audit_log_pre023;
