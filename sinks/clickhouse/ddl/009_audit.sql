-- The audit trail (docs/access.md): who did what, when, to which data. Appended by the ClickHouse sink
-- from the audit topic (streams.audit.record, any process) and from every retrieval request/cancel.
-- Append-only: nothing updates or deletes it (server roles get no ALTER/DELETE on it; see
-- sinks/clickhouse/grants.py); ReplacingMergeTree only collapses replays of the same event_id.
-- RESTRICTED: steward and admin only (it holds query texts and who asked for which project).
CREATE TABLE IF NOT EXISTS {db}.audit_log
(
    event_id String COMMENT 'UUID of the event; retrieval:<request_id>:<action> for retrieval requests',
    time DateTime64(6, 'UTC'),
    actor LowCardinality(String) COMMENT 'token user, os:<name> for local commands, requester of a retrieval',
    action LowCardinality(String) COMMENT 'sql.query, login.failure, http.request, retrieval.request, ...',
    allowed Bool,
    project String,
    query String COMMENT 'SQL text of a query',
    tables Array(String) COMMENT 'tables and views the query read (views expanded)',
    rows Nullable(Int64) COMMENT 'rows returned',
    duration_ms Nullable(Float64),
    detail String COMMENT 'JSON object: reason of a refusal, endpoint, client address, token id, ...',
    host LowCardinality(String),
    process LowCardinality(String),
    kafka_topic LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (time, event_id);
