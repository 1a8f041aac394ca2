-- One row per rejection in dead_letters (review s16 r9, finding 2). The key was (stage, original_topic,
-- original_partition, original_offset, value_sha256): a dead letter of a front door (MLLP, FHIR, backfill)
-- has no Kafka position (-1, rows.dead_letter_rows), so two rejections of the same bytes shared a key and
-- FINAL and the merges kept one of them: a FHIR batch with several refused entries (the body is
-- dead-lettered once per entry, each with its reason) kept one reason, every 413 (an empty body) of a
-- month one row, two identical rejected backfill lines one.
-- The key now also holds a hash of the reason, the dead letter's key (a backfill's `file:line`, a front
-- door's `fhir:/path` or `mllp:peer`) and, for input without a Kafka position only, the time the dead letter
-- was made: the one thing that tells two rejections of the same bytes by a front door apart. The same
-- dead-letter record delivered again (a redelivery of the dead-letter topic, a replay) has the same time
-- and collapses as before. Input from Kafka is named by its position, so its time stays out of the key: a
-- stage that dead-letters the same record again (a retried flush, a redelivery after a crash) makes a new
-- time, and that still collapses. What can now give two rows for one rejection: a front door or the
-- backfill rejecting the same input again after a crash or a sender's resend (each is a rejection of its
-- own; the backfill's dead letters are checkpointed, so only a crash before the checkpoint repeats one).
-- Rebuilt as in 012 and 014: run it with the writers stopped; the RENAME is not repeatable (if this file
-- fails after it, dead_letters_pre032 is the old table: drop it and record the migration by hand).

CREATE TABLE IF NOT EXISTS {db}.dead_letters_rekey AS {db}.dead_letters
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (stage, original_topic, original_partition, original_offset, value_sha256, cityHash64(error), key,
          if(original_offset < 0, time, toDateTime64(0, 6, 'UTC')));

INSERT INTO {db}.dead_letters_rekey SELECT * FROM {db}.dead_letters;

RENAME TABLE {db}.dead_letters TO {db}.dead_letters_pre032, {db}.dead_letters_rekey TO {db}.dead_letters;

DROP TABLE IF EXISTS {db}.dead_letters_pre032;
