-- One row per rejection in dead_letters (review s16 r9, finding 2). The key was (stage, original_topic,
-- original_partition, original_offset, value_sha256): a dead letter of a front door (MLLP, FHIR, backfill)
-- has no Kafka position (-1, rows.dead_letter_rows), so two rejections of the same bytes shared a key and
-- FINAL and the merges kept one of them: a FHIR batch with several refused entries (the body is
-- dead-lettered once per entry, each with its reason) kept one reason, the 413s of a month (an empty body
-- each) one row, two identical rejected backfill lines one.
-- The key now also holds a hash of the reason and the dead letter's key (a backfill's `file:line`, a front
-- door's `fhir:/path` or `mllp:host:port`). The same dead letter delivered again (a redelivery of the
-- dead-letter topic, a replay) collapses as before, and so does the same input rejected again for the
-- same reason: a Kafka record dead-lettered again by a retried flush or after a crash, a backfill resumed
-- before its checkpoint, a FHIR batch resent after a 503. The time the dead letter was made stays out of
-- the key for that reason (each of those makes a new one). What still collapses: rejections of the same
-- bytes with the same reason and key, e.g. two 413s of the same size to one FHIR endpoint (the counter
-- radstream_dead_letters_total counts each rejection).
-- Rebuilt as in 012 and 014: run it with the writers stopped; the RENAME is not repeatable (if this file
-- fails after it, dead_letters_pre032 is the old table: drop it and record the migration by hand).

CREATE TABLE IF NOT EXISTS {db}.dead_letters_rekey AS {db}.dead_letters
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (stage, original_topic, original_partition, original_offset, value_sha256, cityHash64(error), key);

INSERT INTO {db}.dead_letters_rekey SELECT * FROM {db}.dead_letters;

RENAME TABLE {db}.dead_letters TO {db}.dead_letters_pre032, {db}.dead_letters_rekey TO {db}.dead_letters;

DROP TABLE IF EXISTS {db}.dead_letters_pre032;
